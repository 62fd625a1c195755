"""VK API client: a group's members and its recent posts' likes, reposts and comments.

How it stays cheap: every list is read in pages, and pages are sent 25 at a time
through ``execute`` (one HTTP request, one unit of the rate limit). The first
page of every list tells how many pages remain; those are planned at once and
batched too. A group of 25,000 members is one or two requests; the likes,
reposts and comments of 30 posts are four.

How it stays correct: a list whose ``count`` changed between its pages was
being edited while it was read; it is read again, and if it will not hold still
the object is skipped (posts) or the run is stopped (members), because a
half-read list would look like people leaving or unliking.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Hashable, Mapping, Sequence
from typing import Any, Final

import httpx
import numpy as np

from services.collector.api.config import VkClientSettings
from services.collector.api.errors import (
    Action,
    InconsistentReadError,
    ObjectSkippedError,
    RunAbortedError,
    abort_message,
    classify,
)
from services.collector.api.paging import (
    MAX_EXECUTE_CALLS,
    Call,
    chunked,
    execute_code,
    page_offsets,
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

MEMBERS_PAGE: Final = 1000
WALL_PAGE: Final = 100
LIKES_PAGE: Final = 1000
COMMENTS_PAGE: Final = 100
REPOSTS_PAGE: Final = 1000
DAY_S: Final = 86_400


def vk_error(body: Any) -> tuple[int, str] | None:
    """The ``(error_code, error_msg)`` of a VK error body, ``None`` for a success."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return int(error.get("error_code", 0)), str(error.get("error_msg", ""))
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class PagedList:
    """An offset-paged list to read completely (or up to ``limit`` items)."""

    key: Hashable
    obj: str
    method: str
    params: Mapping[str, str | int]
    page_size: int
    count_field: str = "count"
    expected_total: int | None = None
    """Plan this many items at once instead of asking for the first page alone."""
    limit: int | None = None
    """Read no more than this many items even if the list is longer."""

    def offsets(self, total: int) -> list[int]:
        if self.limit is not None:
            total = min(total, self.limit)
        return page_offsets(total, self.page_size) or [0]


