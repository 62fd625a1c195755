"""Plain, frozen records the API clients hand to the collector.

Everything the collector publishes is built from these: sorted ``int64`` id
arrays (the detector diffs them with numpy) and small frozen records. Nothing
here knows about HTTP, VK or OK.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

IdArray = npt.NDArray[np.int64]


def sorted_ids(ids: Iterable[int]) -> IdArray:
    """Unique ids as a sorted, read-only ``int64`` array.

    Read-only because the array travels through snapshots and diffs: a caller
    that mutated it in place would corrupt someone else's view.
    """
    array = np.unique(np.fromiter(ids, dtype=np.int64))
    array.flags.writeable = False
    return array


@dataclass(frozen=True, slots=True)
class Post:
    """A post (VK) or group topic (OK) inside the collection window."""

    id: int
    date: int
    """Unix seconds (UTC)."""


@dataclass(frozen=True, slots=True)
class Comment:
    """One comment, a thread reply included; ``author_id`` < 0 is a community (VK)."""

    id: int
    author_id: int
    date: int


@dataclass(frozen=True, slots=True)
class Skip:
    """An object the API refused to show (deleted, private, banned): recorded, not fatal.

    The collector publishes what it read and reports these, so a deleted post is
    never mistaken for "everyone unliked it".
    """

    object: str
    """What was skipped, e.g. ``vk:group:42`` or ``vk:post:-42_7``."""
    code: int
    """The API's error code; ``0`` when the client itself gave up (inconsistent read)."""
    message: str
    method: str = ""


@dataclass(frozen=True, slots=True)
class Window:
    """Which posts a collection looks at: the last ``last_posts``, those of the last
    ``days``, or both (the intersection)."""

    last_posts: int | None = 100
    days: float | None = None

    def __post_init__(self) -> None:
        if self.last_posts is None and self.days is None:
            raise ValueError("a window needs last_posts, days or both")
        if self.last_posts is not None and self.last_posts < 1:
            raise ValueError("last_posts must be at least 1")
        if self.days is not None and self.days <= 0:
            raise ValueError("days must be positive")


@dataclass(frozen=True, slots=True)
class GroupMembers:
    """The complete member list of a group, read consistently."""

    network: str
    group_id: int
    members: IdArray = field(compare=False)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, GroupMembers)
            and (self.network, self.group_id) == (other.network, other.group_id)
            and np.array_equal(self.members, other.members)
        )

    def __hash__(self) -> int:
        return hash((self.network, self.group_id, len(self.members)))


@dataclass(frozen=True, slots=True)
class PostFacets:
    """Everything members did to one post: likers, reposters, comments.

    ``reposters`` is ``None`` on a network without reposts (OK), which is not the
    same as "nobody reposted".
    """

    network: str
    group_id: int
    post: Post
    likers: IdArray = field(compare=False)
    reposters: IdArray | None = field(compare=False)
    comments: tuple[Comment, ...]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PostFacets):
            return False
        same_reposters = (self.reposters is None and other.reposters is None) or (
            self.reposters is not None
            and other.reposters is not None
            and np.array_equal(self.reposters, other.reposters)
        )
        return (
            (self.network, self.group_id, self.post, self.comments)
            == (other.network, other.group_id, other.post, other.comments)
            and np.array_equal(self.likers, other.likers)
            and same_reposters
        )

    def __hash__(self) -> int:
        return hash((self.network, self.group_id, self.post))


CollectedItem = GroupMembers | PostFacets | Skip
"""What ``collect_group`` yields: the members once, then one ``PostFacets`` per post,
and a ``Skip`` for anything the API refused."""
