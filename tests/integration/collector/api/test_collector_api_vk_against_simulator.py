"""The VK client against the simulator over real HTTP on 127.0.0.1.

Each test builds its own world, serves it on a free port, and checks what a
collector run would see: exact lists, the number of requests it cost, and what
happens when the API misbehaves.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
import pytest
from pydantic import SecretStr

from services.collector.api import (
    CollectedItem,
    CountersSnapshot,
    GroupMembers,
    PostFacets,
    RetriesExhaustedError,
    RetrySettings,
    RunAbortedError,
    Skip,
    VkClient,
    VkClientSettings,
    Window,
)
from services.collector.api.paging import min_requests, pages_needed
from services.simulator.enforcement import Fault
from services.simulator.testing import (
    VK_GROUP_TOKEN,
    VK_USER_TOKEN,
    RunningSimulator,
    make_simulator,
    running,
)
from services.simulator.world import World

T = TypeVar("T")
GROUP = 42
FAST_RETRY = RetrySettings(max_attempts=5, backoff_base_s=0.02, backoff_cap_s=0.1)


def settings(server: RunningSimulator, **overrides: object) -> VkClientSettings:
    values: dict[str, object] = {
        "access_token": SecretStr(VK_GROUP_TOKEN),
        "token_kind": "group",
        "base_url": server.vk_base_url,
        "retry": FAST_RETRY,
    }
    values.update(overrides)
    return VkClientSettings.model_validate(values)


def serve(
    world: World, body: Callable[[RunningSimulator], Awaitable[T]], vk_user_rps: int = 3
) -> T:
    async def main() -> T:
        async with running(make_simulator(world, vk_user_rps=vk_user_rps)) as server:
            return await body(server)

    return asyncio.run(main())


def big_group(members: int, seed: int = 1) -> tuple[World, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.unique(rng.integers(1, 900_000_000, size=members * 2))[:members]
    rng.shuffle(ids)
    world = World()
    world.add_group("vk", GROUP, ids.tolist())
    return world, np.sort(ids)


def test_a_group_of_25000_members_is_read_exactly_in_the_fewest_requests() -> None:
    world, expected = big_group(25_000)

    async def body(server: RunningSimulator) -> tuple[np.ndarray, np.ndarray, int, int]:
        async with VkClient(settings(server)) as client:
            learned = await client.group_members(GROUP)
            cold = client.counters.total_requests
        async with VkClient(settings(server)) as client:
            hinted = await client.group_members(GROUP, expected=len(learned))
            warm = client.counters.total_requests
        return learned, hinted, cold, warm

    learned, hinted, cold, warm = serve(world, body)
    assert learned.dtype == np.int64
    np.testing.assert_array_equal(learned, expected)
    np.testing.assert_array_equal(hinted, expected)
    minimum = min_requests(pages_needed(25_000, 1000))
    assert minimum == 1
    assert warm == minimum  # all 25 pages in one execute when the size is known
    assert cold == minimum + 1  # one plain page to learn the count, then one execute


def populated_wall(posts: int, seed: int = 3) -> tuple[World, dict[int, dict[str, object]]]:
    """A group with ``posts`` posts, likes (one post over 1000), reposts and comment threads."""
    rng = random.Random(seed)
    world = World(clock=lambda: 1_700_000_000)
    world.add_group("vk", GROUP, range(1, 5001))
    truth: dict[int, dict[str, object]] = {}
    for index in range(posts):
        post_id = world.add_post("vk", GROUP, date=1_699_000_000 + index * 600)
        likers = rng.sample(range(1, 5001), 1500 if index == 0 else rng.randint(0, 80))
        reposters = rng.sample(range(1, 5001), rng.randint(0, 6))
        for user in likers:
            world.like("vk", GROUP, post_id, user)
        for user in reposters:
            world.repost("vk", GROUP, post_id, user)
        comments: set[int] = set()
        for _ in range(rng.randint(0, 4)):
            root = world.comment("vk", GROUP, post_id, rng.randint(1, 5000))
            comments.add(root)
            for _ in range(rng.choice([0, 2, 14])):
                comments.add(
                    world.comment("vk", GROUP, post_id, rng.randint(1, 5000), reply_to=root)
                )
        truth[post_id] = {
            "likers": sorted(likers),
            "reposters": sorted(reposters),
            "comments": comments,
        }
    return world, truth


def test_likers_reposters_and_comments_of_30_posts_are_exact_and_batched() -> None:
    world, truth = populated_wall(30)

    async def body(server: RunningSimulator) -> tuple[list[CollectedItem], dict[str, int]]:
        async with VkClient(settings(server), clock=lambda: 1_700_000_000) as client:
            items = [item async for item in client.collect_group(GROUP, Window(last_posts=30))]
            return items, dict(client.counters.requests)

    items, requests = serve(world, body)
    members = [item for item in items if isinstance(item, GroupMembers)]
    facets = {item.post.id: item for item in items if isinstance(item, PostFacets)}
    assert len(members) == 1 and len(members[0].members) == 5000
    assert set(facets) == set(truth)
    for post_id, facet in facets.items():
        assert facet.likers.tolist() == truth[post_id]["likers"]
        assert facet.reposters is not None
        assert facet.reposters.tolist() == truth[post_id]["reposters"]
        assert {c.id for c in facet.comments} == truth[post_id]["comments"]
    threads_over_preview = sum(
        1
        for post in world.group("vk", GROUP).posts.values()
        for root in post.roots()
        if len(post.replies(root.id)) > 10
    )
    # 90 first pages (likes, copies, comments of 30 posts) -> 4 executes; the post with
    # 1500 likes needs one more page; long threads one call each: batched into one execute.
    assert threads_over_preview > 0
    follow_ups = min_requests(1) + min_requests(threads_over_preview)
    assert requests.get("execute", 0) == min_requests(90) + follow_ups
    assert requests["wall.get"] == 1
    assert requests["groups.getMembers"] == 1


def test_comment_threads_are_complete_and_deleted_comments_are_left_out() -> None:
    world = World(clock=lambda: 1_700_000_000)
    world.add_group("vk", GROUP, [1, 2, 3])
    post = world.add_post("vk", GROUP)
    kept_root = world.comment("vk", GROUP, post, 1)
    replies = [world.comment("vk", GROUP, post, 2, reply_to=kept_root) for _ in range(25)]
    deleted_root = world.comment("vk", GROUP, post, 3)
    orphan_replies = [world.comment("vk", GROUP, post, 1, reply_to=deleted_root) for _ in range(3)]
    world.delete_comment("vk", GROUP, post, deleted_root)
    world.delete_comment("vk", GROUP, post, replies[5])
    reply_to_reply = world.comment("vk", GROUP, post, 3, reply_to=replies[0])

    async def body(server: RunningSimulator) -> list[int]:
        async with VkClient(settings(server)) as client:
            return [c.id for c in await client.post_comments(GROUP, post)]

    got = serve(world, body)
    expected = {kept_root, reply_to_reply, *orphan_replies, *replies} - {replies[5]}
    assert got == sorted(expected)


def test_error_6_from_the_real_rate_limit_is_retried_until_the_read_succeeds() -> None:
    world, expected = big_group(7000)

    async def body(server: RunningSimulator) -> tuple[np.ndarray, dict[int, int], dict[str, int]]:
        # The client believes it may send 50 req/s; the server allows 3 for a user token.
        config = settings(
            server,
            access_token=SecretStr(VK_USER_TOKEN),
            token_kind="user",
            requests_per_second=50,
            use_execute=False,
            retry=RetrySettings(max_attempts=8, backoff_base_s=0.2, backoff_cap_s=1.0),
        )
        async with VkClient(config) as client:
            ids = await client.group_members(GROUP)
            return ids, dict(client.counters.errors), server.simulator.counters()["rate_limited"]

    ids, errors, rejected = serve(world, body, vk_user_rps=3)
    np.testing.assert_array_equal(ids, expected)
    assert errors.get(6, 0) >= 1
    assert sum(rejected.values()) == errors[6]


def test_a_client_at_3_rps_never_trips_the_server_limit() -> None:
    world, expected = big_group(6000)

    async def body(server: RunningSimulator) -> tuple[np.ndarray, dict[int, int], float]:
        config = settings(
            server, access_token=SecretStr(VK_USER_TOKEN), token_kind="user", use_execute=False
        )
        started = time.monotonic()
        async with VkClient(config) as client:
            ids = await client.group_members(GROUP)
            return ids, dict(client.counters.errors), time.monotonic() - started

    ids, errors, elapsed = serve(world, body, vk_user_rps=3)
    np.testing.assert_array_equal(ids, expected)
    assert errors == {}
    assert elapsed >= 1.0  # 6 plain requests at 3/s cannot all go in the first second


def test_injected_error_6_and_http_5xx_are_retried() -> None:
    world, expected = big_group(1500)

    async def body(server: RunningSimulator) -> tuple[np.ndarray, CountersSnapshot]:
        server.simulator.faults.add(Fault("vk", "groups.getMembers", code=6, remaining=1))
        server.simulator.faults.add(Fault("vk", "groups.getMembers", http_status=502, remaining=2))
        async with VkClient(settings(server, use_execute=False)) as client:
            return await client.group_members(GROUP), client.counters

    ids, counters = serve(world, body)
    np.testing.assert_array_equal(ids, expected)
    assert counters.errors == {6: 1}
    assert counters.transport_errors == 2
    assert counters.retries == 3


def test_persistent_5xx_gives_up_after_the_retry_budget() -> None:
    world, _ = big_group(10)

    async def body(server: RunningSimulator) -> None:
        server.simulator.faults.add(Fault("vk", "groups.getMembers", http_status=503, remaining=99))
        async with VkClient(settings(server)) as client:
            await client.group_members(GROUP)

    with pytest.raises(RetriesExhaustedError, match="HTTP 503"):
        serve(world, body)


def test_a_captcha_aborts_the_run_with_a_clear_message_and_no_token() -> None:
    world, _ = populated_wall(3)

    async def body(server: RunningSimulator) -> list[object]:
        server.simulator.faults.add(Fault("vk", "likes.getList", code=14, remaining=1))
        async with VkClient(settings(server)) as client:
            return [item async for item in client.collect_group(GROUP, Window(last_posts=3))]

    with pytest.raises(RunAbortedError) as caught:
        serve(world, body)
    assert caught.value.code == 14
    assert "captcha" in str(caught.value).lower()
    assert VK_GROUP_TOKEN not in str(caught.value)


def test_an_invalid_token_aborts_the_run() -> None:
    world, _ = big_group(10)

    async def body(server: RunningSimulator) -> None:
        async with VkClient(settings(server, access_token=SecretStr("revoked"))) as client:
            await client.group_members(GROUP)

    with pytest.raises(RunAbortedError, match="error 5"):
        serve(world, body)


def test_a_deleted_post_is_skipped_and_recorded_while_the_others_are_collected() -> None:
    world, truth = populated_wall(5)
    doomed = sorted(truth)[2]

    async def body(server: RunningSimulator) -> tuple[list[PostFacets | Skip], tuple[Skip, ...]]:
        async with VkClient(settings(server), clock=lambda: 1_700_000_000) as client:
            posts = await client.recent_posts(GROUP, Window(last_posts=5))
            world.delete_post("vk", GROUP, doomed)  # deleted between wall.get and its likes
            facets = await client.posts_facets(GROUP, posts)
            return facets, client.skips

    facets, _ = serve(world, body)
    skips = [item for item in facets if isinstance(item, Skip)]
    assert len(skips) == 1
    assert skips[0].code == 15 and skips[0].object == f"vk:post:-{GROUP}_{doomed}"
    collected = {item.post.id for item in facets if isinstance(item, PostFacets)}
    assert collected == set(truth) - {doomed}


def test_collect_group_records_skips_for_the_caller() -> None:
    world, truth = populated_wall(4)
    denied = max(truth)  # the newest post: its comments are the first asked for

    async def body(server: RunningSimulator) -> tuple[list[CollectedItem], tuple[Skip, ...]]:
        server.simulator.faults.add(Fault("vk", "wall.getComments", code=212, remaining=1))
        async with VkClient(settings(server), clock=lambda: 1_700_000_000) as client:
            items = [item async for item in client.collect_group(GROUP, Window(last_posts=4))]
            return items, client.skips

    items, skips = serve(world, body)
    assert [s.code for s in skips] == [212]
    assert [item for item in items if isinstance(item, Skip)] == list(skips)
    assert skips[0].object == f"vk:post:-{GROUP}_{denied}"
    collected = {item.post.id for item in items if isinstance(item, PostFacets)}
    assert collected == set(truth) - {denied}


def test_the_days_window_ignores_an_old_pinned_post_and_stops_paging_early() -> None:
    world = World(clock=lambda: 1_700_000_000)
    world.add_group("vk", GROUP, [1])
    pinned = world.add_post("vk", GROUP, date=1_600_000_000, pinned=True)
    old = [world.add_post("vk", GROUP, date=1_650_000_000 + i) for i in range(250)]
    recent = [world.add_post("vk", GROUP, date=1_699_990_000 + i) for i in range(5)]

    async def body(server: RunningSimulator) -> tuple[list[int], int, list[int]]:
        async with VkClient(settings(server)) as client:
            by_days = await client.recent_posts(
                GROUP, Window(last_posts=None, days=1), now=1_700_000_000
            )
            requests = client.counters.total_requests
            by_count = await client.recent_posts(GROUP, Window(last_posts=3))
            return [p.id for p in by_days], requests, [p.id for p in by_count]

    by_days, requests, by_count = serve(world, body)
    assert by_days == sorted(recent, reverse=True)
    assert requests == 1
    assert by_count == sorted(recent, reverse=True)[:3]
    assert pinned not in by_days and old[0] not in by_days


def test_a_transient_error_inside_execute_is_retried_alone() -> None:
    world, truth = populated_wall(10)

    async def body(server: RunningSimulator) -> tuple[list[PostFacets | Skip], CountersSnapshot]:
        server.simulator.faults.add(Fault("vk", "likes.getList", code=9, remaining=2))
        async with VkClient(settings(server), clock=lambda: 1_700_000_000) as client:
            posts = await client.recent_posts(GROUP, Window(last_posts=10))
            return await client.posts_facets(GROUP, posts), client.counters

    facets, counters = serve(world, body)
    assert all(isinstance(item, PostFacets) for item in facets)
    for item in facets:
        assert isinstance(item, PostFacets)
        assert item.likers.tolist() == truth[item.post.id]["likers"]
    assert counters.errors == {9: 2}
    # The two failed sub-calls, each retried alone, plus the lone second page of the
    # post with 1500 likes (a single call goes without execute).
    assert counters.requests["likes.getList"] == 3


def test_members_joining_mid_read_trigger_a_re_read_not_a_partial_list() -> None:
    world, expected = big_group(4000)
    newcomers = [1_000_000_001, 1]  # one after every id, one before every id

    async def body(server: RunningSimulator) -> tuple[np.ndarray, int]:
        def join_once(network: str, method: str) -> None:
            if method == "execute" and newcomers:
                world.add_members("vk", GROUP, [newcomers.pop()])

        server.simulator.on_request.append(join_once)
        async with VkClient(settings(server)) as client:
            ids = await client.group_members(GROUP)
            return ids, client.counters.total_requests

    ids, requests = serve(world, body)
    final = np.union1d(expected, [1, 1_000_000_001])
    np.testing.assert_array_equal(ids, final)
    assert requests > 2


def test_a_list_that_never_holds_still_stops_the_run() -> None:
    world, _ = big_group(3000)

    async def body(server: RunningSimulator) -> None:
        joiner = iter(range(2_000_000_000, 2_000_001_000))
        server.simulator.on_request.append(
            lambda network, method: world.add_members("vk", GROUP, [next(joiner)])
        )
        async with VkClient(settings(server, use_execute=False)) as client:
            await client.group_members(GROUP)

    with pytest.raises(RunAbortedError, match="changed during every one of 3 reads"):
        serve(world, body)
