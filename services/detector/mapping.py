"""Contract records in, contract records out: the detector's translation layer.

Snapshot models (``services.contracts``) become diff :class:`~services.detector.diff.Chunk`
objects; :class:`~services.detector.diff.Change` records become Avro domain events.
Pure (no Kafka): the Faust agent only decodes, calls these and the diff core, sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Final

import numpy as np

from services.contracts import (
    CommentDeleted,
    CommentPosted,
    DomainEvent,
    GroupJoined,
    GroupLeft,
    MembersChunk,
    PostCommentsChunk,
    PostLiked,
    PostLikesChunk,
    PostReposted,
    PostRepostsChunk,
    PostUnliked,
    RepostDeleted,
)
from services.detector.diff import Change, ChangeKind, Chunk, Facet, FacetDiff, changes

__all__ = ["EVENT_CLASSES", "PostChunkModel", "SnapshotChunkModel", "events", "millis", "to_chunk"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)

PostChunkModel = PostLikesChunk | PostRepostsChunk | PostCommentsChunk
SnapshotChunkModel = MembersChunk | PostChunkModel

EVENT_CLASSES: Final[dict[ChangeKind, type[DomainEvent]]] = {
    ChangeKind.GROUP_JOINED: GroupJoined,
    ChangeKind.GROUP_LEFT: GroupLeft,
    ChangeKind.POST_LIKED: PostLiked,
    ChangeKind.POST_UNLIKED: PostUnliked,
    ChangeKind.COMMENT_POSTED: CommentPosted,
    ChangeKind.COMMENT_DELETED: CommentDeleted,
    ChangeKind.POST_REPOSTED: PostReposted,
    ChangeKind.REPOST_DELETED: RepostDeleted,
}


def millis(at: datetime) -> int:
    """Epoch milliseconds, exactly (no float rounding)."""
    return (at - _EPOCH) // _MS


def _from_millis(value: int) -> datetime:
    return _EPOCH + value * _MS


def to_chunk(model: SnapshotChunkModel) -> Chunk:
    """The diff chunk for a snapshot record; raises ``InvalidChunkError`` on a bad one.

    Members arrive sorted (the contract says so) and unsorted members are refused, as a
    collector bug. The contract promises no order for likers, reposters or comments,
    so those are sorted here; duplicates are still refused by the chunk.
    """
    common = {
        "network": model.network.value,
        "group_id": model.group_id,
        "snapshot_at": millis(model.snapshot_at),
        "baseline_at": millis(model.baseline_at),
    }
    if isinstance(model, MembersChunk):
        members = np.asarray(model.member_ids, dtype=np.int64)
        return Chunk(Facet.MEMBERS, ids=members, bucket=model.bucket, **common)  # type: ignore[arg-type]
    posted_at = millis(model.posted_at)
    if isinstance(model, PostCommentsChunk):
        comment_ids = np.array([c.comment_id for c in model.comments], dtype=np.str_)
        authors = np.array([c.author_id for c in model.comments], dtype=np.int64)
        order = np.argsort(comment_ids, kind="stable")
        return Chunk(
            Facet.COMMENTS,
            ids=comment_ids[order],
            authors=authors[order],
            post_id=model.post_id,
            posted_at=posted_at,
            baseline_post_id=model.baseline_post_id,
            **common,  # type: ignore[arg-type]
        )
    facet = Facet.LIKES if isinstance(model, PostLikesChunk) else Facet.REPOSTS
    users = np.sort(np.asarray(model.user_ids, dtype=np.int64))
    return Chunk(
        facet,
        ids=users,
        post_id=model.post_id,
        posted_at=posted_at,
        baseline_post_id=model.baseline_post_id,
        **common,  # type: ignore[arg-type]
    )


def events(diff: FacetDiff, chunk: Chunk, observed_at: datetime) -> Iterator[DomainEvent]:
    """The domain events of a diff, in the diff's documented order.

    ``event_id`` is the diff core's (the contract's ``event_id`` hash, tested equal to
    ``build()``). ``previous_snapshot_at`` is required by the contract; a key diffed
    against nothing (a new post or bucket after the baseline) reports the group's
    ``baseline_at``, the last moment the detector knows the key was not there yet.
    """
    fallback = chunk.baseline_at
    for change in changes(diff):
        yield _event(change, fallback, observed_at)


def _event(change: Change, fallback_previous: int, observed_at: datetime) -> DomainEvent:
    cls = EVENT_CLASSES[change.kind]
    previous = (
        change.previous_snapshot_at
        if change.previous_snapshot_at is not None
        else fallback_previous
    )
    fields: dict[str, object] = {
        "event_id": change.event_id,
        "network": change.network,
        "group_id": change.group_id,
        "social_user_id": str(change.social_user_id),
        "observed_at": observed_at,
        "previous_snapshot_at": _from_millis(previous),
        "snapshot_at": _from_millis(change.snapshot_at),
    }
    if change.post_id is not None:
        fields["post_id"] = change.post_id
    if change.comment_id is not None:
        fields["comment_id"] = change.comment_id
    return cls.model_validate(fields)
