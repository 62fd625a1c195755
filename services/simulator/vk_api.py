"""VK API methods answered from the world, with VK's paging and error shapes.

Pure functions of ``(world, params)``; token checks, rate limits and injected
faults live in ``server``. Params arrive as strings (form or query) or, inside
``execute``, as JSON values; both are accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from services.simulator.world import SimComment, SimGroup, SimPost, World, WorldError

MAX_MEMBERS = 1000
MAX_WALL = 100
MAX_LIKES = 1000
MAX_COMMENTS = 100
MAX_THREAD_ITEMS = 10
MAX_REPOSTS = 1000


class VkApiError(Exception):
    """A VK error: ``{"error": {"error_code": code, "error_msg": message, ...}}``."""

    def __init__(self, code: int, message: str, **extra: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.extra = extra


MESSAGES = {
    1: "Unknown error occurred",
    5: "User authorization failed: invalid access_token (4).",
    6: "Too many requests per second",
    8: "Invalid request: v (version) is required",
    9: "Flood control",
    10: "Internal server error",
    12: "Unable to compile code",
    13: "Runtime error occurred during code invocation: Too many API calls",
    14: "Captcha needed",
    15: "Access denied",
    18: "User was deleted or banned",
    29: "Rate limit reached",
    30: "This profile is private",
    100: "One of the parameters specified was missing or invalid",
    203: "Access to group denied: access to the group is restricted.",
    212: "Access to post comments denied",
    260: "Access to the groups list is denied due to the user's privacy settings",
}


def error(code: int, detail: str = "", **extra: Any) -> VkApiError:
    message = MESSAGES.get(code, "Unknown error occurred")
    return VkApiError(code, f"{message}: {detail}" if detail else message, **extra)


def _int(params: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = params.get(name)
    if value is None or value == "":
        if default is None:
            raise error(100, f"{name} is undefined")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise error(100, f"{name} not integer") from None


def _page(params: Mapping[str, Any], default: int, maximum: int) -> tuple[int, int]:
    offset = max(0, _int(params, "offset", 0))
    count = min(max(0, _int(params, "count", default)), maximum)
    return offset, count


def _group(world: World, params: Mapping[str, Any], name: str) -> SimGroup:
    raw = _int(params, name)
    try:
        return world.group("vk", abs(raw))
    except WorldError:
        raise error(100, f"{name} is invalid") from None


def _post(world: World, group: SimGroup, post_id: int) -> SimPost:
    post = group.posts.get(post_id)
    if post is None or post.deleted:
        raise error(15, "post was deleted or does not exist")
    return post


def groups_get_members(world: World, params: Mapping[str, Any]) -> dict[str, Any]:
    group = _group(world, params, "group_id")
    offset, count = _page(params, MAX_MEMBERS, MAX_MEMBERS)
    members = group.sorted_members()
    if params.get("sort", "id_asc") == "id_desc":
        members = members[::-1]
    return {"count": len(members), "items": members[offset : offset + count].tolist()}


def _post_item(group: SimGroup, post: SimPost) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": post.id,
        "owner_id": -group.id,
        "from_id": -group.id,
        "date": post.date,
        "post_type": "post",
        "text": "",
        "comments": {"count": len(post.live_comments())},
        "likes": {"count": len(post.likers)},
        "reposts": {"count": len(post.reposters)},
    }
    if post.pinned:
        item["is_pinned"] = 1
    return item


def wall_get(world: World, params: Mapping[str, Any]) -> dict[str, Any]:
    group = _group(world, params, "owner_id")
    offset, count = _page(params, 20, MAX_WALL)
    posts = group.live_posts()
    return {
        "count": len(posts),
        "items": [_post_item(group, post) for post in posts[offset : offset + count]],
    }


def likes_get_list(world: World, params: Mapping[str, Any]) -> dict[str, Any]:
    if params.get("type") != "post":
        raise error(100, "type is invalid (only post is simulated)")
    group = _group(world, params, "owner_id")
    post = _post(world, group, _int(params, "item_id"))
    offset, count = _page(params, 100, MAX_LIKES)
    source = post.reposters if params.get("filter", "likes") == "copies" else post.likers
    newest_first = list(reversed(source))
    return {"count": len(newest_first), "items": newest_first[offset : offset + count]}


def _comment_item(
    group: SimGroup, post: SimPost, comment: SimComment, thread_items: int | None
) -> dict[str, Any]:
    item: dict[str, Any] = {"id": comment.id, "post_id": post.id, "owner_id": -group.id}
    if comment.deleted:
        item["deleted"] = True
    else:
        item.update(from_id=comment.author_id, date=comment.date, text="")
    if comment.reply_to is None:
        item["parents_stack"] = []
    else:
        item.update(parents_stack=[comment.reply_to], reply_to_comment=comment.reply_to)
    if thread_items is not None:
        replies = post.replies(comment.id)
        item["thread"] = {
            "count": len(replies),
            "items": [_comment_item(group, post, r, None) for r in replies[:thread_items]],
            "can_post": True,
            "show_reply_button": True,
            "groups_can_post": True,
        }
    return item


def wall_get_comments(world: World, params: Mapping[str, Any]) -> dict[str, Any]:
    group = _group(world, params, "owner_id")
    post = _post(world, group, _int(params, "post_id"))
    offset, count = _page(params, 10, MAX_COMMENTS)
    thread_items = min(max(0, _int(params, "thread_items_count", 0)), MAX_THREAD_ITEMS)
    root_id = params.get("comment_id")
    if root_id not in (None, ""):
        level = post.replies(_int(params, "comment_id"))
        nested: int | None = None
    else:
        level = post.roots()
        nested = thread_items
    if params.get("sort", "asc") == "desc":
        level = level[::-1]
    return {
        "count": len(post.live_comments()),
        "current_level_count": len(level),
        "can_post": True,
        "show_reply_button": True,
        "groups_can_post": True,
        "items": [_comment_item(group, post, c, nested) for c in level[offset : offset + count]],
    }


def wall_get_reposts(world: World, params: Mapping[str, Any]) -> dict[str, Any]:
    group = _group(world, params, "owner_id")
    post = _post(world, group, _int(params, "post_id"))
    offset, count = _page(params, 20, MAX_REPOSTS)
    reposts = list(reversed(post.reposters.items()))[offset : offset + count]
    return {
        "items": [
            {
                "id": index + 1,
                "owner_id": user,
                "from_id": user,
                "date": when,
                "post_type": "post",
                "copy_history": [{"id": post.id, "owner_id": -group.id, "from_id": -group.id}],
            }
            for index, (user, when) in enumerate(reposts, start=offset)
        ],
        "profiles": [],
        "groups": [],
    }


METHODS: dict[str, Callable[[World, Mapping[str, Any]], Any]] = {
    "groups.getMembers": groups_get_members,
    "wall.get": wall_get,
    "likes.getList": likes_get_list,
    "wall.getComments": wall_get_comments,
    "wall.getReposts": wall_get_reposts,
}


def call(world: World, method: str, params: Mapping[str, Any]) -> Any:
    """The ``response`` of ``method``; raises ``VkApiError`` as VK would."""
    handler = METHODS.get(method)
    if handler is None:
        raise VkApiError(3, "Unknown method passed")
    return handler(world, params)
