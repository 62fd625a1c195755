"""Collection runs against the simulator, a real broker and a real PostgreSQL.

What a reader of ``social.snapshots`` with ``read_committed`` sees is the whole
run or nothing; the run history says what happened and why.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from services.collector.api import RetrySettings
from services.collector.groups import GroupConfig, PostWindow, VkCredentials
from services.collector.run import RunSummary
from services.collector.scheduler import Scheduler
from services.collector.store import GroupBusyError, RunStore, connect, group_lock
from services.contracts.models import (
    MembersChunk,
    PostLikesChunk,
    PostRepostsChunk,
    RunManifest,
    SnapshotChunk,
)
from services.simulator.testing import RunningSimulator, make_simulator, running
from services.simulator.world import World
from tests.integration.collector.harness import (
    DEADLINE_S,
    Env,
    collector,
    prepared,
    read_until_manifest,
    run_row,
)

GROUP = 4242
MEMBERS = range(1000, 3500)


def world() -> tuple[World, list[int]]:
    now = int(time.time())
    w = World()
    w.add_group("vk", GROUP, MEMBERS)
    posts = []
    for index in range(3):
        post = w.add_post("vk", GROUP, date=now - 3600 * (index + 1))
        for user in range(1000 + index, 1300, 3):
            w.like("vk", GROUP, post, user)
        w.repost("vk", GROUP, post, 1001 + index)
        w.comment("vk", GROUP, post, 1002 + index)
        posts.append(post)
    return w, sorted(posts)


def group(server: RunningSimulator, **overrides: Any) -> GroupConfig:
    values: dict[str, Any] = {
        "network": "vk",
        "group_id": GROUP,
        "credentials": VkCredentials(access_token_env="SIM_VK_TOKEN", token_kind="group"),
        "base_url": server.vk_base_url,
        "window": PostWindow(last_posts=10),
        "bucket_count": 8,
        "retry": RetrySettings(max_attempts=3, backoff_base_s=0.01, backoff_cap_s=0.05),
    }
    values.update(overrides)
    return GroupConfig.model_validate(values)


def test_a_run_lands_whole_in_one_transaction_and_the_next_keeps_the_baseline(env: Env) -> None:
    w, posts = world()

    async def main() -> tuple[RunSummary, RunSummary, dict[str, Any]]:
        await prepared(env)
        async with running(make_simulator(w)) as server:
            c = collector(env)
            first = await c.run_group(group(server))
            w.like("vk", GROUP, posts[0], 3001)
            second = await c.run_group(group(server))
            c.publisher.close()
        return first, second, await run_row(env, second.run_id)

    first, second, row = asyncio.run(main())
    assert first.status == "succeeded", first.reason
    assert second.status == "succeeded", second.reason
    assert first.baseline and not second.baseline
    chunks = read_until_manifest(env, second.run_id)
    by_run: dict[str, list[SnapshotChunk]] = {}
    for chunk in chunks:
        by_run.setdefault(chunk.run_id, []).append(chunk)
    assert set(by_run) == {first.run_id, second.run_id}
    run = by_run[second.run_id]
    # The manifest, last, in every partition: each partition's detector learns there
    # which of its posts left the window.
    manifests = [c for c in run if isinstance(c, RunManifest)]
    assert len(manifests) == env.settings.topics.partitions
    assert all(m == manifests[0] for m in manifests)
    manifest = manifests[0]
    assert manifest.chunk_count == len(run) - len(manifests) == 8 + 3 * 3
    assert manifest.post_ids == tuple(posts)
    assert manifest.baseline_at == by_run[first.run_id][0].snapshot_at
    members = sorted((c for c in run if isinstance(c, MembersChunk)), key=lambda c: c.bucket)
    assert [c.bucket for c in members] == list(range(8))
    assert sorted(i for c in members for i in c.member_ids) == list(MEMBERS)
    likes = {c.post_id: c.user_ids for c in run if isinstance(c, PostLikesChunk)}
    assert 3001 in likes[posts[0]]
    reposts = {c.post_id: c.user_ids for c in run if isinstance(c, PostRepostsChunk)}
    assert reposts[posts[1]] == (1002,)
    # A snapshot is dated when its reads were done (every change it saw happened
    # before that), not when the run began; the row records the same time.
    assert manifest.snapshot_at == row["snapshot_at"]
    assert manifest.snapshot_at > row["started_at"]
    assert manifest.snapshot_at <= row["ended_at"]
    assert all(c.snapshot_at == manifest.snapshot_at for c in run)
    assert row["status"] == "succeeded"
    assert row["messages_published"] == len(run)
    assert row["members"] == len(MEMBERS)
    assert row["api_requests"] >= 1
    assert row["objects_read"] >= len(MEMBERS)
    assert row["baseline_at"] == manifest.baseline_at


def test_a_captcha_mid_run_publishes_nothing_and_records_why(env: Env) -> None:
    w, _posts = world()

    async def main() -> tuple[RunSummary, RunSummary, dict[str, Any]]:
        await prepared(env)
        async with running(make_simulator(w)) as server:
            async with httpx.AsyncClient() as http:
                fault = {"network": "vk", "method": "likes.getList", "code": 14, "count": 1}
                answer = await http.post(f"{server.base_url}/_control/faults", json=fault)
                answer.raise_for_status()
            c = collector(env)
            failed = await c.run_group(group(server))
            ok = await c.run_group(group(server))
            c.publisher.close()
        return failed, ok, await run_row(env, failed.run_id)

    failed, ok, row = asyncio.run(main())
    assert failed.status == "aborted"
    assert ok.status == "succeeded", ok.reason
    assert row["status"] == "aborted"
    assert "error 14" in row["reason"] and "captcha" in row["reason"]
    assert row["errors_by_code"] == {"14": 1}
    assert row["messages_published"] == 0
    seen = read_until_manifest(env, ok.run_id)
    assert {c.run_id for c in seen} == {ok.run_id}
    assert ok.baseline, "the aborted run must not become the baseline"


def test_a_failure_inside_the_transaction_aborts_it(env: Env) -> None:
    """Buckets are produced, then a likes chunk is over the size limit: the transaction is
    aborted and a read_committed reader sees nothing of that run."""
    w, posts = world()
    for user in range(5000, 12000):
        w.like("vk", GROUP, posts[-1], user)

    async def main() -> tuple[RunSummary, RunSummary, dict[str, Any]]:
        await prepared(env)
        async with running(make_simulator(w)) as server:
            small = collector(env, max_message_bytes=10_000)
            failed = await small.run_group(group(server))
            small.publisher.close()
            ok_collector = collector(env)
            ok = await ok_collector.run_group(group(server))
            ok_collector.publisher.close()
        return failed, ok, await run_row(env, failed.run_id)

    failed, ok, row = asyncio.run(main())
    assert failed.status == "failed"
    assert row["status"] == "failed"
    assert "over the 10000-byte limit" in row["reason"]
    assert ok.status == "succeeded", ok.reason
    # Whether the failed run's first buckets reached the broker before the abort depends on
    # librdkafka's linger timer (an abort purges what is still queued); either way a
    # read_committed reader must see only the good run.
    committed = read_until_manifest(env, ok.run_id)
    assert {c.run_id for c in committed} == {ok.run_id}


def test_overlapping_runs_of_one_group_never_both_run(env: Env) -> None:
    w, _posts = world()

    async def main() -> tuple[list[Any], Exception | None, list[dict[str, Any]]]:
        await prepared(env)
        async with running(make_simulator(w)) as server:
            slow = group(server, requests_per_second=2)
            c = collector(env)
            both = await asyncio.gather(
                c.run_group(slow), c.run_group(slow), return_exceptions=True
            )
            elsewhere: Exception | None = None
            async with group_lock(env.settings.database, env.settings.db_schema, "vk", GROUP):
                try:
                    await collector(env).run_group(slow)
                except GroupBusyError as exc:
                    elsewhere = exc
            c.publisher.close()
        conn = await connect(env.settings.database)
        rows = await RunStore(conn, env.settings.db_schema).recent(10)
        await conn.close()
        return list(both), elsewhere, rows

    both, elsewhere, rows = asyncio.run(main())
    busy = [r for r in both if isinstance(r, GroupBusyError)]
    done = [r for r in both if isinstance(r, RunSummary)]
    assert len(busy) == 1 and len(done) == 1, both
    assert done[0].status == "succeeded"
    assert isinstance(elsewhere, GroupBusyError)
    assert [r["run_id"] for r in rows] == [done[0].run_id]


def test_the_scheduler_keeps_going_when_one_group_fails(env: Env) -> None:
    w, _posts = world()
    w.add_group("vk", 777, [1, 2, 3])

    async def main() -> list[dict[str, Any]]:
        await prepared(env)
        async with running(make_simulator(w)) as server:
            good = group(server, interval_s=1)
            bad = group(
                server,
                group_id=777,
                interval_s=1,
                credentials=VkCredentials(access_token_env="UNSET_TOKEN"),
            )
            c = collector(env)
            stop = asyncio.Event()
            task = asyncio.create_task(Scheduler(c.run_group, [good, bad]).run(stop, grace_s=30))
            conn = await connect(env.settings.database)
            store = RunStore(conn, env.settings.db_schema)
            deadline = time.monotonic() + DEADLINE_S
            rows: list[dict[str, Any]] = []
            while time.monotonic() < deadline:
                rows = await store.recent(50)
                ok = [r for r in rows if r["group_id"] == GROUP and r["status"] == "succeeded"]
                failed = [r for r in rows if r["group_id"] == 777 and r["status"] == "failed"]
                if len(ok) >= 2 and len(failed) >= 2:
                    break
                await asyncio.sleep(0.2)
            stop.set()
            await task
            await conn.close()
            c.publisher.close()
        return rows

    rows = asyncio.run(main())
    bad_rows = [r for r in rows if r["group_id"] == 777]
    assert len([r for r in rows if r["group_id"] == GROUP and r["status"] == "succeeded"]) >= 2
    assert len(bad_rows) >= 2
    assert all("UNSET_TOKEN is not set" in r["reason"] for r in bad_rows)
    assert not [r for r in rows if r["status"] == "running"]
