"""Real producers, real commits and real group members for the lag monitor's tests."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from services.runtime import kafka
from services.runtime.settings import KafkaSettings

REPO = Path(__file__).resolve().parents[3]


def produce(settings: KafkaSettings, topic: str, counts: dict[int, int]) -> None:
    """Write ``counts[p]`` messages to partition ``p`` and wait until they are acknowledged."""
    producer = kafka.producer(settings, "lagmonitor-test")
    failures: list[object] = []
    for partition, count in counts.items():
        for i in range(count):
            producer.produce(
                topic,
                value=f"m-{partition}-{i}".encode(),
                partition=partition,
                on_delivery=lambda err, _msg: failures.append(err) if err else None,
            )
    assert producer.flush(30) == 0
    assert not failures, failures


def commit(settings: KafkaSettings, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit offsets for a group without joining it, as a reset tool would."""
    consumer = kafka.consumer(settings, group)
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


@dataclass
class Member:
    """A live member of a group: it holds its partitions and commits what it is told."""

    consumer: Consumer
    topic: str

    def commit(self, offsets: dict[int, int]) -> None:
        self.consumer.commit(
            offsets=[TopicPartition(self.topic, p, o) for p, o in offsets.items()],
            asynchronous=False,
        )

    def heartbeat(self) -> None:
        self.consumer.poll(0)


@pytest.fixture
def join_group(kafka_settings: KafkaSettings) -> Iterator[Callable[[str, str, int], Member]]:
    members: list[Consumer] = []

    def join(group: str, topic: str, partitions: int) -> Member:
        consumer = kafka.consumer(
            kafka_settings,
            group,
            # Stay still: do not fetch, so the position is whatever the test commits.
            extra={"fetch.wait.max.ms": 10, "session.timeout.ms": 10_000},
        )
        members.append(consumer)
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while len(consumer.assignment()) < partitions:
            assert time.monotonic() < deadline, "the member never got its partitions"
            consumer.poll(0.1)
        consumer.pause(consumer.assignment())
        return Member(consumer, topic)

    yield join
    for consumer in members:
        consumer.close()


def kafka_tool_describe(bootstrap: str, *groups: str) -> dict[tuple[str, str, int], dict[str, str]]:
    """Kafka's own ``kafka-consumer-groups --describe``, parsed.

    Rows are keyed by (group, topic, partition) and map column name to cell."""
    args = [sys.executable, str(REPO / "deploy" / "localstack.py"), "kafka-tool"]
    args += ["ConsumerGroupCommand", "--bootstrap-server", bootstrap, "--describe"]
    for group in groups:
        args += ["--group", group]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows: dict[tuple[str, str, int], dict[str, str]] = {}
    header: list[str] | None = None
    for line in done.stdout.splitlines():
        cells = line.split()
        if cells[:3] == ["GROUP", "TOPIC", "PARTITION"]:
            header = cells
        elif header and len(cells) >= 6 and cells[0] in groups:
            row = dict(zip(header, cells, strict=False))
            rows[(row["GROUP"], row["TOPIC"], int(row["PARTITION"]))] = row
    return rows
