"""From what a run read to the messages it publishes: pure functions, no Kafka.

A run becomes: one ``MembersChunk`` per bucket (every bucket, empty ones too, so
the detector can tell "nobody in this bucket" from "bucket not sent"), then per
post in the window, ascending by id, its likes, comments and (VK) reposts, then
the ``RunManifest``. The manifest comes last so a reader that has it has the run.

A member is in bucket ``member_id mod bucket_count`` (docs/contract.md): stable
across runs and processes, unlike Python's ``hash``, and cheap on numpy arrays.

Only users are published: an id below 1 (a community liking, reposting or commenting
as itself has a negative id; a 0 stands for none) can never be linked, and the
contract refuses it (``bounds.PositiveIds``: an event's ``social_user_id`` is a
positive integer for vk and ok), so it is left out of the run here rather than
failing every run of the group.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from services.collector.api import GroupMembers, PostFacets, Skip
from services.collector.api.records import IdArray
from services.contracts.bounds import EARLIEST, LATEST
from services.contracts.models import (
    Comment,
    MembersChunk,
    Network,
    PostCommentsChunk,
    PostLikesChunk,
    PostRepostsChunk,
    RunManifest,
    SkippedObject,
    SnapshotChunk,
)

RECORD_OVERHEAD_BYTES = 1024
"""Room for the record batch header, record header and timestamps around key + value."""

_POST_OBJECT = re.compile(r"^(?:vk:post:-?\d+_|ok:topic:\d+_)(?P<post>\d+)$")
_GROUP_OBJECT = re.compile(r"^(?:vk|ok):group:")


class RunBuildError(RuntimeError):
    """What was read cannot be published as a run (the reason says why)."""


class MessageTooLargeError(RunBuildError):
    """A snapshot would exceed the topic's max.message.bytes."""


@dataclass(frozen=True)
class Collected:
    """Everything one run read from the API, in the order the client yielded it."""

    network: str
    group_id: int
    members: IdArray | None = None
    posts: tuple[PostFacets, ...] = ()
    skips: tuple[Skip, ...] = ()

    @classmethod
    def gather(
        cls, network: str, group_id: int, items: Sequence[GroupMembers | PostFacets | Skip]
    ) -> Collected:
        members: IdArray | None = None
        posts: list[PostFacets] = []
        skips: list[Skip] = []
        for item in items:
            if isinstance(item, GroupMembers):
                members = item.members
            elif isinstance(item, PostFacets):
                posts.append(item)
            else:
                skips.append(item)
        return cls(network, group_id, members, tuple(posts), tuple(skips))

    @property
    def objects_read(self) -> int:
        """Ids and comments read: members, likers, reposters, comments."""
        total = 0 if self.members is None else len(self.members)
        for post in self.posts:
            total += len(post.likers) + len(post.comments)
            total += 0 if post.reposters is None else len(post.reposters)
        return total


@dataclass(frozen=True)
class RunMeta:
    run_id: str
    snapshot_at: datetime
    baseline_at: datetime
    bucket_count: int
    baseline_post_id: int | None = None
    """The highest post id the group's baseline run saw; ``None`` if not recorded."""


def bucket_members(member_ids: IdArray, bucket_count: int) -> list[IdArray]:
    """``bucket_count`` sorted, duplicate-free arrays; bucket ``b`` holds the ids with
    ``id mod bucket_count == b``.

    One stable sort by bucket keeps each bucket's ids in their original ascending
    order, so a 1,000,000-member group splits in milliseconds.
    """
    if bucket_count < 1:
        raise ValueError("bucket_count must be at least 1")
    ids = np.unique(np.asarray(member_ids, dtype=np.int64))
    buckets = ids % bucket_count
    order = np.argsort(buckets, kind="stable")
    bounds = np.searchsorted(buckets[order], np.arange(bucket_count + 1))
    ordered = ids[order]
    return [ordered[bounds[b] : bounds[b + 1]] for b in range(bucket_count)]


def users_only(ids: IdArray) -> IdArray:
    """``ids`` without those below 1 (communities, "none"): what a snapshot may carry."""
    users = ids >= 1
    return ids if users.all() else ids[users]


def post_id_of(skip: Skip) -> int | None:
    """The post a skip is about (``vk:post:-42_7`` -> 7), ``None`` for anything else."""
    match = _POST_OBJECT.match(skip.object)
    return int(match.group("post")) if match else None


