"""OK (Odnoklassniki) API client: group members, recent group topics, their likes
("Class!") and comments. OK has no reposts.

Requests are signed as OK documents it (apiok.ru/dev/methods):
    secret = md5(access_token + application_secret_key), lower-case hex
    sig    = md5("".join(f"{k}={v}" for k, v in sorted(params)) + secret), lower-case hex
where ``params`` are all request parameters except ``sig`` and
``access_token``/``session_key``. Lists are paged with an opaque ``anchor``.

Methods used:
    group.getCounters(group_id, counterTypes=members)
        -> {"counters": {"members": N}}
    group.getMembers(uid, anchor, direction=FORWARD, count)
        -> {"members": [{"userId": ...}], "anchor", "has_more"}
    mediatopic.getTopics(gid, anchor, count, fields)
        -> {"media_topics": [{"id", "created_ms", ...}], "anchor", "has_more"}
    discussions.getDiscussionLikes(discussionId, discussionType=GROUP_TOPIC, anchor, count)
        -> {"users": [{"uid": ...}], "anchor"}
    discussions.getComments(discussionId, discussionType=GROUP_TOPIC, anchor, direction, count)
        -> {"comments": [{"id", "author_id", "date_ms", ...}], "anchor", "has_more"}
Errors come as a top-level ``{"error_code": ..., "error_msg": ...}``.

An anchored list has no count of its own to check a read against, and OK may end
a list early (a short or empty page, ``has_more: false``). The member list is
therefore checked against the group's ``members`` counter, read before and after
it; a list that matches neither is read again and, if it never does, the run is
stopped (``InconsistentReadError``): a half-read group must not look like members
leaving.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

import httpx

from services.collector.api.config import OkClientSettings
from services.collector.api.errors import (
    InconsistentReadError,
    ObjectSkippedError,
    RunAbortedError,
)
from services.collector.api.ratelimit import SlidingWindowLimiter
from services.collector.api.records import (
    CollectedItem,
    Comment,
    GroupMembers,
    IdArray,
    Post,
    PostFacets,
    Skip,
    Window,
    sorted_ids,
)
from services.collector.api.transport import ApiClient, Sleep

TOPIC_TYPE: Final = "GROUP_TOPIC"
UNSIGNED: Final = frozenset({"sig", "access_token", "session_key"})
OK_TZ: Final = ZoneInfo("Europe/Moscow")
"""OK writes legacy ``date`` strings in Moscow time; ``date_ms`` is preferred when present."""
DAY_S: Final = 86_400


def session_secret(access_token: str, application_secret_key: str) -> str:
    """``md5(access_token + application_secret_key)``, lower-case hex."""
    return hashlib.md5(  # noqa: S324 -- md5 is what OK's protocol specifies
        (access_token + application_secret_key).encode()
    ).hexdigest()


def signature(params: Mapping[str, str], secret: str) -> str:
    """The ``sig`` of a request: md5 of the sorted ``key=value`` pairs plus the secret."""
    joined = "".join(f"{key}={params[key]}" for key in sorted(params) if key not in UNSIGNED)
    return hashlib.md5((joined + secret).encode()).hexdigest()  # noqa: S324


def signed_form(
    method: str,
    params: Mapping[str, str | int],
    *,
    application_key: str,
    access_token: str,
    application_secret_key: str,
) -> dict[str, str]:
    """The full form of a request: parameters, ``application_key``, ``format``, ``sig``, token."""
    form = {key: str(value) for key, value in params.items()}
    form.update(method=method, application_key=application_key, format="json")
    form["sig"] = signature(form, session_secret(access_token, application_secret_key))
    form["access_token"] = access_token
    return form


def ok_error(body: Any) -> tuple[int, str] | None:
    """The ``(error_code, error_msg)`` of an OK error body, ``None`` for a success."""
    if isinstance(body, dict) and "error_code" in body:
        return int(body["error_code"]), str(body.get("error_msg", ""))
    return None


class OkClient(ApiClient):
    """Reads OK groups with one application key and one user session."""

    network: Final = "ok"

    def __init__(
        self,
        settings: OkClientSettings,
        *,
        http: httpx.AsyncClient | None = None,
        limiter: SlidingWindowLimiter | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        super().__init__(
            "ok",
            base_url=settings.base_url,
            path=lambda _method: "fb.do",
            rate=settings.requests_per_second,
            rate_margin_s=settings.rate_margin_s,
            timeout_s=settings.timeout_s,
            retry=settings.retry,
            parse_error=ok_error,
            http=http,
            limiter=limiter,
            sleep=sleep,
            clock=clock,
        )

    async def call(self, method: str, params: Mapping[str, str | int], obj: str = "") -> Any:
        """One signed call; returns the decoded body, or raises a skip or an abort."""
        self._counters.calls[method] += 1
        form = signed_form(
            method,
            params,
            application_key=self.settings.application_key,
            access_token=self.settings.access_token.get_secret_value(),
            application_secret_key=self.settings.application_secret_key.get_secret_value(),
        )
        return await self._transport.request(method, form, obj or method)

    async def _anchored(
        self,
        method: str,
        params: Mapping[str, str | int],
        items_field: str,
        page_size: int,
        obj: str,
        *,
        stop: Callable[[list[Any]], bool] | None = None,
    ) -> list[Any]:
        """All items of an anchor-paged list (or until ``stop`` says enough)."""
        items: list[Any] = []
        anchor: str | None = None
        while True:
            query = dict(params, count=page_size)
            if anchor:
                query["anchor"] = anchor
            page = await self.call(method, query, obj)
            if not isinstance(page, dict):
                raise RunAbortedError(f"OK {method}: unexpected response", method=method)
            batch = page.get(items_field) or []
            items.extend(batch)
            anchor = page.get("anchor")
            has_more = page.get("has_more")
            if has_more is None:
                has_more = len(batch) >= page_size
            if not has_more or not batch or not anchor or (stop is not None and stop(items)):
                return items

    async def member_count(self, group_id: int) -> int:
        """The group's member count from ``group.getCounters`` (what OK's own UI shows)."""
        body = await self.call(
            "group.getCounters",
            {"group_id": group_id, "counterTypes": "members"},
            f"ok:group:{group_id}",
        )
        counters = body.get("counters") if isinstance(body, dict) else None
        members = counters.get("members") if isinstance(counters, dict) else None
        try:
            count = int(members)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise RunAbortedError(
                f"OK group.getCounters for group {group_id} gave no members count "
                f"({body!r:.200}); the member list cannot be checked, so nothing is published",
                method="group.getCounters",
            ) from None
        if count < 0:
            raise RunAbortedError(
                f"OK group.getCounters for group {group_id}: members count is {count}",
                method="group.getCounters",
            )
        return count

    async def group_members(self, group_id: int) -> IdArray:
        """Every member id of the group, sorted; read completely or not at all.

        The distinct ids read must equal the ``members`` counter read just before
        or just after the list (someone joining mid-read moves the counter with
        the list). Raises ``ObjectSkippedError`` if OK hides the group, and
        ``InconsistentReadError`` if ``consistency_attempts`` reads all disagree
        with the counter.
        """
        obj = f"ok:group:{group_id}"
        seen: list[str] = []
        attempts = self.settings.consistency_attempts
        for _ in range(attempts):
            before = await self.member_count(group_id)
            members = await self._anchored(
                "group.getMembers",
                {"uid": group_id, "direction": "FORWARD"},
                "members",
                self.settings.members_page_size,
                obj,
            )
            ids = sorted_ids(int(m["userId"]) for m in members)
            if len(ids) == before or not self.settings.strict_member_count:
                return ids
            after = await self.member_count(group_id)
            if len(ids) == after:
                return ids
            seen.append(f"{len(ids)} of {before}..{after}")
        raise InconsistentReadError(
            f"OK group {group_id}: the member list did not match the group's member count "
            f"in any of {attempts} reads (read {', '.join(seen)}); a short or changing list "
            "is not published",
            method="group.getMembers",
        )

    async def recent_posts(
        self, group_id: int, window: Window, now: float | None = None
    ) -> list[Post]:
        """The group's topics in ``window``, newest first."""
        cutoff = None if window.days is None else (now or self._clock()) - window.days * DAY_S

        def enough(topics: list[Any]) -> bool:
            if window.last_posts is not None and len(topics) >= window.last_posts:
                return True
            return cutoff is not None and any(_topic_date(t) < cutoff for t in topics)

        topics = await self._anchored(
            "mediatopic.getTopics",
            {"gid": group_id, "fields": "media_topic.id,media_topic.created_ms"},
            "media_topics",
            self.settings.topics_page_size,
            f"ok:group:{group_id}",
            stop=enough,
        )
        self.newest_post_id = max((int(t["id"]) for t in topics), default=0)
        posts = sorted(
            {int(t["id"]): Post(id=int(t["id"]), date=_topic_date(t)) for t in topics}.values(),
            key=lambda post: (post.date, post.id),
            reverse=True,
        )
        if cutoff is not None:
            posts = [post for post in posts if post.date >= cutoff]
        if window.last_posts is not None:
            posts = posts[: window.last_posts]
        return posts

    async def post_likers(self, group_id: int, post_id: int) -> IdArray:
        """Who put a "Class!" on the topic, sorted."""
        users = await self._anchored(
            "discussions.getDiscussionLikes",
            {"discussionId": post_id, "discussionType": TOPIC_TYPE},
            "users",
            self.settings.likes_page_size,
            _post_obj(group_id, post_id),
        )
        return sorted_ids(int(user["uid"]) for user in users)

    async def post_comments(self, group_id: int, post_id: int) -> list[Comment]:
        """Every comment of the topic (OK's list is flat: replies included), by id."""
        raw = await self._anchored(
            "discussions.getComments",
            {"discussionId": post_id, "discussionType": TOPIC_TYPE, "direction": "FORWARD"},
            "comments",
            self.settings.comments_page_size,
            _post_obj(group_id, post_id),
        )
        found = {
            comment_id(c["id"]): Comment(
                id=comment_id(c["id"]), author_id=int(c["author_id"]), date=_comment_date(c)
            )
            for c in raw
            if c.get("author_id") is not None
        }
        return sorted(found.values(), key=lambda c: c.id)

    async def posts_facets(self, group_id: int, posts: Sequence[Post]) -> list[PostFacets | Skip]:
        """Likers and comments of each topic; a topic OK refuses is one ``Skip``."""
        out: list[PostFacets | Skip] = []
        for post in posts:
            try:
                likers = await self.post_likers(group_id, post.id)
                comments = await self.post_comments(group_id, post.id)
            except ObjectSkippedError as skipped:
                out.append(skipped.skip)
                continue
            out.append(
                PostFacets(
                    network="ok",
                    group_id=group_id,
                    post=post,
                    likers=likers,
                    reposters=None,
                    comments=tuple(comments),
                )
            )
        return out

    async def collect_group(
        self, group_id: int, window: Window, *, now: float | None = None
    ) -> AsyncIterator[CollectedItem]:
        """Members, then each topic's facets, and any skips; ``RunAbortedError`` propagates."""
        try:
            members = await self.group_members(group_id)
        except ObjectSkippedError as skipped:
            self._skips.append(skipped.skip)
            yield skipped.skip
        else:
            yield GroupMembers(network="ok", group_id=group_id, members=members)
        try:
            posts = await self.recent_posts(group_id, window, now)
        except ObjectSkippedError as skipped:
            self._skips.append(skipped.skip)
            yield skipped.skip
            return
        for post in posts:
            for item in await self.posts_facets(group_id, [post]):
                if isinstance(item, Skip):
                    self._skips.append(item)
                yield item


def comment_id(raw: object) -> int:
    """OK comment ids can be opaque strings: numeric ones are kept, others become a
    stable 63-bit hash, so the same comment always gets the same ``int`` id."""
    text = str(raw)
    if text.isdigit():
        return int(text)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def _post_obj(group_id: int, post_id: int) -> str:
    return f"ok:topic:{group_id}_{post_id}"


def _topic_date(topic: Mapping[str, Any]) -> int:
    return int(topic.get("created_ms", 0)) // 1000


def _comment_date(comment: Mapping[str, Any]) -> int:
    if comment.get("date_ms") is not None:
        return int(comment["date_ms"]) // 1000
    text = comment.get("date")
    if not text:
        return 0
    parsed = datetime.strptime(str(text), "%Y-%m-%d %H:%M:%S").replace(tzinfo=OK_TZ)
    return int(parsed.timestamp())
