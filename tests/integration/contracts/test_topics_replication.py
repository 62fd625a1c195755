"""``topics ensure`` on a cluster of three brokers: three replicas and min.insync.replicas=2
on every catalog topic, and a topic with fewer replicas reported with a reassignment
plan that Kafka's own tool executes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from services.contracts.topics import REASSIGN_TOOL, TopicSettings, catalog
from services.ops.localcluster import LocalCluster

REPO = Path(__file__).resolve().parents[3]


def _cli(cluster: LocalCluster, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "topics", "ensure", *args],
        cwd=REPO,
        env={**env, **cluster.env, "TOPIC_PREFIX": prefix},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _replicas(admin: AdminClient, names: list[str]) -> dict[str, set[int]]:
    topics = admin.list_topics(timeout=30).topics
    return {name: {len(p.replicas) for p in topics[name].partitions.values()} for name in names}


def test_ensure_creates_every_topic_with_three_replicas_and_two_in_sync(
    three_broker_cluster: LocalCluster,
) -> None:
    prefix = f"t.rf.{uuid.uuid4().hex[:8]}."
    done = _cli(three_broker_cluster, prefix)
    assert done.returncode == 0, done.stdout + done.stderr
    admin = AdminClient(three_broker_cluster.admin_config)
    names = [spec.name for spec in catalog(TopicSettings(prefix=prefix))]
    assert _replicas(admin, names) == {name: {3} for name in names}
    described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names])
    insync = {
        resource.name: future.result(30)["min.insync.replicas"].value
        for resource, future in described.items()
    }
    assert insync == dict.fromkeys(names, "2")


def test_an_under_replicated_topic_is_reported_and_the_printed_plan_mends_it(
    three_broker_cluster: LocalCluster, tmp_path: Path
) -> None:
    prefix = f"t.rf.{uuid.uuid4().hex[:8]}."
    events = f"{prefix}social.events"
    admin = AdminClient(three_broker_cluster.admin_config)
    admin.create_topics([NewTopic(events, 6, 1, config={"retention.ms": "-1"})])[events].result(30)
    plan_file = tmp_path / "reassign.json"
    done = _cli(three_broker_cluster, prefix, "--reassignment-json", str(plan_file))
    assert done.returncode == 1, done.stdout + done.stderr  # drift remains until reassigned
    assert f"{events}: 1 replica(s) on some partitions, the catalog says 3" in done.stdout
    assert REASSIGN_TOOL in done.stdout
    moves = json.loads(plan_file.read_text())["partitions"]
    assert sorted(m["partition"] for m in moves) == list(range(6))
    assert all(len(set(m["replicas"])) == 3 for m in moves)
    # The command the report names, on this cluster.
    tool = [
        "kafka-tool",
        REASSIGN_TOOL,
        "--bootstrap-server",
        three_broker_cluster.bootstrap,
        "--reassignment-json-file",
        str(plan_file),
    ]
    three_broker_cluster.stack(*tool, "--execute")
    deadline = time.monotonic() + 120
    while _replicas(admin, [events])[events] != {3} and time.monotonic() < deadline:
        time.sleep(1)
    assert _replicas(admin, [events])[events] == {3}
    # min.insync.replicas was set by the first ensure (configs are drift it mends with --fix).
    again = _cli(three_broker_cluster, prefix, "--fix")
    assert again.returncode == 0, again.stdout + again.stderr
