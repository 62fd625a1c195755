"""The running monitor against the real broker: /metrics and /api/lag tell the same truth."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from services.lagmonitor.monitor import LagMonitor
from services.lagmonitor.settings import LagMonitorSettings
from services.lagmonitor.web import create_app
from services.runtime.settings import KafkaSettings
from tests.integration.lagmonitor.conftest import commit, produce


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_metrics_and_json_agree_with_the_commits(
    kafka_settings: KafkaSettings, make_topic: Callable[..., str], unique: Callable[[str], str]
) -> None:
    topic = make_topic("served", partitions=3)
    produce(kafka_settings, topic, {0: 10, 1: 4, 2: 6})
    group = unique("social-loyalty.served")
    replay = f"{group}.replay.offer-1"
    commit(kafka_settings, group, topic, {0: 5, 1: 0, 2: 6})
    commit(kafka_settings, replay, topic, {0: 1})
    settings = LagMonitorSettings(
        kafka=kafka_settings,
        group_prefixes=(group,),
        sample_interval_s=0.3,
        port=free_port(),
        history_db=False,  # test_history_store.py covers it
    )

    async def main() -> tuple[str, dict[str, object], int, int]:
        runner = web.AppRunner(create_app(LagMonitor(settings)))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", settings.port).start()
        base = f"http://127.0.0.1:{settings.port}"
        try:
            async with aiohttp.ClientSession() as http:
                deadline = time.monotonic() + 15
                while (await http.get(f"{base}/readyz")).status != 200:
                    assert time.monotonic() < deadline, "the monitor never became ready"
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)  # a few samples, so time lag has points to work with
                health = (await http.get(f"{base}/healthz")).status
                page = (await http.get(f"{base}/")).status
                metrics = await (await http.get(f"{base}/metrics")).text()
                document = await (await http.get(f"{base}/api/lag")).json()
        finally:
            await runner.cleanup()
        return metrics, document, health, page

    started = time.monotonic()
    metrics, document, health, page = asyncio.run(main())
    assert time.monotonic() - started < 20
    assert (health, page) == (200, 200)

    series = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return series[(name, tuple(sorted(labels.items())))]

    c = "local"
    for partition, lag in {0: 5, 1: 4, 2: 0}.items():
        labels = {
            "cluster_name": c,
            "consumergroup": group,
            "topic": topic,
            "partition": str(partition),
            "replay": "false",
        }
        assert value("kafka_consumergroup_lag", **labels) == lag
        assert value("kafka_consumergroup_status_code", **labels) == 0
    labels = {
        "cluster_name": c,
        "consumergroup": group,
        "topic": topic,
        "partition": "0",
        "replay": "false",
    }
    assert value("kafka_consumergroup_current_offset", **labels) == 5
    time_labels = {k: v for k, v in labels.items() if k != "consumergroup"} | {"group": group}
    assert value("kafka_consumergroup_group_lag_seconds", **time_labels) > 0
    at = {"cluster_name": c, "topic": topic, "partition": "0"}
    assert value("kafka_topic_partition_current_offset", **at) == 10
    assert value("kafka_topic_partition_oldest_offset", **at) == 0
    assert (
        value("kafka_consumergroup_members", cluster_name=c, consumergroup=group, replay="false")
        == 0
    )
    assert (
        value(
            "kafka_consumergroup_lag",
            cluster_name=c,
            consumergroup=replay,
            topic=topic,
            partition="0",
            replay="true",
        )
        == 9
    )
    assert 0 <= value("lagmonitor_sample_age_seconds", cluster_name=c) < 10
    assert value("lagmonitor_poll_duration_seconds_count") >= 2
    assert value("lagmonitor_poll_errors_total") == 0
    assert value("lagmonitor_kafka_up") == 1
    assert time.time() - value("lagmonitor_last_success_timestamp_seconds") < 10

    assert document["current"] is True
    assert document["kafka"]["reachable"] is True  # type: ignore[index]
    groups = {g["group"]: g for g in document["groups"]}  # type: ignore[attr-defined]
    assert set(groups) == {group, replay}
    assert groups[replay]["replay"] is True
    for p in groups[group]["partitions"]:
        labels = {
            "cluster_name": c,
            "consumergroup": group,
            "topic": topic,
            "partition": str(p["partition"]),
            "replay": "false",
        }
        assert p["lag"] == value("kafka_consumergroup_lag", **labels)
        assert p["committed_offset"] == value("kafka_consumergroup_current_offset", **labels)
        assert p["end_offset"] == value(
            "kafka_topic_partition_current_offset",
            cluster_name=c,
            topic=topic,
            partition=str(p["partition"]),
        )
        assert p["earliest_offset"] == 0
        if p["time_lag_s"] is not None:
            assert p["time_lag_s"] >= 0
    assert groups[group]["total_lag"] == 9
