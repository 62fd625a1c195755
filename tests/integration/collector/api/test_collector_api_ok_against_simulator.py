"""The OK client against the simulator over real HTTP: signed requests, anchors, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from pydantic import SecretStr

from services.collector.api import (
    CollectedItem,
    CountersSnapshot,
    GroupMembers,
    OkClient,
    OkClientSettings,
    PostFacets,
    RetrySettings,
    RunAbortedError,
    Skip,
    Window,
)
from services.simulator.enforcement import Fault
from services.simulator.testing import (
    OK_APP_KEY,
    OK_APP_SECRET,
    OK_TOKEN,
    RunningSimulator,
    make_simulator,
    running,
)
from services.simulator.world import World

T = TypeVar("T")
GROUP = 53_038_939_046_008
NOW = 1_700_000_000


def settings(server: RunningSimulator, **overrides: object) -> OkClientSettings:
    values: dict[str, object] = {
        "application_key": OK_APP_KEY,
        "application_secret_key": SecretStr(OK_APP_SECRET),
        "access_token": SecretStr(OK_TOKEN),
        "base_url": server.ok_base_url,
        "requests_per_second": 50,
        "retry": RetrySettings(max_attempts=4, backoff_base_s=0.02, backoff_cap_s=0.1),
    }
    values.update(overrides)
    return OkClientSettings.model_validate(values)


def serve(world: World, body: Callable[[RunningSimulator], Awaitable[T]]) -> T:
    async def main() -> T:
        async with running(make_simulator(world)) as server:
            return await body(server)

    return asyncio.run(main())


def ok_world() -> tuple[World, dict[int, tuple[list[int], set[int]]]]:
    world = World(clock=lambda: NOW)
    world.add_group("ok", GROUP, range(570_000_000_000, 570_000_002_500))
    truth: dict[int, tuple[list[int], set[int]]] = {}
    for index in range(6):
        topic = world.add_post("ok", GROUP, date=NOW - 3600 * (6 - index))
        likers = list(range(570_000_000_000 + index, 570_000_000_000 + 250 * index, 7))
        for user in likers:
            world.like("ok", GROUP, topic, user)
        comments = {world.comment("ok", GROUP, topic, 570_000_000_100) for _ in range(index * 45)}
        if comments:
            comments.add(world.comment("ok", GROUP, topic, 570_000_000_200, reply_to=min(comments)))
        truth[topic] = (sorted(likers), comments)
    return world, truth


def test_members_topics_likes_and_comments_are_read_exactly_with_signed_requests() -> None:
    world, truth = ok_world()

    async def body(server: RunningSimulator) -> tuple[list[CollectedItem], dict[str, int]]:
        async with OkClient(settings(server), clock=lambda: NOW) as client:
            items = [item async for item in client.collect_group(GROUP, Window(last_posts=10))]
            return items, dict(client.counters.requests)

    items, requests = serve(world, body)
    members = [item for item in items if isinstance(item, GroupMembers)]
    assert len(members) == 1
    assert members[0].members.tolist() == list(range(570_000_000_000, 570_000_002_500))
    facets = {item.post.id: item for item in items if isinstance(item, PostFacets)}
    assert set(facets) == set(truth)
    for topic, (likers, comments) in truth.items():
        assert facets[topic].likers.tolist() == likers
        assert facets[topic].reposters is None  # OK has no reposts
        assert {c.id for c in facets[topic].comments} == comments
        assert all(c.date == NOW for c in facets[topic].comments)
    assert requests["group.getMembers"] == 3  # 2500 members, 1000 a page
    assert requests["mediatopic.getTopics"] == 1


def test_the_days_window_keeps_only_recent_topics() -> None:
    world, truth = ok_world()

    async def body(server: RunningSimulator) -> list[int]:
        async with OkClient(settings(server, topics_page_size=2)) as client:
            posts = await client.recent_posts(GROUP, Window(last_posts=None, days=0.1), now=NOW)
            return [post.id for post in posts]

    newest_first = sorted(truth, reverse=True)
    assert serve(world, body) == newest_first[:2]  # 0.1 day = 2.4 h: topics 1 h and 2 h old


def test_an_expired_session_aborts_the_run() -> None:
    world, _ = ok_world()

    async def body(server: RunningSimulator) -> None:
        async with OkClient(settings(server, access_token=SecretStr("expired"))) as client:
            await client.group_members(GROUP)

    with pytest.raises(RunAbortedError) as caught:
        serve(world, body)
    assert caught.value.code == 102
    assert "expired" in str(caught.value)


def test_a_wrong_secret_fails_the_signature_check_and_aborts() -> None:
    world, _ = ok_world()

    async def body(server: RunningSimulator) -> None:
        config = settings(server, application_secret_key=SecretStr("not-the-secret"))
        async with OkClient(config) as client:
            await client.group_members(GROUP)

    with pytest.raises(RunAbortedError) as caught:
        serve(world, body)
    assert caught.value.code == 104


def test_a_deleted_topic_is_skipped_and_flood_control_is_retried() -> None:
    world, truth = ok_world()
    doomed = sorted(truth)[3]

    async def body(server: RunningSimulator) -> tuple[list[PostFacets | Skip], CountersSnapshot]:
        server.simulator.faults.add(Fault("ok", "discussions.getComments", code=8, remaining=2))
        async with OkClient(settings(server), clock=lambda: NOW) as client:
            posts = await client.recent_posts(GROUP, Window(last_posts=10))
            world.delete_post("ok", GROUP, doomed)
            return await client.posts_facets(GROUP, posts), client.counters

    facets, counters = serve(world, body)
    skips = [item for item in facets if isinstance(item, Skip)]
    assert [(s.object, s.code) for s in skips] == [(f"ok:topic:{GROUP}_{doomed}", 300)]
    assert {f.post.id for f in facets if isinstance(f, PostFacets)} == set(truth) - {doomed}
    assert counters.errors == {8: 2, 300: 1}
