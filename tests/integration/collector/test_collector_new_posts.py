"""A post published after the baseline with a date before it (a skewed clock, or an
API that reports when a post was created rather than published) is still new.

The collector records the highest post id its baseline run saw and puts it on every
post chunk; post ids grow per wall, so the detector tells new posts by id. Real
simulator, broker and PostgreSQL; the published chunks go through the detector's
own mapping and diff core.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from services.collector.api import RetrySettings
from services.collector.groups import GroupConfig, OkCredentials, PostWindow, VkCredentials
from services.contracts.models import PostLiked, PostLikesChunk
from services.detector.history import advance
from services.detector.mapping import events, to_chunk
from services.simulator.testing import (
    OK_APP_KEY,
    OK_APP_SECRET,
    OK_TOKEN,
    VK_GROUP_TOKEN,
    RunningSimulator,
    make_simulator,
    running,
)
from services.simulator.world import NetworkName, World
from tests.integration.collector.harness import (
    Env,
    collector,
    prepared,
    read_until_manifest,
    run_row,
)

GROUPS: dict[str, int] = {"vk": 4545, "ok": 52_000_000_000_045}
ENVIRON = {"SIM_VK_TOKEN": VK_GROUP_TOKEN, "SIM_OK_SECRET": OK_APP_SECRET, "SIM_OK_TOKEN": OK_TOKEN}
RETRY = RetrySettings(max_attempts=3, backoff_base_s=0.01, backoff_cap_s=0.05)


def group(network: str, server: RunningSimulator) -> GroupConfig:
    values: dict[str, Any] = {
        "network": network,
        "group_id": GROUPS[network],
        "base_url": server.vk_base_url if network == "vk" else server.ok_base_url,
        "window": PostWindow(last_posts=10),
        "bucket_count": 2,
        "retry": RETRY,
    }
    if network == "vk":
        values["credentials"] = VkCredentials(access_token_env="SIM_VK_TOKEN", token_kind="group")
    else:
        values["credentials"] = OkCredentials(
            application_key=OK_APP_KEY,
            application_secret_key_env="SIM_OK_SECRET",
            access_token_env="SIM_OK_TOKEN",
        )
        values["requests_per_second"] = 100
    return GroupConfig.model_validate(values)


@pytest.mark.parametrize("network", ["vk", "ok"])
def test_a_new_post_dated_before_the_baseline_gives_its_likes_as_events(
    env: Env, network: NetworkName
) -> None:
    now = int(time.time())
    gid = GROUPS[network]
    w = World()
    w.add_group(network, gid, range(100, 200))
    old = [w.add_post(network, gid, date=now - 3600 * (n + 1)) for n in range(3)]
    for post in old:
        w.like(network, gid, post, 101)

    async def main() -> tuple[Any, Any, dict[str, Any], dict[str, Any], int]:
        await prepared(env)
        async with running(make_simulator(w)) as server:
            c = collector(env)
            c.environ = ENVIRON
            first = await c.run_group(group(network, server))
            # Published now, but the network dates it two days back.
            new = w.add_post(network, gid, date=now - 2 * 86_400)
            for user in (120, 150):
                w.like(network, gid, new, user)
            second = await c.run_group(group(network, server))
            c.publisher.close()
        return (
            first,
            second,
            await run_row(env, first.run_id),
            await run_row(env, second.run_id),
            new,
        )

    first, second, first_row, second_row, new = asyncio.run(main())
    assert first.status == second.status == "succeeded", (first.reason, second.reason)
    assert first.baseline and not second.baseline
    assert first_row["baseline_post_id"] == max(old)
    assert second_row["baseline_post_id"] == max(old)  # carried like baseline_at

    run = [c for c in read_until_manifest(env, second.run_id) if c.run_id == second.run_id]
    likes = {c.post_id: c for c in run if isinstance(c, PostLikesChunk)}
    chunk = likes[new]
    assert chunk.posted_at < chunk.baseline_at  # the date alone would call it old
    assert chunk.baseline_post_id == max(old) < new
    diff_chunk = to_chunk(chunk)
    _, diff = advance(None, diff_chunk, 0)
    got = list(events(diff, diff_chunk, chunk.snapshot_at))
    assert [(type(e), e.social_user_id) for e in got] == [(PostLiked, "120"), (PostLiked, "150")]
    # The posts of the baseline, met by a detector without their state, stay silent.
    for post in old:
        old_chunk = to_chunk(likes[post])
        _, diff = advance(None, old_chunk, 0)
        assert list(events(diff, old_chunk, chunk.snapshot_at)) == []
