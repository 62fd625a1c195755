"""A half-read group never looks like members leaving: the run publishes nothing and
the run history says why (real broker, real PostgreSQL, the simulator over HTTP)."""

from __future__ import annotations

import asyncio
from typing import Any

from services.collector.api import RetrySettings
from services.collector.groups import GroupConfig, OkCredentials, PostWindow, VkCredentials
from services.collector.run import Collector, RunSummary
from services.contracts.models import MembersChunk
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
from tests.integration.collector.harness import (
    Env,
    collector,
    prepared,
    read_until_manifest,
    run_row,
)

OK_GROUP = 52_000_000_000_077
VK_GROUP = 4343
MEMBERS = range(5_700_000, 5_702_500)  # three pages of 1000
ENVIRON = {"SIM_VK_TOKEN": VK_GROUP_TOKEN, "SIM_OK_SECRET": OK_APP_SECRET, "SIM_OK_TOKEN": OK_TOKEN}
RETRY = RetrySettings(max_attempts=2, backoff_base_s=0.01, backoff_cap_s=0.02)


def ok_group(server: RunningSimulator) -> GroupConfig:
    return GroupConfig(
        network="ok",
        group_id=OK_GROUP,
        credentials=OkCredentials(
            application_key=OK_APP_KEY,
            application_secret_key_env="SIM_OK_SECRET",
            access_token_env="SIM_OK_TOKEN",
        ),
        base_url=server.ok_base_url,
        window=PostWindow(last_posts=5),
        bucket_count=4,
        requests_per_second=100,
        retry=RETRY,
    )


def vk_group(server: RunningSimulator, **overrides: Any) -> GroupConfig:
    values: dict[str, Any] = {
        "network": "vk",
        "group_id": VK_GROUP,
        "credentials": VkCredentials(access_token_env="SIM_VK_TOKEN", token_kind="group"),
        "base_url": server.vk_base_url,
        "window": PostWindow(last_posts=5),
        "bucket_count": 4,
        "retry": RETRY,
    }
    values.update(overrides)
    return GroupConfig.model_validate(values)


def with_credentials(env: Env) -> Collector:
    c = collector(env)
    c.environ = ENVIRON
    return c


def test_an_ok_member_list_cut_short_publishes_nothing_and_records_why(env: Env) -> None:
    w = World()
    w.add_group("ok", OK_GROUP, MEMBERS)
    w.add_post("ok", OK_GROUP, date=1_700_000_000)

    async def main() -> tuple[RunSummary, RunSummary, dict[str, Any]]:
        await prepared(env)
        async with running(make_simulator(w)) as server:
            # Page 2 of every read is empty and says the list has ended.
            server.simulator.faults.add(
                Fault("ok", "group.getMembers", truncate=0, after=1, remaining=3)
            )
            c = with_credentials(env)
            cut = await c.run_group(ok_group(server))
            whole = await c.run_group(ok_group(server))
            c.publisher.close()
        return cut, whole, await run_row(env, cut.run_id)

    cut, whole, row = asyncio.run(main())
    assert cut.status == "aborted"
    assert row["status"] == "aborted"
    assert "did not match the group's member count" in row["reason"]
    assert "1000 of 2500" in row["reason"]
    assert row["messages_published"] == 0
    assert whole.status == "succeeded", whole.reason
    assert whole.baseline, "the aborted run must not become the baseline"
    seen = read_until_manifest(env, whole.run_id)
    assert {chunk.run_id for chunk in seen} == {whole.run_id}
    members = [i for chunk in seen if isinstance(chunk, MembersChunk) for i in chunk.member_ids]
    assert sorted(members) == list(MEMBERS)


def test_a_mass_drop_is_refused_unless_the_group_allows_it(env: Env) -> None:
    w = World()
    w.add_group("vk", VK_GROUP, MEMBERS)

    async def main() -> tuple[list[RunSummary], dict[str, Any]]:
        await prepared(env)
        async with running(make_simulator(w)) as server:
            c = with_credentials(env)
            first = await c.run_group(vk_group(server))
            w.remove_members("vk", VK_GROUP, MEMBERS[:1000])  # 40% leave
            refused = await c.run_group(vk_group(server))
            allowed = await c.run_group(vk_group(server, allow_mass_leave=True))
            c.publisher.close()
        return [first, refused, allowed], await run_row(env, refused.run_id)

    (first, refused, allowed), row = asyncio.run(main())
    assert first.status == "succeeded", first.reason
    assert refused.status == "aborted"
    assert row["status"] == "aborted"
    assert "from 2500 to 1500 (-40%)" in row["reason"]
    assert "allow_mass_leave" in row["reason"]
    assert row["messages_published"] == 0
    assert row["members"] == 1500  # what was read is on record
    assert allowed.status == "succeeded", allowed.reason
    seen = read_until_manifest(env, allowed.run_id)
    assert {chunk.run_id for chunk in seen} == {first.run_id, allowed.run_id}
