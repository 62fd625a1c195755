"""Property tests: the detector against the rules, for arbitrary snapshot histories."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector.diff import (
    Change,
    Facet,
    change_event_id,
    changes,
    forget_posts,
    retire,
    step,
)
from services.detector.state import FacetState
from tests.unit.detector.builders import (
    NEGATIVE,
    Snap,
    chunk,
    key,
    model_changes,
    pairs,
    replay,
)

STEP = 60_000
FACETS = st.sampled_from(list(Facet))
# VK-style numbers (whose string order is not numeric), OK-style opaque strings, and
# text that needs escaping in the event-id JSON.
COMMENT_IDS = [
    *(str(n) for n in range(1, 22)),
    "MTU0NTc4OTk",
    "MTU0NTc5MDA=",
    'quo"te',
    "back\\slash",
    "ünï",
    "\u2028",
    "tab\t",
    "",
]


@st.composite
def histories(draw: st.DrawFn, facet: Facet, min_size: int = 1) -> list[Snap]:
    """Snapshots of one key at strictly increasing times. Users include negative ids
    (VK communities); a comment keeps its author for life, as on the networks."""
    count = draw(st.integers(min_size, 7))
    times = sorted(draw(st.sets(st.integers(1, 10_000), min_size=count, max_size=count)))
    drawn = draw(st.lists(st.integers(-3, 12), min_size=len(COMMENT_IDS), max_size=40))
    authors = dict(zip(COMMENT_IDS, drawn[: len(COMMENT_IDS)], strict=True))
    out = []
    for at in times:
        if facet is Facet.COMMENTS:
            present = draw(st.sets(st.sampled_from(COMMENT_IDS), max_size=12))
            out.append(Snap(at * STEP, comments={c: authors[c] for c in present}))
        else:
            out.append(Snap(at * STEP, frozenset(draw(st.sets(st.integers(-5, 40), max_size=25)))))
    return out


def deliver(
    facet: Facet, snaps: Sequence[Snap], baseline_at: int
) -> tuple[FacetState | None, list[Change], list[list[Change]]]:
    state: FacetState | None = None
    per_chunk: list[list[Change]] = []
    for snap in snaps:
        state, diff = step(state, chunk(facet, snap, baseline_at=baseline_at))
        emitted = list(changes(diff))
        assert len(emitted) == len(diff)
        per_chunk.append(emitted)
    return state, [c for block in per_chunk for c in block], per_chunk


@given(st.data(), FACETS)
def test_replaying_the_changes_onto_the_baseline_gives_the_last_snapshot(
    data: st.DataObject, facet: Facet
) -> None:
    snaps = data.draw(histories(facet))
    state, emitted, per_chunk = deliver(facet, snaps, baseline_at=snaps[0].at)
    assert per_chunk[0] == []  # the baseline is silent
    assert replay(facet, snaps[0], emitted) == pairs(snaps[-1], facet)
    assert [key(c) for c in emitted] == model_changes(facet, snaps, snaps[0].at)
    assert state is not None
    assert state.snapshot_at == snaps[-1].at
    for previous, snap, block in zip(snaps, snaps[1:], per_chunk[1:], strict=False):
        assert {(c.previous_snapshot_at, c.snapshot_at) for c in block} <= {(previous.at, snap.at)}


@given(st.data(), st.sampled_from([f for f in Facet if f is not Facet.MEMBERS]))
def test_a_key_first_seen_after_the_baseline_replays_from_nothing(
    data: st.DataObject, facet: Facet
) -> None:
    """A new post's facet: everything in it happened after the baseline."""
    snaps = data.draw(histories(facet))
    _, emitted, per_chunk = deliver(facet, snaps, baseline_at=snaps[0].at - STEP)
    assert replay(facet, Snap(0), emitted) == pairs(snaps[-1], facet)
    assert {c.previous_snapshot_at for c in per_chunk[0]} <= {None}
    assert not any(c.kind in NEGATIVE for c in per_chunk[0])


@given(st.data())
def test_a_members_bucket_first_seen_after_the_baseline_is_silent_then_diffs(
    data: st.DataObject,
) -> None:
    """Lost state is re-seeded: no invented joins; later runs diff from the re-seed."""
    snaps = data.draw(histories(Facet.MEMBERS))
    _, emitted, per_chunk = deliver(Facet.MEMBERS, snaps, baseline_at=snaps[0].at - STEP)
    assert per_chunk[0] == []
    assert replay(Facet.MEMBERS, snaps[0], emitted) == pairs(snaps[-1], Facet.MEMBERS)


@given(st.data(), FACETS)
def test_duplicate_or_older_snapshots_emit_nothing_and_keep_the_state(
    data: st.DataObject, facet: Facet
) -> None:
    snaps = data.draw(histories(facet))
    state, _, _ = deliver(facet, snaps, baseline_at=snaps[0].at)
    late = data.draw(st.sampled_from(snaps))
    kept, diff = step(state, chunk(facet, late, baseline_at=snaps[0].at))
    assert kept is state
    assert list(changes(diff)) == []


