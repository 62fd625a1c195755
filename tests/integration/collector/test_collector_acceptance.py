"""Issue 4's acceptance: a 100,000-member, 50-post group against the simulator and a
real broker lands as ONE committed transaction; a run that fails half-way (a page the
simulator refuses, or the process killed inside its transaction) leaves nothing that
a ``read_committed`` reader can see."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

from services.collector.run import RunSummary
from services.contracts.models import (
    MembersChunk,
    PostCommentsChunk,
    PostLikesChunk,
    PostRepostsChunk,
    RunManifest,
    SnapshotChunk,
)
from services.simulator.enforcement import Fault
from services.simulator.testing import make_simulator, running
from services.simulator.world import World
from tests.integration.collector import scale
from tests.integration.collector.harness import (
    DEADLINE_S,
    Env,
    collector,
    prepared,
    read_to_end,
    read_until_manifest,
    run_row,
)


def expected_facets(w: World) -> dict[int, tuple[list[int], list[int], list[tuple[int, int]]]]:
    """post id -> (likers, reposters, (comment id, author)) as the world holds them."""
    group = w.group("vk", scale.GROUP)
    return {
        post.id: (
            sorted(post.likers),
            sorted(post.reposters),
            sorted((c.id, c.author_id) for c in post.live_comments()),
        )
        for post in group.live_posts()
    }


def test_a_100k_member_run_is_invisible_until_its_one_commit_then_wholly_visible(
    env: Env,
) -> None:
    w = scale.world()
    in_flight: dict[str, list[SnapshotChunk]] = {}

    def look_before_commit(sent: int) -> None:
        """Everything is produced: the log holds it all, a read_committed reader sees none."""
        uncommitted: list[SnapshotChunk] = []
        deadline = time.monotonic() + DEADLINE_S
        while len(uncommitted) < sent and time.monotonic() < deadline:
            uncommitted = read_to_end(env, committed=False)
        in_flight["uncommitted"] = uncommitted
        in_flight["committed"] = read_to_end(env, committed=True)

    async def main() -> RunSummary:
        await prepared(env)
        async with running(make_simulator(w)) as server:
            c = collector(env)
            c.publisher.before_commit = look_before_commit
            summary = await c.run_group(scale.group(server))
            c.publisher.close()
        return summary

    summary = asyncio.run(main())
    assert summary.status == "succeeded", summary.reason
    assert in_flight["committed"] == []
    run = read_until_manifest(env, summary.run_id)
    assert len(in_flight["uncommitted"]) == len(run) == summary.messages
    assert {c.run_id for c in run} == {summary.run_id}

    # The manifest, last, in every partition: each partition's detector learns there
    # which of its posts left the window.
    manifests = [c for c in run if isinstance(c, RunManifest)]
    assert len(manifests) == env.settings.topics.partitions
    assert all(m == manifests[0] for m in manifests)
    manifest = manifests[0]
    assert manifest.chunk_count == len(run) - len(manifests) == scale.BUCKETS + scale.POSTS * 3
    assert manifest.skipped == ()
    facets = expected_facets(w)
    assert sorted(manifest.post_ids) == sorted(facets)

    buckets = sorted((c for c in run if isinstance(c, MembersChunk)), key=lambda c: c.bucket)
    assert [c.bucket for c in buckets] == list(range(scale.BUCKETS))
    member_ids = [i for c in buckets for i in c.member_ids]
    assert sorted(member_ids) == w.group("vk", scale.GROUP).members.tolist()
    assert len(member_ids) == scale.MEMBERS

    likes = {c.post_id: list(c.user_ids) for c in run if isinstance(c, PostLikesChunk)}
    reposts = {c.post_id: list(c.user_ids) for c in run if isinstance(c, PostRepostsChunk)}
    comments = {
        c.post_id: sorted((int(x.comment_id), x.author_id) for x in c.comments)
        for c in run
        if isinstance(c, PostCommentsChunk)
    }
    assert {p: (likes[p], reposts[p], comments[p]) for p in facets} == facets
    assert max(len(v) for v in likes.values()) == scale.BIG_POST_LIKES


def test_runs_failing_a_page_mid_read_publish_nothing(env: Env) -> None:
    """The 41st member page and, in another run, the 31st likes page are refused; a clean
    run follows. Only the clean run is ever in the log, committed or not."""
    w = scale.world()

    async def main() -> tuple[list[RunSummary], list[dict[str, Any]]]:
        await prepared(env)
        async with running(make_simulator(w)) as server:
            faults = server.simulator.faults
            c = collector(env)
            faults.add(Fault("vk", "groups.getMembers", code=10, remaining=1000, after=40))
            members_failed = await c.run_group(scale.group(server))
            faults.clear()
            faults.add(Fault("vk", "likes.getList", code=14, after=30))
            likes_failed = await c.run_group(scale.group(server))
            faults.clear()
            ok = await c.run_group(scale.group(server))
            c.publisher.close()
        rows = [await run_row(env, s.run_id) for s in (members_failed, likes_failed)]
        return [members_failed, likes_failed, ok], rows

    (members_failed, likes_failed, ok), rows = asyncio.run(main())
    assert members_failed.status == "aborted" and likes_failed.status == "aborted"
    assert "error 10" in (members_failed.reason or ""), members_failed.reason
    assert "captcha" in (likes_failed.reason or ""), likes_failed.reason
    assert [r["messages_published"] for r in rows] == [0, 0]
    assert ok.status == "succeeded", ok.reason
    assert ok.baseline, "a failed run must not become the baseline"
    committed = read_until_manifest(env, ok.run_id)
    assert {c.run_id for c in committed} == {ok.run_id}
    assert {c.run_id for c in read_to_end(env, committed=False)} == {ok.run_id}


def test_a_collector_killed_inside_its_transaction_leaves_nothing_visible(env: Env) -> None:
    """A child process produces the whole run and is SIGKILLed before its commit. While
    its transaction hangs open nothing of it is readable; the next run (same
    transactional id) aborts it at once and is the only run readers ever see."""
    settings = env.settings
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.collector.scale",
            "--bootstrap",
            env.kafka.bootstrap_servers,
            "--database-url",
            settings.database.database_url.get_secret_value(),
            "--topic-prefix",
            settings.topics.prefix,
            "--schema",
            settings.db_schema,
            "--tx-prefix",
            settings.transactional_id_prefix,
        ],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S * 2,
        check=False,
    )
    assert child.returncode == -9, child.stderr[-2000:]
    killed = read_to_end(env, committed=False)
    # The chunks, then the manifest once per partition.
    assert len(killed) == scale.BUCKETS + scale.POSTS * 3 + env.settings.topics.partitions
    assert read_to_end(env, committed=True) == []

    async def main() -> RunSummary:
        async with running(make_simulator(scale.world())) as server:
            c = collector(env)
            summary = await c.run_group(scale.group(server))
            c.publisher.close()
        return summary

    ok = asyncio.run(main())
    assert ok.status == "succeeded", ok.reason
    committed = read_until_manifest(env, ok.run_id)
    assert {c.run_id for c in committed} == {ok.run_id}
    assert {c.run_id for c in killed}.isdisjoint({ok.run_id})
