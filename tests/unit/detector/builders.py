"""Small builders and a reference model shared by the detector tests.

The reference model restates DESIGN.md section 3 with Python sets, independently of
the numpy code, so the property tests compare the implementation with the rules and
not with itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from services.detector.diff import Change, ChangeKind, Chunk, Facet
from services.detector.state import IdArray, TextArray

REMOVAL = {
    Facet.MEMBERS: ChangeKind.GROUP_LEFT,
    Facet.LIKES: ChangeKind.POST_UNLIKED,
    Facet.REPOSTS: ChangeKind.REPOST_DELETED,
    Facet.COMMENTS: ChangeKind.COMMENT_DELETED,
}
ADDITION = {
    Facet.MEMBERS: ChangeKind.GROUP_JOINED,
    Facet.LIKES: ChangeKind.POST_LIKED,
    Facet.REPOSTS: ChangeKind.POST_REPOSTED,
    Facet.COMMENTS: ChangeKind.COMMENT_POSTED,
}
NEGATIVE = frozenset(REMOVAL.values())


def ids(values: Iterable[int]) -> IdArray:
    return np.array(sorted(values), dtype=np.int64)


def texts(values: Iterable[str]) -> TextArray:
    return np.array(sorted(values), dtype=np.str_)


@dataclass(frozen=True)
class Snap:
    """One snapshot of one key in test terms: a set of users, or comment id -> author."""

    at: int
    users: frozenset[int] = frozenset()
    comments: Mapping[str, int] | None = None


def chunk(
    facet: Facet,
    snap: Snap,
    *,
    baseline_at: int,
    network: str = "vk",
    group_id: int = 7,
    post_id: int | None = None,
    bucket: int | None = None,
    posted_at: int | None = None,
    baseline_post_id: int | None = None,
) -> Chunk:
    if facet is not Facet.MEMBERS and post_id is None:
        post_id = 100
    if facet is Facet.COMMENTS:
        comments = dict(snap.comments or {})
        order = sorted(comments)
        return Chunk(
            facet,
            network,
            group_id,
            snap.at,
            baseline_at,
            texts(order),
            np.array([comments[c] for c in order], dtype=np.int64),
            post_id=post_id,
            posted_at=posted_at,
            baseline_post_id=baseline_post_id,
        )
    return Chunk(
        facet,
        network,
        group_id,
        snap.at,
        baseline_at,
        ids(snap.users),
        None,
        post_id,
        bucket,
        posted_at,
        baseline_post_id,
    )


Key = tuple[ChangeKind, int, str | None, int | None, int]


def key(change: Change) -> Key:
    """What a change says, without the bookkeeping (ids, network, group)."""
    return (
        change.kind,
        change.social_user_id,
        change.comment_id,
        change.previous_snapshot_at,
        change.snapshot_at,
    )


def _pairs(snap: Snap, facet: Facet) -> set[tuple[int, str | None]]:
    """(user, comment) pairs: what a snapshot holds, comparable across facets."""
    if facet is Facet.COMMENTS:
        return {(author, comment) for comment, author in (snap.comments or {}).items()}
    return {(user, None) for user in snap.users}


def model_changes(facet: Facet, delivered: Sequence[Snap], baseline_at: int) -> list[Key]:
    """The rules, written the slow obvious way, for one key in delivery order."""
    out: list[Key] = []
    last: Snap | None = None
    for snap in delivered:
        if last is not None and snap.at <= last.at:
            continue
        if snap.at == baseline_at or (last is None and facet is Facet.MEMBERS):
            # the baseline, or a members bucket first seen after it (re-seeded silently)
            last = snap
            continue
        before = _pairs(last, facet) if last is not None else set()
        previous = last.at if last is not None else None
        after = _pairs(snap, facet)
        for kind, pairs in ((REMOVAL[facet], before - after), (ADDITION[facet], after - before)):
            for user, comment in sorted(pairs, key=lambda p: (p[0], p[1] or "")):
                out.append((kind, user, comment, previous, snap.at))
        last = snap
    return out


def replay(facet: Facet, start: Snap, emitted: Iterable[Change]) -> set[tuple[int, str | None]]:
    """Apply changes to a snapshot; replaying A->B onto A must give B."""
    held = _pairs(start, facet)
    for change in emitted:
        pair = (change.social_user_id, change.comment_id)
        if change.kind in NEGATIVE:
            assert pair in held, f"{change.kind} for {pair} that was not there"
            held.remove(pair)
        else:
            assert pair not in held, f"{change.kind} for {pair} that was already there"
            held.add(pair)
    return held


def pairs(snap: Snap, facet: Facet) -> set[tuple[int, str | None]]:
    return _pairs(snap, facet)
