"""Example tests: one per rule of DESIGN.md section 3 that the detector owns."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from services.contracts import ids as contract_ids
from services.detector.diff import (
    Change,
    ChangeKind,
    Chunk,
    DiffOutcome,
    Facet,
    InvalidChunkError,
    change_event_id,
    changes,
    forget_posts,
    retire,
    step,
)
from services.detector.state import DetectorInputError, FacetState
from tests.unit.detector.builders import Snap, chunk, ids, texts

BASE = 1_700_000_000_000
LATER = BASE + 3_600_000
LATEST = LATER + 3_600_000


def run(facet: Facet, *snaps: Snap, baseline_at: int = BASE, **where: Any) -> list[list[Change]]:
    """Feed snapshots of one key in order; the changes each one produced."""
    state: FacetState | None = None
    out = []
    for snap in snaps:
        state, diff = step(state, chunk(facet, snap, baseline_at=baseline_at, **where))
        out.append(list(changes(diff)))
    return out


def summary(emitted: list[Change]) -> list[tuple[ChangeKind, int, str | None]]:
    return [(c.kind, c.social_user_id, c.comment_id) for c in emitted]


def test_baseline_is_remembered_but_silent() -> None:
    state, diff = step(
        None, chunk(Facet.MEMBERS, Snap(BASE, frozenset({1, 2, 3})), baseline_at=BASE)
    )
    assert diff.outcome is DiffOutcome.BASELINE
    assert list(changes(diff)) == []
    assert state is not None
    assert state.snapshot_at == BASE
    assert state.ids.tolist() == [1, 2, 3]


def test_members_join_and_leave_removals_first_each_by_user_id() -> None:
    _, emitted = run(
        Facet.MEMBERS,
        Snap(BASE, frozenset({1, 5, 9, 12})),
        Snap(LATER, frozenset({12, 1, 30, 2})),
        bucket=3,
    )
    assert summary(emitted) == [
        (ChangeKind.GROUP_LEFT, 5, None),
        (ChangeKind.GROUP_LEFT, 9, None),
        (ChangeKind.GROUP_JOINED, 2, None),
        (ChangeKind.GROUP_JOINED, 30, None),
    ]
    first = emitted[0]
    assert (first.network, first.group_id, first.post_id) == ("vk", 7, None)
    assert (first.previous_snapshot_at, first.snapshot_at) == (BASE, LATER)


@pytest.mark.parametrize(
    ("facet", "removal", "addition"),
    [
        (Facet.LIKES, ChangeKind.POST_UNLIKED, ChangeKind.POST_LIKED),
        (Facet.REPOSTS, ChangeKind.REPOST_DELETED, ChangeKind.POST_REPOSTED),
    ],
)
def test_post_facets_name_the_post(facet: Facet, removal: ChangeKind, addition: ChangeKind) -> None:
    _, emitted = run(
        facet, Snap(BASE, frozenset({4, 8})), Snap(LATER, frozenset({8, 15})), post_id=55
    )
    assert summary(emitted) == [(removal, 4, None), (addition, 15, None)]
    assert {c.post_id for c in emitted} == {55}


def test_comments_are_diffed_by_comment_id_and_name_their_author() -> None:
    # "10" by user 3 stays; "11" by 4 is deleted; "12" by 9 and "13" by 3 are new;
    # user 9 also posts "9" (after "12" as a string), and "2" of user 9 vanishes.
    _, emitted = run(
        Facet.COMMENTS,
        Snap(BASE, comments={"10": 3, "11": 4, "2": 9}),
        Snap(LATER, comments={"10": 3, "9": 9, "12": 9, "13": 3}),
    )
    assert summary(emitted) == [
        (ChangeKind.COMMENT_DELETED, 4, "11"),
        (ChangeKind.COMMENT_DELETED, 9, "2"),
        (ChangeKind.COMMENT_POSTED, 3, "13"),
        (ChangeKind.COMMENT_POSTED, 9, "12"),
        (ChangeKind.COMMENT_POSTED, 9, "9"),
    ]


def test_ok_style_text_comment_ids_are_diffed_like_any_other() -> None:
    _, emitted = run(
        Facet.COMMENTS,
        Snap(BASE, comments={"MTU0NTc4OTk": 3}),
        Snap(LATER, comments={"MTU0NTc4OTk": 3, "MTU0NTc5MDA=": 8}),
        network="ok",
    )
    assert summary(emitted) == [(ChangeKind.COMMENT_POSTED, 8, "MTU0NTc5MDA=")]
    assert emitted[0].network == "ok"


def test_deleted_comment_is_attributed_to_the_author_stored_at_the_time() -> None:
    _, emitted = run(Facet.COMMENTS, Snap(BASE, comments={"10": 3}), Snap(LATER, comments={}))
    assert summary(emitted) == [(ChangeKind.COMMENT_DELETED, 3, "10")]


@pytest.mark.parametrize("facet", [Facet.LIKES, Facet.REPOSTS, Facet.COMMENTS])
def test_new_post_after_the_baseline_is_all_real_events(facet: Facet) -> None:
    snap = Snap(LATER, frozenset({3, 1}), {"20": 3, "21": 1})
    state, diff = step(None, chunk(facet, snap, baseline_at=BASE, post_id=90))
    emitted = list(changes(diff))
    assert diff.outcome is DiffOutcome.NEW
    assert {c.kind for c in emitted} == {
        {Facet.LIKES: ChangeKind.POST_LIKED, Facet.REPOSTS: ChangeKind.POST_REPOSTED}.get(
            facet, ChangeKind.COMMENT_POSTED
        )
    }
    assert [c.social_user_id for c in emitted] == [1, 3]
    assert {c.previous_snapshot_at for c in emitted} == {None}
    assert state is not None
    assert state.snapshot_at == LATER


@pytest.mark.parametrize("facet", [Facet.LIKES, Facet.REPOSTS, Facet.COMMENTS])
def test_old_post_seen_for_the_first_time_after_the_baseline_is_silent(facet: Facet) -> None:
    # Published before the baseline but not in it: it slid into a "last N posts"
    # window, or the baseline run could not read it. Its likes are not news.
    old = Snap(LATER, frozenset({1, 2}), {"5": 1})
    state, diff = step(None, chunk(facet, old, baseline_at=BASE, posted_at=BASE - 1))
    assert diff.outcome is DiffOutcome.OLD_POST
    assert list(changes(diff)) == []
    newer = Snap(LATEST, frozenset({1, 2, 3}), {"5": 1, "6": 3})
    _, diff = step(state, chunk(facet, newer, baseline_at=BASE, posted_at=BASE - 1))
    assert [(c.social_user_id, c.previous_snapshot_at) for c in changes(diff)] == [(3, LATER)]


def test_post_published_at_or_after_the_baseline_is_new() -> None:
    snap = Snap(LATER, frozenset({1}))
    for posted_at in (BASE, LATER):
        _, diff = step(None, chunk(Facet.LIKES, snap, baseline_at=BASE, posted_at=posted_at))
        assert diff.outcome is DiffOutcome.NEW
        assert len(diff) == 1


UNDO_DO = {
    Facet.LIKES: (ChangeKind.POST_UNLIKED, ChangeKind.POST_LIKED),
    Facet.REPOSTS: (ChangeKind.REPOST_DELETED, ChangeKind.POST_REPOSTED),
    Facet.COMMENTS: (ChangeKind.COMMENT_DELETED, ChangeKind.COMMENT_POSTED),
}


@pytest.mark.parametrize("facet", [Facet.LIKES, Facet.REPOSTS, Facet.COMMENTS])
def test_new_post_dated_before_the_baseline_is_new_by_its_id(facet: Facet) -> None:
    """The network reports a date before our baseline (a skewed clock, or the creation
    date of a post published later), but the post's id is above every id the wall
    showed at the baseline: it was published since, and its likes are events. So is
    a later unlike, which then has something to undo."""
    first = Snap(LATER, frozenset({1, 2}), {"5": 1})
    state, diff = step(
        None,
        chunk(
            facet,
            first,
            baseline_at=BASE,
            post_id=101,
            posted_at=BASE - 60_000,
            baseline_post_id=100,
        ),
    )
    assert diff.outcome is DiffOutcome.NEW
    removed, added = UNDO_DO[facet]
    assert [(c.kind, c.social_user_id) for c in changes(diff)] == (
        [(added, 1)] if facet is Facet.COMMENTS else [(added, 1), (added, 2)]
    )
    then = Snap(LATEST, frozenset({2}), {})
    _, diff = step(
        state,
        chunk(
            facet,
            then,
            baseline_at=BASE,
            post_id=101,
            posted_at=BASE - 60_000,
            baseline_post_id=100,
        ),
    )
    assert [(c.kind, c.social_user_id) for c in changes(diff)] == [(removed, 1)]


def test_old_post_is_old_by_its_id_even_when_dated_after_the_baseline() -> None:
    """An id at or below the baseline's highest existed at the baseline: it slid into
    the window (or the baseline run skipped it), whatever date it carries."""
    snap = Snap(LATER, frozenset({1, 2}))
    for post_id in (99, 100):
        _, diff = step(
            None,
            chunk(
                Facet.LIKES,
                snap,
                baseline_at=BASE,
                post_id=post_id,
                posted_at=LATER,
                baseline_post_id=100,
            ),
        )
        assert diff.outcome is DiffOutcome.OLD_POST
        assert list(changes(diff)) == []


def test_an_empty_wall_at_the_baseline_makes_every_later_post_new() -> None:
    snap = Snap(LATER, frozenset({1}))
    _, diff = step(
        None,
        chunk(
            Facet.LIKES, snap, baseline_at=BASE, post_id=1, posted_at=BASE - 1, baseline_post_id=0
        ),
    )
    assert diff.outcome is DiffOutcome.NEW and len(diff) == 1


def test_a_members_bucket_without_state_after_the_baseline_is_reseeded_silently() -> None:
    """Lost detector state must not turn every current member into a join (and points)."""
    state, diff = step(
        None, chunk(Facet.MEMBERS, Snap(LATER, frozenset({44, 45})), baseline_at=BASE, bucket=63)
    )
    assert diff.outcome is DiffOutcome.RESEEDED
    assert list(changes(diff)) == []
    assert state is not None
    _, diff = step(
        state, chunk(Facet.MEMBERS, Snap(LATEST, frozenset({45, 46})), baseline_at=BASE, bucket=63)
    )
    assert summary(list(changes(diff))) == [
        (ChangeKind.GROUP_LEFT, 44, None),
        (ChangeKind.GROUP_JOINED, 46, None),
    ]
    assert {c.previous_snapshot_at for c in changes(diff)} == {LATER}


@pytest.mark.parametrize("at", [BASE, LATER], ids=["duplicate", "older"])
def test_duplicate_or_older_snapshot_changes_nothing(at: int) -> None:
    state, _ = step(None, chunk(Facet.LIKES, Snap(BASE, frozenset({1})), baseline_at=BASE))
    state, _ = step(state, chunk(Facet.LIKES, Snap(LATEST, frozenset({1, 2})), baseline_at=BASE))
    if at == BASE:
        at = LATEST
    kept, diff = step(state, chunk(Facet.LIKES, Snap(at, frozenset({9})), baseline_at=BASE))
    assert kept is state
    assert diff.outcome is DiffOutcome.STALE
    assert len(diff) == 0
    assert list(changes(diff)) == []


def test_declared_rebaseline_replaces_state_silently() -> None:
    state, _ = step(None, chunk(Facet.MEMBERS, Snap(BASE, frozenset({1, 2})), baseline_at=BASE))
    state, diff = step(state, chunk(Facet.MEMBERS, Snap(LATER, frozenset({3})), baseline_at=LATER))
    assert diff.outcome is DiffOutcome.BASELINE
    assert list(changes(diff)) == []
    assert state is not None
    assert state.ids.tolist() == [3]


def test_state_from_before_a_rebaseline_is_not_diffed_against() -> None:
    state, _ = step(None, chunk(Facet.LIKES, Snap(BASE, frozenset({1, 2})), baseline_at=BASE))
    # The group was re-baselined at LATER; this post was not in that run.
    _, diff = step(state, chunk(Facet.LIKES, Snap(LATEST, frozenset({2, 5})), baseline_at=LATER))
    assert diff.outcome is DiffOutcome.NEW
    assert summary(list(changes(diff))) == [
        (ChangeKind.POST_LIKED, 2, None),
        (ChangeKind.POST_LIKED, 5, None),
    ]


def test_post_missing_from_a_run_takes_nothing_and_a_late_redelivery_stays_stale() -> None:
    state, _ = step(None, chunk(Facet.LIKES, Snap(BASE, frozenset({1, 2})), baseline_at=BASE))
    assert forget_posts([100, 101, 102], [101]) == [100, 102]
    tomb = retire(state, LATER)
    assert tomb is not None
    assert tomb.retired
    assert tomb.ids.size == 0
    assert tomb.snapshot_at == LATER
    # A redelivered chunk from the baseline run must not look like a new post.
    kept, diff = step(tomb, chunk(Facet.LIKES, Snap(BASE, frozenset({1, 2})), baseline_at=BASE))
    assert kept is tomb
    assert diff.outcome is DiffOutcome.STALE
    assert len(diff) == 0


def test_retired_post_that_comes_back_is_rebaselined_silently_then_diffed() -> None:
    state, _ = step(None, chunk(Facet.COMMENTS, Snap(BASE, comments={"1": 5}), baseline_at=BASE))
    tomb = retire(state, LATER)
    assert tomb is not None
    assert tomb.authors is not None
    restored = Snap(LATEST, comments={"1": 5, "2": 6})
    state, diff = step(tomb, chunk(Facet.COMMENTS, restored, baseline_at=BASE))
    assert diff.outcome is DiffOutcome.REOPENED
    assert list(changes(diff)) == []
    after = Snap(LATEST + 1, comments={"2": 6})
    _, diff = step(state, chunk(Facet.COMMENTS, after, baseline_at=BASE))
    assert summary(list(changes(diff))) == [(ChangeKind.COMMENT_DELETED, 5, "1")]


def test_retire_leaves_a_newer_state_and_an_unknown_post_alone() -> None:
    state, _ = step(None, chunk(Facet.LIKES, Snap(LATER, frozenset({1})), baseline_at=LATER))
    assert retire(state, LATER) is state
    assert retire(state, BASE) is state
    assert retire(None, LATER) is None


def test_event_id_is_the_documented_hash_of_what_the_event_is() -> None:
    (emitted,) = run(Facet.COMMENTS, Snap(LATER, comments={"MTU0NTc4": 5}), post_id=3)
    (change,) = emitted
    assert change.event_id == change_event_id(
        ChangeKind.COMMENT_POSTED,
        network="vk",
        group_id=7,
        social_user_id=5,
        post_id=3,
        comment_id="MTU0NTc4",
        snapshot_at=LATER,
    )
    assert change.event_id == contract_ids.event_id(
        "CommentPosted",
        "vk",
        7,
        "5",
        datetime(2023, 11, 14, 23, 13, 20, tzinfo=UTC),
        post_id=3,
        comment_id="MTU0NTc4",
    )
    # Pinned: downstream deduplicates on this id across deployments, so it must not drift.
    # printf '["event","CommentPosted","vk",7,"5",3,"MTU0NTc4",1700003600000]' | sha256sum
    assert change.event_id == "9fd67c0cec04f1607b8df68c8f956e71"


def test_every_field_of_what_the_event_is_changes_its_id() -> None:
    fields: dict[str, Any] = {
        "network": "vk",
        "group_id": 1,
        "social_user_id": 2,
        "post_id": 3,
        "comment_id": "4",
        "snapshot_at": 5,
    }
    base = change_event_id(ChangeKind.COMMENT_POSTED, **fields)
    assert len(base) == 32
    assert int(base, 16) >= 0
    variants = {change_event_id(ChangeKind.COMMENT_DELETED, **fields)}
    for name, other in [
        ("network", "ok"),
        ("group_id", 10),
        ("social_user_id", 20),
        ("post_id", None),
        ("comment_id", None),
        ("snapshot_at", 50),
    ]:
        variants.add(change_event_id(ChangeKind.COMMENT_POSTED, **{**fields, name: other}))
    assert base not in variants
    assert len(variants) == 7


def test_chunk_keeps_read_only_views_and_leaves_the_callers_array_alone() -> None:
    mine = np.array([1, 2, 3], dtype=np.int64)
    made = Chunk(Facet.MEMBERS, "vk", 7, BASE, BASE, mine, bucket=0)
    assert mine.flags.writeable
    assert not made.ids.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        made.ids[0] = 9
    assert made.state_key == "vk:7:members:0"
    assert chunk(Facet.LIKES, Snap(BASE), baseline_at=BASE, post_id=5).state_key == "vk:7:likes:5"
    assert Chunk(Facet.MEMBERS, "ok", 7, BASE, BASE, mine).state_key == "ok:7:members:0"


def test_change_records_are_plain_frozen_values() -> None:
    (emitted,) = run(Facet.LIKES, Snap(LATER, frozenset({1})))
    (change,) = emitted
    assert change == Change(**{f: getattr(change, f) for f in Change.__dataclass_fields__})
    assert len({change, change}) == 1
    with pytest.raises(AttributeError):
        change.social_user_id = 2  # type: ignore[misc]


GOOD: dict[str, Any] = {
    "facet": Facet.LIKES,
    "network": "vk",
    "group_id": 7,
    "snapshot_at": LATER,
    "baseline_at": BASE,
    "ids": ids([1, 2]),
    "authors": None,
    "post_id": 5,
    "bucket": None,
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ids": [1, 2]}, "numpy int64 array"),
        ({"ids": np.array([1, 2], dtype=np.int32)}, "dtype int64"),
        ({"ids": np.array([1.0, 2.0])}, "dtype int64"),
        ({"ids": np.array([[1, 2]], dtype=np.int64)}, "1-D"),
        ({"ids": np.array([2, 1], dtype=np.int64)}, "unsorted at index 1"),
        ({"ids": np.array([1, 3, 3], dtype=np.int64)}, "duplicate at index 2"),
        ({"ids": np.array([1, 2], dtype=">i8")}, "dtype int64"),
        ({"authors": ids([1, 2])}, "has no authors"),
        ({"facet": Facet.COMMENTS, "ids": texts(["1", "2"])}, "needs authors"),
        ({"facet": Facet.COMMENTS}, "comment ids: expected a numpy str array, got dtype int64"),
        (
            {"facet": Facet.COMMENTS, "ids": np.array(["2", "10"]), "authors": ids([1, 2])},
            "unsorted at index 1",
        ),
        ({"facet": Facet.COMMENTS, "ids": texts(["1", "2"]), "authors": ids([1])}, "1 authors"),
        (
            {
                "facet": Facet.COMMENTS,
                "ids": texts(["1", "2"]),
                "authors": np.array([1, 2], dtype=np.uint64),
            },
            "int64",
        ),
        ({"ids": texts(["1", "2"])}, "expected dtype int64"),
        ({"facet": "shares"}, "unknown facet"),
        ({"snapshot_at": BASE - 1}, "precedes baseline_at"),
        ({"snapshot_at": -1, "baseline_at": -1}, "snapshot_at must be in"),
        ({"group_id": True}, "group_id must be an int"),
        ({"group_id": 0}, "group_id must be in"),
        ({"network": "VK"}, "network"),
        ({"network": "vk:1"}, "network"),
        ({"post_id": None}, "needs a post_id"),
        ({"post_id": 2**63}, "post_id must be in"),
        ({"bucket": 3}, "not bucketed"),
        ({"facet": Facet.MEMBERS}, "members chunk has no post_id"),
        ({"facet": Facet.MEMBERS, "post_id": None, "posted_at": BASE}, "has no posted_at"),
        ({"posted_at": -5}, "posted_at must be in"),
        ({"baseline_post_id": -1}, "baseline_post_id must be in"),
        ({"baseline_post_id": True}, "baseline_post_id must be an int"),
        (
            {"facet": Facet.MEMBERS, "post_id": None, "baseline_post_id": 3},
            "has no baseline_post_id",
        ),
        ({"snapshot_at": LATER * 1000}, "snapshot_at must be in"),
        ({"facet": Facet.MEMBERS, "post_id": None, "bucket": -1}, "bucket must be in"),
        ({"facet": Facet.REPOSTS, "network": "ok"}, "'ok' has no reposts"),
    ],
)
def test_bad_chunks_are_refused_with_a_reason(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidChunkError, match=message) as caught:
        Chunk(**{**GOOD, **change})
    assert isinstance(caught.value, DetectorInputError)
    assert isinstance(caught.value, ValueError)


def test_state_of_another_facet_is_refused() -> None:
    likes_state = FacetState(BASE, ids([1]))
    comments = chunk(Facet.COMMENTS, Snap(LATER, comments={"1": 1}), baseline_at=BASE)
    with pytest.raises(InvalidChunkError, match="does not match a comments chunk"):
        step(likes_state, comments)
    comments_state = FacetState(BASE, texts(["1"]), ids([4]))
    with pytest.raises(InvalidChunkError, match="has comment authors"):
        step(comments_state, chunk(Facet.LIKES, Snap(LATER), baseline_at=BASE))


def test_a_million_member_group_diffs_well_under_a_second() -> None:
    rng = np.random.default_rng(5)
    before = np.unique(rng.integers(1, 900_000_000, 1_010_000, dtype=np.int64))[:1_000_000]
    leavers = rng.choice(before, 5_000, replace=False)
    joiners = rng.integers(900_000_000, 990_000_000, 5_000, dtype=np.int64)
    after = np.union1d(np.setdiff1d(before, leavers), joiners)
    state = FacetState(BASE, before)
    started = time.perf_counter()
    _, diff = step(state, Chunk(Facet.MEMBERS, "vk", 7, LATER, BASE, after))
    elapsed = time.perf_counter() - started
    assert np.array_equal(diff.removed, np.sort(leavers))
    assert np.array_equal(diff.added, np.unique(joiners))
    assert elapsed < 1.0, f"1M-member diff took {elapsed:.3f}s"
