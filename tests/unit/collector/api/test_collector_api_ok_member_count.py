"""A member list that was only partly read must never pass for the whole group.

The OK client checks the list against ``group.getCounters``; the simulator's
``truncate`` fault sends the short or empty page, with ``has_more: false``, that
would otherwise end the list early. VK's count check meets the same fault.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from pydantic import SecretStr

from services.collector.api import (
    InconsistentReadError,
    OkClient,
    OkClientSettings,
    RetrySettings,
    VkClient,
    VkClientSettings,
)
from services.simulator.enforcement import Fault
from services.simulator.testing import (
    OK_APP_KEY,
    OK_APP_SECRET,
    OK_TOKEN,
    VK_GROUP_TOKEN,
    RunningSimulator,
    make_simulator,
    running,
)
from services.simulator.world import World

T = TypeVar("T")
GROUP = 53_038_939_046_008
VK_GROUP = 77
MEMBERS = range(570_000_000_000, 570_000_002_500)  # three pages of 1000


def world() -> World:
    w = World()
    w.add_group("ok", GROUP, MEMBERS)
    w.add_group("vk", VK_GROUP, MEMBERS)
    return w


def ok_settings(server: RunningSimulator, **overrides: object) -> OkClientSettings:
    values: dict[str, object] = {
        "application_key": OK_APP_KEY,
        "application_secret_key": SecretStr(OK_APP_SECRET),
        "access_token": SecretStr(OK_TOKEN),
        "base_url": server.ok_base_url,
        "requests_per_second": 100,
        "retry": RetrySettings(max_attempts=2, backoff_base_s=0.01, backoff_cap_s=0.02),
    }
    values.update(overrides)
    return OkClientSettings.model_validate(values)


def serve(w: World, body: Callable[[RunningSimulator], Awaitable[T]]) -> T:
    async def main() -> T:
        async with running(make_simulator(w)) as server:
            return await body(server)

    return asyncio.run(main())


def read_ok_members(
    w: World, *faults: Fault, hook: Callable[[str, str], None] | None = None
) -> tuple[list[int], dict[str, int]]:
    async def body(server: RunningSimulator) -> tuple[list[int], dict[str, int]]:
        for fault in faults:
            server.simulator.faults.add(fault)
        if hook is not None:
            server.simulator.on_request.append(hook)
        async with OkClient(ok_settings(server)) as client:
            try:
                members = await client.group_members(GROUP)
            finally:
                requests = dict(client.counters.requests)
        return members.tolist(), requests

    return serve(w, body)


@pytest.mark.parametrize("keep", [0, 10], ids=["empty page", "short page"])
def test_a_page_cut_short_in_every_read_stops_the_run(keep: int) -> None:
    w = world()
    # Page 2 of each of the three reads ends the list early: 1000 (+ keep) of 2500.
    cuts = [Fault("ok", "group.getMembers", truncate=keep, after=1) for _ in range(3)]
    with pytest.raises(InconsistentReadError) as caught:
        read_ok_members(w, *cuts)
    message = str(caught.value)
    assert f"OK group {GROUP}" in message
    assert f"{1000 + keep} of 2500" in message
    assert caught.value.method == "group.getMembers"


def test_one_short_page_is_read_again_and_the_whole_list_returned() -> None:
    w = world()
    members, requests = read_ok_members(
        w, Fault("ok", "group.getMembers", truncate=0, after=1, remaining=1)
    )
    assert members == list(MEMBERS)
    # First read: 2 pages (the second empty), checked against the count before and
    # after; the second read: 3 pages, matching the count before it.
    assert requests["group.getMembers"] == 2 + 3
    assert requests["group.getCounters"] == 2 + 1


def test_a_member_joining_mid_read_is_not_taken_for_a_short_read() -> None:
    w = world()
    joined: list[int] = []

    def join_during_the_read(network: str, method: str) -> None:
        if method == "group.getMembers" and not joined:
            joined.append(MEMBERS.stop + 5)
            w.add_members("ok", GROUP, joined)

    members, requests = read_ok_members(w, hook=join_during_the_read)
    assert members == [*MEMBERS, joined[0]]
    assert requests["group.getMembers"] == 3  # one read, accepted against the count after it


def test_the_member_count_comes_from_group_get_counters_in_oks_shape() -> None:
    w = world()

    async def body(server: RunningSimulator) -> tuple[Any, int]:
        async with OkClient(ok_settings(server)) as client:
            raw = await client.call(
                "group.getCounters", {"group_id": GROUP, "counterTypes": "members,themes"}
            )
            return raw, await client.member_count(GROUP)

    raw, count = serve(w, body)
    assert raw == {"counters": {"members": 2500, "themes": 0}}
    assert count == 2500


def test_a_truncated_vk_page_is_caught_by_the_count_check_too() -> None:
    w = world()

    async def body(server: RunningSimulator) -> None:
        # Every page after the first comes back empty, though its count says 2500.
        server.simulator.faults.add(
            Fault("vk", "groups.getMembers", truncate=0, after=1, remaining=100)
        )
        config = VkClientSettings(
            access_token=SecretStr(VK_GROUP_TOKEN),
            token_kind="group",
            base_url=server.vk_base_url,
            use_execute=False,
            requests_per_second=100,
        )
        async with VkClient(config) as client:
            await client.group_members(VK_GROUP)

    with pytest.raises(InconsistentReadError):
        serve(w, body)