@given(st.data(), FACETS)
def test_shuffled_redelivery_equals_in_order_delivery_without_the_older_ones(
    data: st.DataObject, facet: Facet
) -> None:
    snaps = data.draw(histories(facet, min_size=2))
    baseline_at = snaps[0].at
    delivery = data.draw(st.lists(st.sampled_from(snaps), min_size=1, max_size=14))
    newest_so_far: list[Snap] = []
    for snap in delivery:
        if not newest_so_far or snap.at > newest_so_far[-1].at:
            newest_so_far.append(snap)
    state, emitted, _ = deliver(facet, delivery, baseline_at)
    in_order_state, in_order, _ = deliver(facet, newest_so_far, baseline_at)
    assert emitted == in_order
    assert state == in_order_state
    assert [key(c) for c in emitted] == model_changes(facet, newest_so_far, baseline_at)


GroupHistory = tuple[list[list[tuple[int, frozenset[int]]]], dict[int, int]]


@st.composite
def group_histories(draw: st.DrawFn) -> GroupHistory:
    """Runs of one group's likes facet: each post appears in a window of runs, may be
    deleted (and restored), and only ever gains likers. Returns, per run, the
    (post, likers) chunks published, and the run each post was published in."""
    runs = draw(st.integers(2, 8))
    window = draw(st.integers(1, 4))
    published: list[list[tuple[int, frozenset[int]]]] = [[] for _ in range(runs)]
    created_in: dict[int, int] = {}
    for post in range(1, draw(st.integers(1, 6)) + 1):
        created = created_in[post] = draw(st.integers(0, runs - 1))
        hidden = draw(st.sets(st.integers(created, runs - 1)))  # deleted at these runs
        likers: frozenset[int] = frozenset()
        for run in range(created, min(runs, created + window)):
            likers |= draw(st.frozensets(st.integers(1, 30), max_size=4))
            if run not in hidden:
                published[run].append((post, likers))
    return published, created_in


@settings(max_examples=150)
@given(group_histories(), st.data())
def test_posts_that_vanish_or_slide_out_never_take_anything_or_repeat_a_like(
    history: GroupHistory, data: st.DataObject
) -> None:
    published, created_in = history
    runs = len(published)
    baseline_at = STEP
    with_posted_at = data.draw(st.booleans(), label="chunks carry posted_at")
    table: dict[int, FacetState | None] = {}
    emitted: list[Change] = []

    def feed(run: int, post: int, likers: frozenset[int]) -> None:
        snap = Snap((run + 1) * STEP, likers)
        # Published just before the run it was created in; a post created at the baseline
        # but hidden then (deleted, restored later) is an old post when first seen.
        posted_at = (created_in[post] + 1) * STEP - 1 if with_posted_at else None
        made = chunk(Facet.LIKES, snap, baseline_at=baseline_at, post_id=post, posted_at=posted_at)
        state, diff = step(table.get(post), made)
        table[post] = state
        emitted.extend(changes(diff))

    for run in range(runs):
        for post, likers in published[run]:
            feed(run, post, likers)
        if data.draw(st.booleans(), label="manifest retires absent posts"):
            manifest = [post for post, _ in published[run]]
            for post in forget_posts(table, manifest):
                table[post] = retire(table[post], (run + 1) * STEP)
        for _ in range(data.draw(st.integers(0, 2), label="redeliveries")):
            old_run = data.draw(st.integers(0, run), label="redelivered run")
            if published[old_run]:
                post, likers = data.draw(st.sampled_from(published[old_run]))
                feed(old_run, post, likers)

    assert not [c for c in emitted if c.kind in NEGATIVE]
    likes = Counter((c.post_id, c.social_user_id) for c in emitted)
    assert not [like for like, times in likes.items() if times > 1]


def _shifted(snap: Snap, offset: int) -> Snap:
    return Snap(snap.at, frozenset(user + offset for user in snap.users), snap.comments)


@settings(max_examples=60)
@given(st.data())
def test_event_ids_are_deterministic_and_unique_across_a_stream(data: st.DataObject) -> None:
    plan: list[tuple[Facet, str, int, int, list[Snap]]] = []
    for facet in data.draw(st.lists(FACETS, min_size=1, max_size=4, unique=True)):
        keys = st.tuples(st.sampled_from(["vk", "ok"]), st.integers(1, 3), st.integers(1, 3))
        for network, group_id, part in data.draw(
            st.lists(keys, min_size=1, max_size=3, unique=True)
        ):
            if facet is Facet.REPOSTS and network == "ok":
                continue
            snaps = data.draw(histories(facet, min_size=2))
            if facet is Facet.MEMBERS:  # buckets of one group hold disjoint users
                snaps = [_shifted(snap, part * 1_000) for snap in snaps]
            plan.append((facet, network, group_id, part, snaps))

    def stream() -> list[Change]:
        out: list[Change] = []
        for facet, network, group_id, part, snaps in plan:
            where = {"bucket": part} if facet is Facet.MEMBERS else {"post_id": part}
            state: FacetState | None = None
            for snap in snaps:
                made = chunk(
                    facet,
                    snap,
                    baseline_at=snaps[0].at,
                    network=network,
                    group_id=group_id,
                    **where,
                )
                state, diff = step(state, made)
                out.extend(changes(diff))
        return out

    first, second = stream(), stream()
    assert [c.event_id for c in first] == [c.event_id for c in second]
    assert len({c.event_id for c in first}) == len(first)
    for c in first:
        assert c.event_id == change_event_id(
            c.kind,
            network=c.network,
            group_id=c.group_id,
            social_user_id=c.social_user_id,
            post_id=c.post_id,
            comment_id=c.comment_id,
            snapshot_at=c.snapshot_at,
        )
