"""The simulated networks' data: plain objects, no HTTP.

Tests and the demo change the world directly (or through the control API) and
then watch the collector notice. Ids are handed out by the world so two posts
never collide; time comes from an injectable clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

NetworkName = Literal["vk", "ok"]


class WorldError(LookupError):
    """An unknown group, post or comment, or an action the network does not have."""


@dataclass
class SimComment:
    id: int
    author_id: int
    date: int
    reply_to: int | None = None
    """The top-level comment this one replies to (VK threads are one level deep)."""
    deleted: bool = False


@dataclass
class SimPost:
    id: int
    date: int
    pinned: bool = False
    deleted: bool = False
    likers: dict[int, int] = field(default_factory=dict)
    """user id -> when (insertion order is like order)."""
    reposters: dict[int, int] = field(default_factory=dict)
    comments: dict[int, SimComment] = field(default_factory=dict)

    def live_comments(self) -> list[SimComment]:
        return [c for c in self.comments.values() if not c.deleted]

    def replies(self, root_id: int) -> list[SimComment]:
        return sorted(
            (c for c in self.comments.values() if c.reply_to == root_id and not c.deleted),
            key=lambda c: c.id,
        )

    def roots(self) -> list[SimComment]:
        """Top-level comments a reader sees: live ones, and deleted ones that still have replies."""
        return sorted(
            (
                c
                for c in self.comments.values()
                if c.reply_to is None and (not c.deleted or self.replies(c.id))
            ),
            key=lambda c: c.id,
        )


IdArray = npt.NDArray[np.int64]


def _id_array(ids: Iterable[int]) -> IdArray:
    """Distinct ids, sorted; numpy arrays and ranges are taken without a Python loop."""
    if isinstance(ids, range):
        raw = np.arange(ids.start, ids.stop, ids.step, dtype=np.int64)
    elif isinstance(ids, np.ndarray):
        raw = ids.astype(np.int64, copy=False)
    else:
        raw = np.fromiter(ids, dtype=np.int64)
    # Sort and drop repeats by hand: numpy 2's np.unique hashes, ~30x slower on 1M ids.
    ordered = np.sort(raw)
    if len(ordered) > 1:
        ordered = ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]
    return ordered


@dataclass(eq=False)
class SimGroup:
    """A group; its members are one sorted ``int64`` array, not a set of Python ints.

    A 1,000,000-member group is 8 MB instead of ~60 MB, a page is a slice, and a
    join or a leave is a binary search plus one copy (about a millisecond at that
    size), so a test can change membership between every page of a collection.
    """

    network: NetworkName
    id: int
    members: IdArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    posts: dict[int, SimPost] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not bool(np.all(np.diff(self.members) > 0)):
            self.members = _id_array(self.members)
        self.members.flags.writeable = False

    def sorted_members(self) -> IdArray:
        """Members in id order (read-only)."""
        return self.members

    def is_member(self, user_id: int) -> bool:
        at = int(np.searchsorted(self.members, user_id))
        return at < len(self.members) and int(self.members[at]) == user_id

    def add_members(self, user_ids: Iterable[int]) -> None:
        new = _id_array(user_ids)
        at = np.searchsorted(self.members, new)
        present = np.zeros(len(new), dtype=bool)
        inside = at < len(self.members)
        present[inside] = self.members[at[inside]] == new[inside]
        merged = np.insert(self.members, at[~present], new[~present])
        merged.flags.writeable = False
        self.members = merged

    def remove_members(self, user_ids: Iterable[int]) -> None:
        gone = _id_array(user_ids)
        at = np.searchsorted(self.members, gone)
        inside = at < len(self.members)
        found = at[inside][self.members[at[inside]] == gone[inside]]
        kept = np.delete(self.members, found)
        kept.flags.writeable = False
        self.members = kept

    def live_posts(self) -> list[SimPost]:
        """Posts newest first, a pinned one on top, as a wall shows them."""
        return sorted(
            (p for p in self.posts.values() if not p.deleted),
            key=lambda p: (p.pinned, p.date, p.id),
            reverse=True,
        )


class World:
    """Every simulated group of both networks."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.groups: dict[tuple[NetworkName, int], SimGroup] = {}
        self.clock = clock
        self._next_post = 1
        self._next_comment = 1

    def now(self) -> int:
        return int(self.clock())

    def group(self, network: NetworkName, group_id: int) -> SimGroup:
        try:
            return self.groups[(network, group_id)]
        except KeyError:
            raise WorldError(f"no {network} group {group_id}") from None

    def post(self, network: NetworkName, group_id: int, post_id: int) -> SimPost:
        try:
            return self.group(network, group_id).posts[post_id]
        except KeyError:
            raise WorldError(f"no post {post_id} in {network} group {group_id}") from None

    def add_group(
        self, network: NetworkName, group_id: int, members: Iterable[int] = ()
    ) -> SimGroup:
        if (network, group_id) in self.groups:
            raise WorldError(f"{network} group {group_id} exists")
        group = SimGroup(network=network, id=group_id, members=_id_array(members))
        self.groups[(network, group_id)] = group
        return group

    def add_members(self, network: NetworkName, group_id: int, user_ids: Iterable[int]) -> None:
        self.group(network, group_id).add_members(user_ids)

    def remove_members(self, network: NetworkName, group_id: int, user_ids: Iterable[int]) -> None:
        self.group(network, group_id).remove_members(user_ids)

    def add_post(
        self,
        network: NetworkName,
        group_id: int,
        *,
        date: int | None = None,
        pinned: bool = False,
        post_id: int | None = None,
    ) -> int:
        group = self.group(network, group_id)
        if post_id is None:
            post_id = self._next_post
        self._next_post = max(self._next_post, post_id) + 1
        if post_id in group.posts:
            raise WorldError(f"post {post_id} exists in {network} group {group_id}")
        group.posts[post_id] = SimPost(
            id=post_id, date=self.now() if date is None else date, pinned=pinned
        )
        return post_id

    def delete_post(self, network: NetworkName, group_id: int, post_id: int) -> None:
        self.post(network, group_id, post_id).deleted = True

    def like(self, network: NetworkName, group_id: int, post_id: int, user_id: int) -> None:
        self.post(network, group_id, post_id).likers.setdefault(user_id, self.now())

    def unlike(self, network: NetworkName, group_id: int, post_id: int, user_id: int) -> None:
        self.post(network, group_id, post_id).likers.pop(user_id, None)

    def repost(self, network: NetworkName, group_id: int, post_id: int, user_id: int) -> None:
        if network != "vk":
            raise WorldError("OK has no reposts")
        self.post(network, group_id, post_id).reposters.setdefault(user_id, self.now())

    def delete_repost(
        self, network: NetworkName, group_id: int, post_id: int, user_id: int
    ) -> None:
        if network != "vk":
            raise WorldError("OK has no reposts")
        self.post(network, group_id, post_id).reposters.pop(user_id, None)

    def comment(
        self,
        network: NetworkName,
        group_id: int,
        post_id: int,
        author_id: int,
        *,
        reply_to: int | None = None,
        date: int | None = None,
    ) -> int:
        post = self.post(network, group_id, post_id)
        if reply_to is not None:
            parent = post.comments.get(reply_to)
            if parent is None:
                raise WorldError(f"no comment {reply_to} on post {post_id}")
            reply_to = parent.reply_to if parent.reply_to is not None else parent.id
        comment_id = self._next_comment
        self._next_comment += 1
        post.comments[comment_id] = SimComment(
            id=comment_id,
            author_id=author_id,
            date=self.now() if date is None else date,
            reply_to=reply_to,
        )
        return comment_id

    def delete_comment(
        self, network: NetworkName, group_id: int, post_id: int, comment_id: int
    ) -> None:
        post = self.post(network, group_id, post_id)
        if comment_id not in post.comments:
            raise WorldError(f"no comment {comment_id} on post {post_id}")
        post.comments[comment_id].deleted = True