class VkClient(ApiClient):
    """Reads VK groups. One client per access token; share its limiter if you build two."""

    network: Final = "vk"

    def __init__(
        self,
        settings: VkClientSettings,
        *,
        http: httpx.AsyncClient | None = None,
        limiter: SlidingWindowLimiter | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        super().__init__(
            "vk",
            base_url=settings.base_url,
            path=lambda method: method,
            rate=settings.rate,
            rate_margin_s=settings.rate_margin_s,
            timeout_s=settings.timeout_s,
            retry=settings.retry,
            parse_error=vk_error,
            http=http,
            limiter=limiter,
            sleep=sleep,
            clock=clock,
        )

    # -- raw calls -----------------------------------------------------------------

    def _form(self, params: Mapping[str, str | int]) -> dict[str, str]:
        form = {key: str(value) for key, value in params.items()}
        form["access_token"] = self.settings.access_token.get_secret_value()
        form["v"] = self.settings.api_version
        return form

    async def call(self, method: str, params: Mapping[str, str | int], obj: str = "") -> Any:
        """One API method alone; returns its ``response``, or raises a skip or an abort."""
        self._counters.calls[method] += 1
        body = await self._transport.request(method, self._form(params), obj or method)
        if not isinstance(body, dict) or "response" not in body:
            raise RunAbortedError(f"VK {method}: a body without 'response'", method=method)
        return body["response"]

    async def _call_or_skip(self, call: Call, obj: str) -> Any:
        try:
            return await self.call(call.method, call.params, obj)
        except ObjectSkippedError as skipped:
            return skipped.skip

    async def execute(self, calls: Sequence[tuple[Call, str]]) -> list[Any]:
        """Up to 25 calls in one request; each result is the call's ``response`` or a ``Skip``.

        A call that failed inside ``execute`` comes back as ``false`` with an entry
        in ``execute_errors``; the n-th ``false`` is paired with the n-th error.
        Skip-class errors become ``Skip`` records, stop-class errors stop the run,
        and transient ones are retried alone, with the full retry policy.
        """
        if len(calls) > MAX_EXECUTE_CALLS:
            raise ValueError(f"execute takes at most {MAX_EXECUTE_CALLS} calls")
        code = execute_code([call for call, _ in calls])
        for call, _ in calls:
            self._counters.calls[call.method] += 1
        try:
            body = await self._transport.request("execute", self._form({"code": code}), "execute")
        except ObjectSkippedError:
            return [await self._call_or_skip(call, obj) for call, obj in calls]
        results = body.get("response") if isinstance(body, dict) else None
        if not isinstance(results, list) or len(results) != len(calls):
            raise RunAbortedError(
                f"VK execute returned {type(results).__name__} for {len(calls)} calls",
                method="execute",
            )
        errors = iter(
            [
                error
                for error in body.get("execute_errors") or []
                if isinstance(error, dict) and error.get("method") != "execute"
            ]
        )
        out: list[Any] = []
        again: list[int] = []
        problems: list[tuple[str, str]] = []
        for index, (result, (call, obj)) in enumerate(zip(results, calls, strict=True)):
            if result is not False:
                out.append(result)
                continue
            error = next(errors, None)
            out.append(None)
            if error is None:
                again.append(index)
                problems.append((f"{call.method} for {obj}", "false without an error entry"))
                continue
            code_ = int(error.get("error_code", 0))
            message = str(error.get("error_msg", ""))
            self._counters.errors[code_] += 1
            action = classify("vk", code_)
            if action is Action.SKIP:
                out[index] = Skip(object=obj, code=code_, message=message, method=call.method)
            elif action is Action.ABORT:
                raise RunAbortedError(
                    abort_message("vk", code_, message, call.method), code=code_, method=call.method
                )
            else:
                again.append(index)
                problems.append((f"{call.method} for {obj}", f"error {code_} ({message})"))
        if again:
            await self._transport.pause("execute", problems)
        for index in again:
            out[index] = await self._call_or_skip(*calls[index])
        return out

    async def run_calls(self, calls: Sequence[tuple[Call, str]]) -> list[Any]:
        """Many calls, batched through ``execute``; results (or ``Skip``) in order."""
        batch = MAX_EXECUTE_CALLS if self.settings.use_execute else 1
        out: list[Any] = []
        for chunk in chunked(calls, batch):
            if len(chunk) == 1:
                out.append(await self._call_or_skip(*chunk[0]))
            else:
                out.extend(await self.execute(chunk))
        return out

    async def read_paged(self, lists: Sequence[PagedList]) -> dict[Hashable, list[Any] | Skip]:
        """Read offset-paged lists together: each becomes its pages in order, or a ``Skip``.

        Each round asks for every list's first page (or all the pages it expects),
        then for every page the counts revealed; all of a round's calls share the
        same ``execute`` batches. A list whose pages disagree on the count changed
        while it was read and is read again; after ``consistency_attempts`` it is
        a ``Skip`` with code 0.
        """
        done: dict[Hashable, list[Any] | Skip] = {}
        pending = list(lists)
        for _ in range(self.settings.consistency_attempts):
            if not pending:
                break
            pages, skipped = await self._read_round(pending)
            again: list[PagedList] = []
            for pl in pending:
                if pl.key in skipped:
                    done[pl.key] = skipped[pl.key]
                    continue
                got = pages[pl.key]
                counts = {_count(page, pl.count_field) for page in got.values()}
                if len(counts) == 1:
                    done[pl.key] = [got[offset] for offset in sorted(got)]
                else:
                    again.append(dataclasses.replace(pl, expected_total=max(counts)))
            pending = again
        for pl in pending:
            done[pl.key] = Skip(
                object=pl.obj,
                code=0,
                message="the list kept changing while it was read",
                method=pl.method,
            )
        return done

    async def _read_round(
        self, lists: Sequence[PagedList]
    ) -> tuple[dict[Hashable, dict[int, dict[str, Any]]], dict[Hashable, Skip]]:
        """One read of every list: pages by offset, and the lists VK refused."""
        pages: dict[Hashable, dict[int, dict[str, Any]]] = {pl.key: {} for pl in lists}
        skipped: dict[Hashable, Skip] = {}
        wanted = {
            pl.key: pl.offsets(pl.expected_total) if pl.expected_total is not None else [0]
            for pl in lists
        }
        while True:
            todo = [
                (pl, offset)
                for pl in lists
                if pl.key not in skipped
                for offset in wanted[pl.key]
                if offset not in pages[pl.key]
            ]
            if not todo:
                return pages, skipped
            calls = [
                (Call(pl.method, {**pl.params, "offset": off, "count": pl.page_size}), pl.obj)
                for pl, off in todo
            ]
            for (pl, offset), result in zip(todo, await self.run_calls(calls), strict=True):
                if isinstance(result, Skip):
                    skipped.setdefault(pl.key, result)
                elif isinstance(result, dict):
                    pages[pl.key][offset] = result
                else:
                    raise RunAbortedError(f"VK {pl.method}: unexpected response", method=pl.method)
            for pl in lists:
                if pl.key not in skipped and pages[pl.key]:
                    total = max(_count(page, pl.count_field) for page in pages[pl.key].values())
                    wanted[pl.key] = pl.offsets(total)

    # -- what the collector needs ------------------------------------------------------

    async def group_members(self, group_id: int, expected: int | None = None) -> IdArray:
        """Every member id of the group, sorted; read consistently or not at all.

        ``expected`` (e.g. last run's count) lets all pages go in the first
        ``execute`` instead of learning the count from a first page.
        Raises ``ObjectSkippedError`` if VK hides the members, ``InconsistentReadError`` if the
        list will not hold still.
        """
        obj = f"vk:group:{group_id}"
        for _ in range(self.settings.consistency_attempts):
            spec = PagedList(
                key="members",
                obj=obj,
                method="groups.getMembers",
                params={"group_id": group_id, "sort": "id_asc"},
                page_size=MEMBERS_PAGE,
                expected_total=expected,
            )
            result = (await self.read_paged([spec]))["members"]
            if isinstance(result, Skip):
                if result.code == 0:
                    break
                raise ObjectSkippedError(result)
            count = _count(result[0], "count")
            ids = np.fromiter(
                (int(member) for page in result for member in page.get("items", [])),
                dtype=np.int64,
            )
            increasing = bool(np.all(np.diff(ids) > 0))
            if increasing and (len(ids) == count or not self.settings.strict_member_count):
                ids.flags.writeable = False
                return ids
            expected = count
        raise InconsistentReadError(
            f"VK group {group_id}: the member list changed during every one of "
            f"{self.settings.consistency_attempts} reads; nothing is published for it",
            method="groups.getMembers",
        )

    async def recent_posts(
        self, group_id: int, window: Window, now: float | None = None
    ) -> list[Post]:
        """The posts in ``window``, newest first. A pinned post is judged by its date."""
        obj = f"vk:group:{group_id}"
        owner = -group_id
        cutoff = None if window.days is None else (now or self._clock()) - window.days * DAY_S
        seen: dict[int, dict[str, Any]] = {}
        if cutoff is None:
            assert window.last_posts is not None
            # One more than asked: an old pinned post may take a slot at the top.
            need = window.last_posts + 1
            spec = PagedList(
                key="wall",
                obj=obj,
                method="wall.get",
                params={"owner_id": owner},
                page_size=WALL_PAGE,
                expected_total=need,
                limit=need,
            )
            result = (await self.read_paged([spec]))["wall"]
            if isinstance(result, Skip):
                raise ObjectSkippedError(result)
            for page in result:
                seen.update({int(item["id"]): item for item in page.get("items", [])})
        else:
            offset = 0
            while True:
                page = await self.call(
                    "wall.get", {"owner_id": owner, "offset": offset, "count": WALL_PAGE}, obj
                )
                items = page.get("items", [])
                seen.update({int(item["id"]): item for item in items})
                unpinned = [item for item in seen.values() if not item.get("is_pinned")]
                if (
                    len(items) < WALL_PAGE
                    or offset + WALL_PAGE >= _count(page, "count")
                    or any(_older(item, cutoff) for item in items)
                    or (window.last_posts is not None and len(unpinned) > window.last_posts)
                ):
                    break
                offset += WALL_PAGE
        self.newest_post_id = max(seen, default=0)
        posts = sorted(
            (Post(id=post_id, date=int(item["date"])) for post_id, item in seen.items()),
            key=lambda post: (post.date, post.id),
            reverse=True,
        )
        if cutoff is not None:
            posts = [post for post in posts if post.date >= cutoff]
        if window.last_posts is not None:
            posts = posts[: window.last_posts]
        return posts

    def _likes_list(self, group_id: int, post_id: int, kind: str) -> PagedList:
        return PagedList(
            key=(post_id, kind),
            obj=_post_obj(group_id, post_id),
            method="likes.getList",
            params={"type": "post", "owner_id": -group_id, "item_id": post_id, "filter": kind},
            page_size=LIKES_PAGE,
        )

    def _comments_list(self, group_id: int, post_id: int) -> PagedList:
        return PagedList(
            key=(post_id, "comments"),
            obj=_post_obj(group_id, post_id),
            method="wall.getComments",
            params={
                "owner_id": -group_id,
                "post_id": post_id,
                "sort": "asc",
                "need_likes": 0,
                "thread_items_count": self.settings.thread_items_count,
            },
            page_size=COMMENTS_PAGE,
            count_field="current_level_count",
        )

    async def _ids(self, spec: PagedList) -> IdArray:
        result = (await self.read_paged([spec]))[spec.key]
        if isinstance(result, Skip):
            raise ObjectSkippedError(result)
        return sorted_ids(int(i) for page in result for i in page.get("items", []))

    async def post_likers(self, group_id: int, post_id: int) -> IdArray:
        """Who liked the post, sorted."""
        return await self._ids(self._likes_list(group_id, post_id, "likes"))

    async def post_reposters(self, group_id: int, post_id: int) -> IdArray:
        """Who shared the post, sorted (``likes.getList`` with ``filter=copies``).

        This sees every share, private ones included, with a count to check the
        read against; ``wall.getReposts`` (``wall_reposters``) only sees public
        reposts to walls.
        """
        return await self._ids(self._likes_list(group_id, post_id, "copies"))

    async def wall_reposters(self, group_id: int, post_id: int) -> IdArray:
        """Owners of public reposts of the post, from ``wall.getReposts``."""
        obj = _post_obj(group_id, post_id)
        owners: list[int] = []
        offset = 0
        while True:
            page = await self.call(
                "wall.getReposts",
                {
                    "owner_id": -group_id,
                    "post_id": post_id,
                    "offset": offset,
                    "count": REPOSTS_PAGE,
                },
                obj,
            )
            items = page.get("items", [])
            owners.extend(int(item.get("owner_id", item.get("from_id", 0))) for item in items)
            if len(items) < REPOSTS_PAGE:
                return sorted_ids(owners)
            offset += REPOSTS_PAGE

    async def post_comments(self, group_id: int, post_id: int) -> list[Comment]:
        """Every comment of the post, thread replies included, by id."""
        facets = await self.posts_facets(group_id, [Post(id=post_id, date=0)], parts=("comments",))
        only = facets[0]
        if isinstance(only, Skip):
            raise ObjectSkippedError(only)
        return list(only.comments)

    async def posts_facets(
        self,
        group_id: int,
        posts: Sequence[Post],
        parts: Sequence[str] = ("likes", "copies", "comments"),
    ) -> list[PostFacets | Skip]:
        """Likers, reposters and comments of many posts, batched together.

        A post any part of which VK refuses (deleted, comments closed, ...) comes
        back as one ``Skip``: publishing its likes without its comments would make
        the comments look deleted.
        """
        specs: list[PagedList] = []
        for post in posts:
            if "likes" in parts:
                specs.append(self._likes_list(group_id, post.id, "likes"))
            if "copies" in parts:
                specs.append(self._likes_list(group_id, post.id, "copies"))
            if "comments" in parts:
                specs.append(self._comments_list(group_id, post.id))
        first = await self.read_paged(specs)
        comments, threads = self._top_level_comments(group_id, posts, first)
        thread_skips: dict[int, Skip] = {}
        for key, result in (await self.read_paged(threads) if threads else {}).items():
            post_id = int(key[0])  # type: ignore[index]
            if isinstance(result, Skip):
                thread_skips.setdefault(post_id, result)
                continue
            for page in result:
                for item in page.get("items", []):
                    _add_comment(comments[post_id], item)
        out: list[PostFacets | Skip] = []
        for post in posts:
            refused = [
                r for r in (first.get((post.id, part)) for part in parts) if isinstance(r, Skip)
            ]
            if post.id in thread_skips:
                refused.append(thread_skips[post.id])
            if refused:
                out.append(refused[0])
                continue
            out.append(
                PostFacets(
                    network="vk",
                    group_id=group_id,
                    post=post,
                    likers=_ids_of(first.get((post.id, "likes"))),
                    reposters=_ids_of(first.get((post.id, "copies"))),
                    comments=tuple(sorted(comments.get(post.id, {}).values(), key=lambda c: c.id)),
                )
            )
        return out

    def _top_level_comments(
        self, group_id: int, posts: Sequence[Post], first: Mapping[Hashable, list[Any] | Skip]
    ) -> tuple[dict[int, dict[int, Comment]], list[PagedList]]:
        """Comments found in the first read, and the threads longer than their preview."""
        comments: dict[int, dict[int, Comment]] = {}
        threads: list[PagedList] = []
        for post in posts:
            pages = first.get((post.id, "comments"))
            if pages is None or isinstance(pages, Skip):
                continue
            found = comments.setdefault(post.id, {})
            for item in (item for page in pages for item in page.get("items", [])):
                _add_comment(found, item)
                thread = item.get("thread") or {}
                replies = thread.get("items") or []
                for reply in replies:
                    _add_comment(found, reply)
                if int(thread.get("count", 0)) > len(replies):
                    threads.append(self._thread_list(group_id, post.id, item, thread))
        return comments, threads

    def _thread_list(
        self, group_id: int, post_id: int, item: Mapping[str, Any], thread: Mapping[str, Any]
    ) -> PagedList:
        return PagedList(
            key=(post_id, "thread", int(item["id"])),
            obj=_post_obj(group_id, post_id),
            method="wall.getComments",
            params={
                "owner_id": -group_id,
                "post_id": post_id,
                "comment_id": int(item["id"]),
                "sort": "asc",
                "need_likes": 0,
            },
            page_size=COMMENTS_PAGE,
            count_field="current_level_count",
            expected_total=int(thread["count"]),
        )

    async def collect_group(
        self,
        group_id: int,
        window: Window,
        *,
        expected_members: int | None = None,
        now: float | None = None,
    ) -> AsyncIterator[CollectedItem]:
        """One collection of a group: its members, then each post's facets, and any skips.

        ``RunAbortedError`` (and its subclasses) propagate: the caller must then publish
        nothing for this run.
        """
        try:
            members = await self.group_members(group_id, expected_members)
        except ObjectSkippedError as skipped:
            self._skips.append(skipped.skip)
            yield skipped.skip
        else:
            yield GroupMembers(network="vk", group_id=group_id, members=members)
        try:
            posts = await self.recent_posts(group_id, window, now)
        except ObjectSkippedError as skipped:
            self._skips.append(skipped.skip)
            yield skipped.skip
            return
        for item in await self.posts_facets(group_id, posts):
            if isinstance(item, Skip):
                self._skips.append(item)
            yield item


def _post_obj(group_id: int, post_id: int) -> str:
    return f"vk:post:{-group_id}_{post_id}"


def _older(item: Mapping[str, Any], cutoff: float) -> bool:
    """An unpinned post older than the cutoff: every later page is older still."""
    return not item.get("is_pinned") and int(item["date"]) < cutoff


def _count(page: Mapping[str, Any], field: str) -> int:
    return int(page.get(field, page.get("count", 0)))


def _ids_of(pages: list[Any] | Skip | None) -> IdArray:
    if pages is None or isinstance(pages, Skip):
        return sorted_ids(())
    return sorted_ids(int(i) for page in pages for i in page.get("items", []))


def _add_comment(found: dict[int, Comment], item: Mapping[str, Any]) -> None:
    """Keep a comment unless it is a deleted placeholder (kept only for its thread)."""
    if item.get("deleted") or "from_id" not in item:
        return
    comment_id = int(item["id"])
    found[comment_id] = Comment(
        id=comment_id, author_id=int(item["from_id"]), date=int(item.get("date", 0))
    )
