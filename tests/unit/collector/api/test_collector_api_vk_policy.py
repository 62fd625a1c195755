"""The VK client's retry/skip/abort policy, with the simulator answering in-process.

``httpx.MockTransport`` hands each request to the real ``Simulator`` logic (no
socket), and sleeping is recorded instead of done, so these run in milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import httpx
import pytest
from pydantic import SecretStr

from services.collector.api import (
    RetriesExhaustedError,
    RetrySettings,
    RunAbortedError,
    Skip,
    VkClient,
    VkClientSettings,
)
from services.collector.api.paging import Call
from services.simulator.enforcement import Fault, Simulator
from services.simulator.testing import VK_GROUP_TOKEN, make_simulator
from services.simulator.world import World

T = TypeVar("T")
GROUP = 9


def world_with_posts() -> tuple[World, list[int]]:
    world = World(clock=lambda: 1_700_000_000)
    world.add_group("vk", GROUP, range(1, 2501))
    posts = [world.add_post("vk", GROUP) for _ in range(3)]
    for post in posts:
        for user in range(1, 11):
            world.like("vk", GROUP, post, user + post)
    return world, posts


class Harness:
    """A client wired to an in-process simulator; records the sleeps it asked for."""

    def __init__(
        self,
        world: World,
        *,
        flaky: Callable[[int], Exception | httpx.Response | None] | None = None,
    ) -> None:
        self.simulator: Simulator = make_simulator(world, vk_group_rps=0)
        self.slept: list[float] = []
        self.sent = 0
        self._flaky = flaky

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        if self._flaky is not None:
            outcome = self._flaky(self.sent)
            if isinstance(outcome, Exception):
                raise outcome
            if outcome is not None:
                return outcome
        params = dict(parse_qsl(request.content.decode()))
        reply = self.simulator.vk(request.url.path.rsplit("/", 1)[-1], params)
        if reply.text is not None:
            return httpx.Response(reply.status, text=reply.text)
        return httpx.Response(reply.status, json=reply.body)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def run(self, body: Callable[[VkClient], Any], **overrides: object) -> Any:
        values: dict[str, object] = {
            "access_token": SecretStr(VK_GROUP_TOKEN),
            "token_kind": "group",
            "base_url": "http://vk.test/method/",
            "requests_per_second": 1000,
            "retry": RetrySettings(max_attempts=4, backoff_base_s=1.0, backoff_cap_s=8.0),
        }
        values.update(overrides)

        async def main() -> Any:
            http = httpx.AsyncClient(transport=httpx.MockTransport(self.handle))
            async with http:
                client = VkClient(
                    VkClientSettings.model_validate(values), http=http, sleep=self.sleep
                )
                return await body(client)

        return asyncio.run(main())


def test_flood_control_is_retried_with_growing_jittered_waits() -> None:
    world, _ = world_with_posts()
    harness = Harness(world)
    harness.simulator.faults.add(Fault("vk", "wall.get", code=9, remaining=3))

    async def body(client: VkClient) -> Any:
        return await client.call("wall.get", {"owner_id": -GROUP}), client.counters

    page, counters = harness.run(body)
    assert page["count"] == 3
    assert counters.errors == {9: 3} and counters.retries == 3
    assert len(harness.slept) == 3
    assert all(0 <= s <= cap for s, cap in zip(harness.slept, [1.0, 2.0, 4.0], strict=True))


def test_failed_pages_inside_execute_back_off_once_then_go_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world, _ = world_with_posts()
    harness = Harness(world)
    harness.simulator.faults.add(Fault("vk", "groups.getMembers", code=9, remaining=3))

    async def body(client: VkClient) -> Any:
        return await client.group_members(GROUP, expected=2500), client.counters

    with caplog.at_level(logging.INFO, logger="services.collector.api.transport"):
        ids, counters = harness.run(body)
    assert ids.tolist() == list(range(1, 2501))
    assert counters.errors == {9: 3} and counters.retries == 3
    assert counters.requests == {"execute": 1, "groups.getMembers": 3}
    assert len(harness.slept) == 1
    # Each call retried out of the batch is logged like any other retry, with its reason.
    retried = [r.getMessage() for r in caplog.records if "inside execute" in r.getMessage()]
    assert len(retried) == 3
    assert all("groups.getMembers for vk:group:9" in line for line in retried)
    assert all("error 9" in line and "retry alone in" in line for line in retried)


def test_retries_stop_at_the_budget() -> None:
    world, _ = world_with_posts()
    harness = Harness(world)
    harness.simulator.faults.add(Fault("vk", "wall.get", code=6, remaining=10))

    async def body(client: VkClient) -> Any:
        return await client.call("wall.get", {"owner_id": -GROUP})

    with pytest.raises(RetriesExhaustedError, match="error 6"):
        harness.run(body)
    assert harness.sent == 4


def test_network_failures_and_unreadable_bodies_are_retried() -> None:
    world, _ = world_with_posts()

    def flaky(attempt: int) -> Exception | httpx.Response | None:
        if attempt == 1:
            return httpx.ConnectError("refused")
        if attempt == 2:
            return httpx.Response(200, text="<html>maintenance</html>")
        return None

    harness = Harness(world, flaky=flaky)

    async def body(client: VkClient) -> Any:
        return await client.call("wall.get", {"owner_id": -GROUP}), client.counters

    page, counters = harness.run(body)
    assert page["count"] == 3
    assert counters.transport_errors == 2 and counters.retries == 2


def test_a_4xx_that_is_not_the_api_talking_stops_the_run() -> None:
    world, _ = world_with_posts()
    harness = Harness(world, flaky=lambda _: httpx.Response(404, text="not here"))

    with pytest.raises(RunAbortedError, match="HTTP 404"):
        harness.run(lambda client: client.call("wall.get", {"owner_id": -GROUP}))


def test_an_unknown_error_code_stops_the_run_rather_than_guessing() -> None:
    world, _ = world_with_posts()
    harness = Harness(world)
    harness.simulator.faults.add(Fault("vk", "wall.get", code=100, remaining=1))

    with pytest.raises(RunAbortedError) as caught:
        harness.run(lambda client: client.call("wall.get", {"owner_id": -GROUP}))
    assert caught.value.code == 100


def test_execute_results_are_paired_with_their_errors_in_order() -> None:
    world, posts = world_with_posts()
    world.delete_post("vk", GROUP, posts[1])
    harness = Harness(world)
    harness.simulator.faults.add(Fault("vk", "wall.getComments", code=6, remaining=1))
    likes = [
        (Call("likes.getList", {"type": "post", "owner_id": -GROUP, "item_id": p}), f"post {p}")
        for p in posts
    ]
    comments = (Call("wall.getComments", {"owner_id": -GROUP, "post_id": posts[0]}), "comments")

    async def body(client: VkClient) -> Any:
        return await client.execute([*likes, comments]), client.counters

    results, counters = harness.run(body)
    assert results[0]["count"] == 10 and results[2]["count"] == 10
    assert isinstance(results[1], Skip)
    assert (results[1].object, results[1].code) == (f"post {posts[1]}", 15)
    assert results[3]["current_level_count"] == 0  # error 6 inside execute, retried alone
    assert counters.requests == {"execute": 1, "wall.getComments": 1}
    assert counters.errors == {15: 1, 6: 1}


def test_execute_is_not_used_when_turned_off() -> None:
    world, posts = world_with_posts()
    harness = Harness(world)

    async def body(client: VkClient) -> Any:
        await client.posts_facets(GROUP, [p for p in await client.recent_posts(GROUP, _window())])
        return client.counters

    counters = harness.run(body, use_execute=False)
    assert "execute" not in counters.requests
    assert counters.requests["likes.getList"] == 2 * len(posts)


def _window() -> Any:
    from services.collector.api import Window

    return Window(last_posts=10)


def test_the_token_never_reaches_logs_urls_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    world, _ = world_with_posts()
    harness = Harness(world)
    harness.simulator.faults.add(Fault("vk", "groups.getMembers", code=6, remaining=1))
    seen_urls: list[str] = []
    original = harness.handle

    def spy(request: httpx.Request) -> httpx.Response:
        seen_urls.append(str(request.url))
        return original(request)

    harness.handle = spy  # type: ignore[method-assign]

    async def body(client: VkClient) -> str:
        await client.group_members(GROUP)
        return repr(client) + repr(client.settings)

    with caplog.at_level(logging.DEBUG):
        shown = harness.run(body)
    assert VK_GROUP_TOKEN not in caplog.text
    assert VK_GROUP_TOKEN not in shown
    assert seen_urls and all(VK_GROUP_TOKEN not in url for url in seen_urls)
