"""The acceptance-size group (100,000 members, 50 posts) and a collector run of it that
a test can SIGKILL in the middle of its transaction (``python -m ...scale <args>``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from typing import Any

import numpy as np
from pydantic import SecretStr

from services.collector.api import RetrySettings
from services.collector.groups import GroupConfig, PostWindow, VkCredentials
from services.contracts.topics import TopicSettings
from services.runtime.settings import DatabaseSettings, KafkaSettings
from services.simulator.testing import RunningSimulator, make_simulator, running
from services.simulator.world import World
from tests.integration.collector import harness

GROUP = 100_500
MEMBERS = 100_000
POSTS = 50
BUCKETS = 16
BIG_POST_LIKES = 2_500
"""One post has more likers than a page holds (1000), so its list is paged too."""


def world(seed: int = 4) -> World:
    """Members spread over 1..50,000,000; likes, reposts and threads on every post."""
    rng = np.random.default_rng(seed)
    members = rng.choice(50_000_000, size=MEMBERS, replace=False) + 1
    w = World()
    w.add_group("vk", GROUP, members)
    now = int(time.time())
    for index in range(POSTS):
        post = w.add_post("vk", GROUP, date=now - 600 * (index + 1))
        likes = BIG_POST_LIKES if index == 7 else int(rng.integers(0, 400))
        for user in rng.choice(members, size=likes, replace=False).tolist():
            w.like("vk", GROUP, post, user)
        for user in rng.choice(members, size=index % 4, replace=False).tolist():
            w.repost("vk", GROUP, post, user)
        for _ in range(index % 3):
            root = w.comment("vk", GROUP, post, int(rng.choice(members)))
            w.comment("vk", GROUP, post, int(rng.choice(members)), reply_to=root)
    return w


def group(server: RunningSimulator, **overrides: Any) -> GroupConfig:
    """The group token's real 20 req/s: the run needs about 15 requests."""
    values: dict[str, Any] = {
        "network": "vk",
        "group_id": GROUP,
        "credentials": VkCredentials(access_token_env="SIM_VK_TOKEN", token_kind="group"),
        "base_url": server.vk_base_url,
        "window": PostWindow(last_posts=POSTS),
        "bucket_count": BUCKETS,
        "retry": RetrySettings(max_attempts=3, backoff_base_s=0.01, backoff_cap_s=0.05),
    }
    values.update(overrides)
    return GroupConfig.model_validate(values)


def _die_once_produced(env: harness.Env) -> Any:
    """A ``before_commit`` hook: wait until the open transaction's messages are on the
    broker (a read_uncommitted reader sees them all), then SIGKILL this process."""

    def hook(sent: int) -> None:
        deadline = time.monotonic() + harness.DEADLINE_S
        while time.monotonic() < deadline:
            if len(harness.read_to_end(env, committed=False)) >= sent:
                os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("the transaction's messages never reached the broker")

    return hook


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--topic-prefix", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--tx-prefix", required=True)
    args = parser.parse_args()
    from services.collector.settings import CollectorSettings
    from services.contracts.topics import SNAPSHOTS

    kafka_settings = KafkaSettings(bootstrap_servers=args.bootstrap)
    topics = TopicSettings(prefix=args.topic_prefix, partitions=3)
    env = harness.Env(
        CollectorSettings(
            kafka=kafka_settings,
            database=DatabaseSettings(database_url=SecretStr(args.database_url)),
            topics=topics,
            db_schema=args.schema,
            transactional_id_prefix=args.tx_prefix,
        ),
        topics.name(SNAPSHOTS),
        kafka_settings,
    )

    async def run() -> None:
        await harness.prepared(env)
        async with running(make_simulator(world())) as server:
            collector = harness.collector(env)
            collector.publisher.before_commit = _die_once_produced(env)
            await collector.run_group(group(server))

    asyncio.run(run())
    raise SystemExit("the run ended without being killed")


if __name__ == "__main__":
    main()
