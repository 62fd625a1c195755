"""Lag monitor benchmark: what one sampling round costs with 50 groups x 12 partitions.

It creates a fresh 12-partition topic, writes ``MESSAGES_PER_PARTITION`` messages to
each partition, and gives ``BENCH_LAG_GROUPS`` (default 50) consumer groups a
committed offset on every partition (``alter_consumer_group_offsets``, each group
at a different offset, so every lag differs). Then it times the monitor's own code
against the live broker, several rounds each:

* a whole round, ``LagMonitor.poll_once()``: the Kafka sample (list groups, describe
  them, their committed offsets, end offsets and last stable offsets), Burrow's
  evaluation, time-lag tables, history and live listeners, with default settings;
* the Kafka sample alone (``Sampler.sample()``);
* rendering ``/metrics`` from the latest snapshot (what a Prometheus scrape costs).

The cluster is shared, so the group listing sees everyone's groups; the monitor
watches only this run's prefix. The first round (connections, metadata) is shown
apart. Every round is checked to see all groups and partitions with the expected
lag. Topic and groups are deleted at the end. Run: ``./run bench lagmonitor``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Callable

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from prometheus_client import generate_latest

from services.lagmonitor.core import Snapshot
from services.lagmonitor.monitor import LagMonitor
from services.lagmonitor.sampler import Sampler
from services.lagmonitor.settings import LagMonitorSettings
from services.runtime import kafka
from services.runtime.settings import KafkaSettings

GROUPS = int(os.environ.get("BENCH_LAG_GROUPS", "50"))
PARTITIONS = 12
MESSAGES_PER_PARTITION = 100
ROUNDS = int(os.environ.get("BENCH_LAG_ROUNDS", "7"))
TIMEOUT_S = 30.0


def _committed(group: int, partition: int) -> int:
    return (group * 7 + partition) % MESSAGES_PER_PARTITION


def _setup(admin: AdminClient, settings: KafkaSettings, topic: str, groups: list[str]) -> None:
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(TIMEOUT_S)
    producer = kafka.producer(settings, "bench-lag", extra={"linger.ms": 20})
    for partition in range(PARTITIONS):
        for n in range(MESSAGES_PER_PARTITION):
            producer.produce(topic, f"m{n}".encode(), partition=partition)
    if producer.flush(TIMEOUT_S) != 0:
        raise RuntimeError(f"could not fill {topic}")
    futures = [
        admin.alter_consumer_group_offsets(
            [
                ConsumerGroupTopicPartitions(
                    group,
                    [TopicPartition(topic, p, _committed(g, p)) for p in range(PARTITIONS)],
                )
            ],
            request_timeout=TIMEOUT_S,
        )[group]
        for g, group in enumerate(groups)
    ]
    for future in futures:
        future.result(TIMEOUT_S)


def _check(snapshot: Snapshot, topic: str, groups: list[str]) -> None:
    """A round that missed a group or partition would be cheap for the wrong reason."""
    seen = {g.group: g for g in snapshot.groups}
    for g, name in enumerate(groups):
        found = seen.get(name)
        lags = {p.partition: p.lag for p in (found.partitions if found else ()) if p.topic == topic}
        want = {p: MESSAGES_PER_PARTITION - _committed(g, p) for p in range(PARTITIONS)}
        if lags != want:
            raise RuntimeError(f"round saw {name} with lags {lags}, expected {want}")


def _timed(fn: Callable[[], object], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def _row(stage: str, times: list[float]) -> dict[str, object]:
    return {
        "stage": stage,
        "rounds": len(times),
        "min ms": f"{min(times) * 1000:.0f}",
        "median ms": f"{statistics.median(times) * 1000:.0f}",
        "max ms": f"{max(times) * 1000:.0f}",
    }


def run() -> list[dict[str, object]]:
    run_id = uuid.uuid4().hex[:8]
    prefix = f"bench-lag.{run_id}."
    topic = f"{prefix}topic"
    groups = [f"{prefix}g{g:02d}" for g in range(GROUPS)]
    kafka_settings = KafkaSettings()
    admin = kafka.admin(kafka_settings, "bench-lag")
    settings = LagMonitorSettings(kafka=kafka_settings, group_prefixes=(prefix,))
    try:
        _setup(admin, kafka_settings, topic, groups)
        sampler = Sampler(settings)
        monitor = LagMonitor(settings, sampler)

        def round_() -> None:
            snapshot = asyncio.run(monitor.poll_once())
            if snapshot is None:
                raise RuntimeError(f"sample failed: {monitor.last_error}")
            _check(snapshot, topic, groups)

        first = _timed(round_, 1)
        rounds = _timed(round_, ROUNDS)
        samples = _timed(sampler.sample, ROUNDS)
        scrape = _timed(lambda: generate_latest(monitor.metrics.registry), ROUNDS)
        series = generate_latest(monitor.metrics.registry).count(b"\nkafka_consumergroup_lag{")
    finally:
        futures = list(admin.delete_topics([topic]).values())
        futures += list(admin.delete_consumer_groups(groups, request_timeout=TIMEOUT_S).values())
        for future in futures:
            try:
                future.result(TIMEOUT_S)
            except Exception as exc:  # best effort: report, do not hide the figures
                print(f"cleanup: {exc}")
    where = f"{GROUPS} groups x {PARTITIONS} partitions"
    return [
        _row(f"first round, cold ({where})", first),
        _row(f"sampling round, poll_once ({where})", rounds),
        _row("  of which the Kafka sample (Sampler.sample)", samples),
        _row(f"render /metrics ({series} lag series)", scrape),
    ]
