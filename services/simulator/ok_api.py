"""OK API methods answered from the world, with OK's anchors, signature and errors.

Anchors are opaque to clients; here they encode the last item returned, so a
page boundary does not move when someone joins or likes meanwhile (the real
anchors behave the same way for the client: it must not build them itself).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.simulator.world import SimGroup, SimPost, World, WorldError

MAX_MEMBERS = 1000
MAX_TOPICS = 100
MAX_LIKES = 100
MAX_COMMENTS = 100
MOSCOW = ZoneInfo("Europe/Moscow")


class OkApiError(Exception):
    """An OK error: ``{"error_code": code, "error_msg": message, "error_data": null}``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


NAMES = {
    1: "UNKNOWN",
    2: "SERVICE",
    3: "METHOD",
    8: "FLOOD_BLOCKED",
    10: "PERMISSION_DENIED",
    100: "PARAM",
    101: "PARAM_API_KEY",
    102: "PARAM_SESSION_EXPIRED",
    104: "PARAM_SIGNATURE",
    300: "NOT_FOUND",
}


def error(code: int, detail: str) -> OkApiError:
    return OkApiError(code, f"{NAMES.get(code, 'UNKNOWN')} : {detail}")


def expected_signature(params: Mapping[str, str], access_token: str, app_secret: str) -> str:
    """What ``sig`` must be, computed as OK documents it (independently of the client)."""
    secret = hashlib.md5((access_token + app_secret).encode()).hexdigest().lower()  # noqa: S324
    pairs = sorted(
        (k, v) for k, v in params.items() if k not in {"sig", "access_token", "session_key"}
    )
    text = "".join(f"{k}={v}" for k, v in pairs) + secret
    return hashlib.md5(text.encode()).hexdigest().lower()  # noqa: S324


def _anchor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _unanchor(anchor: str | None) -> str | None:
    if not anchor:
        return None
    try:
        return base64.urlsafe_b64decode(anchor + "=" * (-len(anchor) % 4)).decode()
    except ValueError:
        raise error(100, "anchor is invalid") from None


def _int(params: Mapping[str, str], name: str) -> int:
    try:
        return int(params[name])
    except KeyError:
        raise error(100, f"Missing required parameter {name}") from None
    except ValueError:
        raise error(100, f"Invalid parameter {name}") from None


def _count(params: Mapping[str, str], default: int, maximum: int) -> int:
    raw = params.get("count")
    return default if not raw else max(1, min(int(raw), maximum))


def _group(world: World, params: Mapping[str, str], name: str) -> SimGroup:
    try:
        return world.group("ok", _int(params, name))
    except WorldError:
        raise error(300, "Group not found") from None


def _topic(world: World, params: Mapping[str, str]) -> tuple[SimGroup, SimPost]:
    if params.get("discussionType") != "GROUP_TOPIC":
        raise error(100, "Only discussionType=GROUP_TOPIC is simulated")
    topic_id = _int(params, "discussionId")
    for (network, _), group in world.groups.items():
        post = group.posts.get(topic_id)
        if network == "ok" and post is not None:
            if post.deleted:
                raise error(300, "Discussion not found")
            return group, post
    raise error(300, "Discussion not found")


def group_get_members(world: World, params: Mapping[str, str]) -> dict[str, Any]:
    group = _group(world, params, "uid")
    count = _count(params, 100, MAX_MEMBERS)
    after = _unanchor(params.get("anchor"))
    members = group.sorted_members()
    start = 0 if after is None else int(members.searchsorted(int(after), side="right"))
    page = members[start : start + count].tolist()
    has_more = start + count < len(members)
    return {
        "members": [{"userId": str(u), "groupId": str(group.id), "status": "ACTIVE"} for u in page],
        "anchor": _anchor(str(page[-1])) if page else params.get("anchor", ""),
        "has_more": has_more,
        "totalCount": len(members),
    }


COUNTER_TYPES = frozenset(
    {
        "black_list",
        "join_requests",
        "links",
        "maybe",
        "members",
        "moderators",
        "photo_albums",
        "photos",
        "presents",
        "themes",
        "videos",
    }
)


