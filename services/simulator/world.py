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


@dataclass
class SimGroup:
    network: NetworkName
    id: int
    members: set[int] = field(default_factory=set)
    posts: dict[int, SimPost] = field(default_factory=dict)
    _sorted: npt.NDArray[np.int64] | None = field(default=None, repr=False)

    def sorted_members(self) -> npt.NDArray[np.int64]:
        """Members in id order, cached until the next change (pages of a big group are cheap)."""
        if self._sorted is None:
            self._sorted = np.array(sorted(self.members), dtype=np.int64)
        return self._sorted

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
        group = SimGroup(network=network, id=group_id, members=set(members))
        self.groups[(network, group_id)] = group
        return group

    def add_members(self, network: NetworkName, group_id: int, user_ids: Iterable[int]) -> None:
        group = self.group(network, group_id)
        group.members.update(user_ids)
        group._sorted = None

    def remove_members(self, network: NetworkName, group_id: int, user_ids: Iterable[int]) -> None:
        group = self.group(network, group_id)
        group.members.difference_update(user_ids)
        group._sorted = None

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
