"""Collector benchmark: API requests and wall time to collect a 1,000,000-member group.

The issue's yardstick: VK pages members 1000 at a time, so a plain client needs at
least members / 1000 requests; ``execute`` carries 25 calls, so at least
members / 25,000. The rate limit (20 req/s with a group token) then bounds the wall
time from below at requests / 20 s. This runs the real ``VkClient`` over HTTP
against the in-process simulator (``services/simulator/testing.py``) with VK's real
limit enforced on both sides, and prints what was used next to those bounds.

Run: ``.venv/bin/python -m bench collector`` (about a minute: the plain run is
~1000 requests at 20 req/s).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
from pydantic import SecretStr

from services.collector.api import SlidingWindowLimiter, VkClient, VkClientSettings
from services.collector.api.records import Window
from services.collector.api.vk import COMMENTS_PAGE, LIKES_PAGE, MEMBERS_PAGE, WALL_PAGE
from services.simulator.testing import VK_GROUP_TOKEN, make_simulator, running
from services.simulator.world import World

T = TypeVar("T")

GROUP = 1_000_001
MEMBERS = 1_000_000
POSTS = 20
RPS = 20
EXECUTE_CALLS = 25


def build_world(seed: int = 11) -> tuple[World, int]:
    """1,000,000 members; 20 posts with 0-2,500 likes, a few reposts and comments.

    Returns the world and the number of page calls the posts need at the least
    (one ``wall.get`` page, and per post its likes, copies and comments pages)."""
    rng = np.random.default_rng(seed)
    members = rng.choice(100_000_000, size=MEMBERS, replace=False) + 1
    world = World()
    world.add_group("vk", GROUP, members)
    now = int(time.time())
    pages = math.ceil((POSTS + 1) / WALL_PAGE)
    for index in range(POSTS):
        post = world.add_post("vk", GROUP, date=now - 3600 * (index + 1))
        likes = rng.choice(members, size=int(rng.integers(0, 2_500)), replace=False)
        for user in likes.tolist():
            world.like("vk", GROUP, post, user)
        for user in rng.choice(members, size=3, replace=False).tolist():
            world.repost("vk", GROUP, post, user)
        comments = int(rng.integers(0, 30))
        for author in rng.choice(members, size=comments).tolist():
            world.comment("vk", GROUP, post, author)
        pages += max(1, math.ceil(len(likes) / LIKES_PAGE)) + 1
        pages += max(1, math.ceil(comments / COMMENTS_PAGE))
    return world, pages


async def _timed(step: Callable[[], Awaitable[T]]) -> tuple[float, T]:
    started = time.perf_counter()
    result = await step()
    return time.perf_counter() - started, result


class _Meter:
    """Requests sent (client side) and refused with error 6 (simulator side) per phase."""

    def __init__(self, client: VkClient, refused: Callable[[], int]) -> None:
        self.client = client
        self.refused = refused
        self.requests = client.counters.total_requests
        self.refused_before = refused()

    def row(self, what: str, seconds: float, minimum: int) -> dict[str, object]:
        used = self.client.counters.total_requests - self.requests
        return {
            "collection": what,
            "requests": used,
            "minimum": minimum,
            "wall_s": f"{seconds:.1f}",
            "bound_s": f"{used / RPS:.1f}",
            "min_bound_s": f"{minimum / RPS:.1f}",
            "refused_6": self.refused() - self.refused_before,
        }


async def _collect(world: World, post_pages: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    # One limiter per token, shared by both clients, as the collector does.
    limiter = SlidingWindowLimiter(RPS)
    async with running(make_simulator(world, vk_group_rps=RPS)) as server:
        simulator = server.simulator

        def refused() -> int:
            return simulator.rejected.total()

        for use_execute in (True, False):
            settings = VkClientSettings(
                access_token=SecretStr(VK_GROUP_TOKEN),
                token_kind="group",
                base_url=server.vk_base_url,
                use_execute=use_execute,
            )
            batch = EXECUTE_CALLS if use_execute else 1
            min_members = math.ceil(MEMBERS / (MEMBERS_PAGE * batch))
            mode = "execute" if use_execute else "plain"
            async with VkClient(settings, limiter=limiter) as client:
                meter = _Meter(client, refused)
                seconds, ids = await _timed(lambda: client.group_members(GROUP))
                assert len(ids) == MEMBERS
                rows.append(meter.row(f"1M members, {mode}, first run", seconds, min_members))
                if use_execute:
                    meter = _Meter(client, refused)
                    seconds, ids = await _timed(
                        lambda: client.group_members(GROUP, expected=MEMBERS)
                    )
                    rows.append(meter.row(f"1M members, {mode}, count known", seconds, min_members))
                meter = _Meter(client, refused)

                async def posts() -> int:
                    found = await client.recent_posts(GROUP, Window(last_posts=POSTS))
                    return len(await client.posts_facets(GROUP, found))

                seconds, facets = await _timed(posts)
                assert facets == POSTS
                minimum = math.ceil(post_pages / batch)
                rows.append(meter.row(f"{POSTS} posts' facets, {mode}", seconds, minimum))
    return rows


def run() -> list[dict[str, object]]:
    world, post_pages = build_world()
    return asyncio.run(_collect(world, post_pages))


def main() -> None:
    from bench.__main__ import print_table

    print_table("bench collector", run())


if __name__ == "__main__":
    main()