def group_get_counters(world: World, params: Mapping[str, str]) -> dict[str, Any]:
    """``{"counters": {"members": N, "themes": N}}``: how the real OK API tells a group's
    member count (``group.getMembers`` itself carries no total). Counter types the world
    does not model are left out of the answer, as OK leaves out counters it has not got.
    """
    group = _group(world, params, "group_id")
    raw = params.get("counterTypes", "")
    wanted = {name.strip().lower() for name in raw.split(",") if name.strip()}
    if not wanted:
        raise error(100, "Missing required parameter counterTypes")
    if not wanted <= COUNTER_TYPES:
        raise error(100, f"Invalid parameter counterTypes value  : [{raw}]")
    known = {"members": len(group.sorted_members()), "themes": len(group.live_posts())}
    return {"counters": {name: known[name] for name in sorted(wanted) if name in known}}


def mediatopic_get_topics(world: World, params: Mapping[str, str]) -> dict[str, Any]:
    group = _group(world, params, "gid")
    count = _count(params, 20, MAX_TOPICS)
    after = _unanchor(params.get("anchor"))
    posts = sorted(group.live_posts(), key=lambda p: (p.date, p.id), reverse=True)
    if after is not None:
        date, post_id = (int(x) for x in after.split(":"))
        posts = [p for p in posts if (p.date, p.id) < (date, post_id)]
    page = posts[:count]
    return {
        "media_topics": [
            {
                "id": str(p.id),
                "created_ms": p.date * 1000,
                "author_ref": f"group:{group.id}",
                "owner_ref": f"group:{group.id}",
                "like_summary": {"count": len(p.likers)},
                "discussion_summary": {"comments_count": len(p.live_comments())},
            }
            for p in page
        ],
        "anchor": _anchor(f"{page[-1].date}:{page[-1].id}") if page else "",
        "has_more": len(posts) > count,
    }


def discussions_get_discussion_likes(world: World, params: Mapping[str, str]) -> dict[str, Any]:
    _, post = _topic(world, params)
    count = _count(params, 20, MAX_LIKES)
    after = _unanchor(params.get("anchor"))
    users = sorted(post.likers)
    if after is not None:
        users = [u for u in users if u > int(after)]
    page = users[:count]
    return {
        "users": [{"uid": str(u)} for u in page],
        "anchor": _anchor(str(page[-1])) if page else params.get("anchor", ""),
    }


def discussions_get_comments(world: World, params: Mapping[str, str]) -> dict[str, Any]:
    _, post = _topic(world, params)
    count = _count(params, 20, MAX_COMMENTS)
    after = _unanchor(params.get("anchor"))
    comments = sorted(post.live_comments(), key=lambda c: c.id)
    if after is not None:
        comments = [c for c in comments if c.id > int(after)]
    page = comments[:count]
    out = []
    for c in page:
        item: dict[str, Any] = {
            "id": str(c.id),
            "author_id": str(c.author_id),
            "author_ref": f"user:{c.author_id}",
            "text": "",
            "type": "ACTIVE_MESSAGE",
            "date_ms": c.date * 1000,
            "date": datetime.fromtimestamp(c.date, UTC)
            .astimezone(MOSCOW)
            .strftime("%Y-%m-%d %H:%M:%S"),
        }
        if c.reply_to is not None:
            item["reply_to_comment_id"] = str(c.reply_to)
        out.append(item)
    return {
        "comments": out,
        "anchor": _anchor(str(page[-1].id)) if page else params.get("anchor", ""),
        "has_more": len(comments) > count,
        "discussionId": params["discussionId"],
        "discussionType": "GROUP_TOPIC",
    }


METHODS: dict[str, Callable[[World, Mapping[str, str]], Any]] = {
    "group.getMembers": group_get_members,
    "group.getCounters": group_get_counters,
    "mediatopic.getTopics": mediatopic_get_topics,
    "discussions.getDiscussionLikes": discussions_get_discussion_likes,
    "discussions.getComments": discussions_get_comments,
}


def call(world: World, method: str, params: Mapping[str, str]) -> Any:
    handler = METHODS.get(method)
    if handler is None:
        raise error(3, f"Method {method} does not exist")
    return handler(world, params)
