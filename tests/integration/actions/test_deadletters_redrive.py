"""Redrive puts a letter back exactly where it was read, on a real broker."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import TopicPartition

from services.actions.deadletters import redrive
from services.contracts.models import DeadLetter
from services.runtime import kafka
from services.runtime.settings import KafkaSettings


def _letter(topic: str, partition: int) -> DeadLetter:
    return DeadLetter(
        original_topic=topic,
        original_partition=partition,
        original_offset=7,
        key=b"same-key",
        value=f"from {partition}".encode(),
        error_class="builtins.ValueError",
        reason="bad",
        consumer_group="g",
        failed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_redrive_writes_each_letter_back_to_its_own_partition(
    kafka_settings: KafkaSettings, make_topic: Callable[..., str]
) -> None:
    """The consumer's state for a key lives with its partition (the rules' member
    store, the detector's retirements, a member's command order): one key, two
    letters from two partitions, each must come back to its own."""
    topic = make_topic("redrive", partitions=6)
    assert redrive(kafka_settings, [_letter(topic, 1), _letter(topic, 4)]) == 2
    consumer = kafka.consumer(kafka_settings, f"{topic}.reader")
    consumer.assign([TopicPartition(topic, p, 0) for p in range(6)])
    found: dict[int, bytes] = {}
    deadline = time.monotonic() + 30
    try:
        while len(found) < 2 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                found[int(msg.partition() or 0)] = bytes(msg.value() or b"")
    finally:
        consumer.close()
    assert found == {1: b"from 1", 4: b"from 4"}
