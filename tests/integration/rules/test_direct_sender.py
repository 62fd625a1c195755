"""The worker's librdkafka sender puts every key in the partition aiokafka (Faust) would.

The by-member topic's partition decides which members-table partition holds a
member's state; had the sender partitioned differently from the Faust producer it
replaced, members would lose their state on upgrade.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

from services.rules.app import DirectSender
from services.rules.settings import RulesSettings
from services.runtime import kafka
from services.runtime.settings import KafkaSettings

PARTITIONS = 6


def test_keys_land_in_the_murmur2_partition(
    kafka_settings: KafkaSettings, make_topic: Callable[..., str], unique: Callable[[str], str]
) -> None:
    topic = make_topic("direct", partitions=PARTITIONS)
    sender = DirectSender(RulesSettings(kafka=kafka_settings))
    keys = [f"member-{n}".encode() for n in range(200)]
    for key in keys:
        sender.send(topic, key, b"x")
    asyncio.run(sender.flush())

    consumer = kafka.consumer(kafka_settings, unique("direct-reader"))
    consumer.subscribe([topic])
    seen: dict[bytes, int] = {}
    deadline = time.monotonic() + 60
    try:
        while len(seen) < len(keys):
            assert time.monotonic() < deadline, f"only {len(seen)} of {len(keys)} read"
            for msg in consumer.consume(500, 0.5):
                if msg.error() is None:
                    seen[bytes(msg.key() or b"")] = int(msg.partition() or 0)
    finally:
        consumer.close()
    expected = {key: (murmur2(key) & 0x7FFFFFFF) % PARTITIONS for key in keys}
    assert seen == expected
