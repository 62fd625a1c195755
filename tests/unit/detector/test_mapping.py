"""Contract records to diff chunks and back to contract events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.contracts import (
    Comment,
    CommentPosted,
    GroupJoined,
    MembersChunk,
    PostCommentsChunk,
    PostLiked,
    PostLikesChunk,
)
from services.contracts.models import Network
from services.detector.diff import Facet, InvalidChunkError
from services.detector.history import advance
from services.detector.mapping import events, millis, to_chunk

T0 = datetime(2025, 3, 1, tzinfo=UTC)
T1 = T0 + timedelta(minutes=10)
COMMON = {"network": Network.VK, "group_id": 42, "run_id": "r"}


def test_millis_is_exact() -> None:
    assert millis(datetime(1970, 1, 1, 0, 0, 1, 999_000, tzinfo=UTC)) == 1999


def test_members_baseline_then_join_gives_contract_events_with_build_ids() -> None:
    base = MembersChunk(
        snapshot_at=T0, baseline_at=T0, bucket=1, bucket_count=2, member_ids=(1, 3), **COMMON
    )
    later = base.model_copy(update={"snapshot_at": T1, "member_ids": (1, 3, 5)})
    history, diff = advance(None, to_chunk(base), 0)
    assert list(events(diff, to_chunk(base), T1)) == []
    _, diff = advance(history, to_chunk(later), 0)
    (joined,) = events(diff, to_chunk(later), T1)
    assert isinstance(joined, GroupJoined)
    assert joined == GroupJoined.build(
        network=Network.VK,
        group_id=42,
        social_user_id="5",
        observed_at=T1,
        previous_snapshot_at=T0,
        snapshot_at=T1,
    )
    assert to_chunk(later).state_key == later.key().to_bytes().decode()


def test_new_post_reports_the_baseline_as_its_previous_snapshot() -> None:
    likes = PostLikesChunk(
        snapshot_at=T1, baseline_at=T0, post_id=7, posted_at=T1, user_ids=(9, 2), **COMMON
    )
    chunk = to_chunk(likes)
    assert chunk.facet is Facet.LIKES and chunk.ids.tolist() == [2, 9]  # sorted here
    _, diff = advance(None, chunk, 0)
    got = list(events(diff, chunk, T1))
    assert [e.social_user_id for e in got] == ["2", "9"]
    assert all(isinstance(e, PostLiked) and e.previous_snapshot_at == T0 for e in got)


def test_a_post_dated_before_the_baseline_but_newer_by_id_gives_like_events() -> None:
    """The record as the collector publishes it: the date predates the baseline, the
    id is above the baseline's highest, so the likes are PostLiked events."""
    likes = PostLikesChunk(
        snapshot_at=T1,
        baseline_at=T0,
        post_id=8,
        posted_at=T0 - timedelta(hours=1),
        baseline_post_id=7,
        user_ids=(9, 2),
        **COMMON,
    )
    chunk = to_chunk(likes)
    assert chunk.baseline_post_id == 7
    _, diff = advance(None, chunk, 0)
    assert [e.social_user_id for e in events(diff, chunk, T1)] == ["2", "9"]
    older = to_chunk(likes.model_copy(update={"post_id": 7}))
    _, diff = advance(None, older, 0)
    assert list(events(diff, older, T1)) == []


def test_comments_are_sorted_by_id_and_keep_their_authors() -> None:
    comments = PostCommentsChunk(
        snapshot_at=T1,
        baseline_at=T0,
        post_id=7,
        posted_at=T1,
        comments=(Comment(comment_id="b", author_id=1), Comment(comment_id="a", author_id=2)),
        **COMMON,
    )
    chunk = to_chunk(comments)
    _, diff = advance(None, chunk, 0)
    got = list(events(diff, chunk, T1))
    assert [(e.social_user_id, e.comment_id) for e in got if isinstance(e, CommentPosted)] == [
        ("1", "b"),
        ("2", "a"),
    ]


def test_unsorted_members_and_duplicate_likers_are_refused() -> None:
    members = MembersChunk(
        snapshot_at=T0, baseline_at=T0, bucket=0, bucket_count=1, member_ids=(3, 1), **COMMON
    )
    with pytest.raises(InvalidChunkError, match="unsorted"):
        to_chunk(members)
    likes = PostLikesChunk(
        snapshot_at=T0, baseline_at=T0, post_id=7, posted_at=T0, user_ids=(2, 2), **COMMON
    )
    with pytest.raises(InvalidChunkError, match="duplicate"):
        to_chunk(likes)