def skip_reason(skip: Skip) -> str:
    network = skip.object.split(":", 1)[0]
    where = f" on {skip.method}" if skip.method else ""
    return f"{network} error {skip.code}{where}: {skip.message}"


def _seconds(unix_s: int) -> datetime:
    return datetime.fromtimestamp(unix_s, tz=UTC)


def build_chunks(collected: Collected, meta: RunMeta) -> Iterator[SnapshotChunk]:
    """The run's messages in publishing order, manifest last (built lazily).

    Raises ``RunBuildError`` at once when the group itself could not be read
    (members or wall refused): publishing a run without members would look like
    everyone left, and one without posts like every post left the window, so
    nothing is published and the detector keeps its state.
    """
    group_skips = [s for s in collected.skips if _GROUP_OBJECT.match(s.object)]
    if group_skips or collected.members is None:
        reason = skip_reason(group_skips[0]) if group_skips else "no member list was read"
        raise RunBuildError(
            f"group {collected.network}:{collected.group_id} is not readable ({reason}); "
            "nothing is published for this run"
        )
    return _chunks(collected, collected.members, meta)


def _chunks(collected: Collected, members: IdArray, meta: RunMeta) -> Iterator[SnapshotChunk]:
    network = Network(collected.network)
    common = {
        "network": network,
        "group_id": collected.group_id,
        "run_id": meta.run_id,
        "snapshot_at": meta.snapshot_at,
        "baseline_at": meta.baseline_at,
    }
    count = 0
    for bucket, ids in enumerate(bucket_members(users_only(members), meta.bucket_count)):
        count += 1
        yield MembersChunk(
            **common,
            bucket=bucket,
            bucket_count=meta.bucket_count,
            member_ids=tuple(ids.tolist()),
        )
    skipped: list[SkippedObject] = []
    skipped_posts: set[int] = set()
    facets = ("likes", "comments") + (("reposts",) if network is Network.VK else ())

    def skip_post(post_id: int, reason: str) -> None:
        skipped_posts.add(post_id)
        skipped.extend(
            SkippedObject(facet=facet, post_id=post_id, reason=reason) for facet in facets
        )

    for skip in collected.skips:
        post_id = post_id_of(skip)
        if post_id is not None and post_id not in skipped_posts:
            skip_post(post_id, skip_reason(skip))
    for post in sorted(collected.posts, key=lambda p: p.post.id):
        if post.post.id in skipped_posts:
            continue
        posted_at = _seconds(post.post.date)
        if not EARLIEST <= posted_at < LATEST:
            # A date outside the contract (0 when OK leaves it out) would fail the
            # whole run, every run, while the post is in the window: skip the post.
            reason = f"post date {posted_at.isoformat()} is outside the contract's range"
            skip_post(post.post.id, reason)
            continue
        on_post = {
            **common,
            "post_id": post.post.id,
            "posted_at": posted_at,
            "baseline_post_id": meta.baseline_post_id,
        }
        count += 2
        yield PostLikesChunk(**on_post, user_ids=tuple(users_only(post.likers).tolist()))
        yield PostCommentsChunk(
            **on_post,
            comments=tuple(
                Comment(comment_id=str(c.id), author_id=c.author_id)
                for c in post.comments
                if c.author_id >= 1
            ),
        )
        if post.reposters is not None:
            count += 1
            reposters = users_only(post.reposters)
            yield PostRepostsChunk(**on_post, user_ids=tuple(reposters.tolist()))
    post_ids = sorted({p.post.id for p in collected.posts} | skipped_posts)
    yield RunManifest(
        **common,
        bucket_count=meta.bucket_count,
        post_ids=tuple(post_ids),
        chunk_count=count,
        complete=True,
        skipped=tuple(sorted(skipped, key=lambda s: (s.post_id or 0, s.facet))),
    )


def check_size(key: bytes, value: bytes, limit: int, *, topic: str = "") -> None:
    """Refuse a message the broker would refuse, with a reason an operator can act on."""
    size = len(key) + len(value) + RECORD_OVERHEAD_BYTES
    if size > limit:
        what = key.decode(errors="replace")
        hint = (
            "raise the group's bucket_count (and re-baseline)"
            if ":members:" in what
            else "shorten the group's post window or raise the topic's max.message.bytes"
        )
        raise MessageTooLargeError(
            f"snapshot {what} is {len(value)} bytes encoded, over the {limit}-byte limit "
            f"of {topic or 'the snapshots topic'}: {hint}; the run publishes nothing"
        )
