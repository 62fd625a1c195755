"""Idle at the end of a transactional topic, a worker's stored offset is the end offset:
the transaction markers it stepped over are no lag (KAFKA-6607), for Kafka's committed
offsets, PostgreSQL's ``consumer_offsets`` and the lag monitor alike; a consumer
stopped one real record behind still is."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from services.lagmonitor.burrow import Status
from services.lagmonitor.core import MonitorState, evaluate
from services.lagmonitor.monitor import eval_config
from services.lagmonitor.sampler import Sampler
from services.lagmonitor.settings import LagMonitorSettings
from services.runtime import kafka
from services.runtime.settings import KafkaSettings
from tests.integration.runtime.test_stream import Topics, make_worker, read, running

pytestmark = pytest.mark.integration

PARTITIONS = 3


def produce_in_transactions(settings: KafkaSettings, topic: str) -> list[int]:
    """Three committed transactions of 6 records and one aborted one whose records
    reached the log; the offset of the last committed record per partition."""
    producer: Producer = kafka.producer(
        settings, "position-test", transactional_id=f"position-test-{uuid.uuid4().hex[:8]}"
    )
    producer.init_transactions(30)
    last = [-1] * PARTITIONS

    def delivered(error: object, message: object) -> None:
        assert error is None, error

    for batch in range(3):
        producer.begin_transaction()
        for n in range(6):
            key = f"k{n}".encode()
            producer.produce(
                topic, f"v{batch}-{n}".encode(), key, partition=n % PARTITIONS,
                on_delivery=delivered,
            )  # fmt: skip
        producer.commit_transaction(30)
    producer.begin_transaction()
    for partition in range(PARTITIONS):
        producer.produce(topic, b"aborted", b"k", partition=partition)
    assert producer.flush(30) == 0  # in the log, then aborted
    producer.abort_transaction(30)
    consumer = kafka.consumer(settings, f"t.last.{uuid.uuid4().hex[:8]}")
    try:
        for partition in range(PARTITIONS):
            consumer.assign([TopicPartition(topic, partition, 0)])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                messages = consumer.consume(100, 0.5)
                for message in messages:
                    if message.error() is None:
                        last[partition] = max(last[partition], int(message.offset() or 0))
                if not messages and last[partition] >= 0:
                    break
    finally:
        consumer.close()
    return last


def end_offsets(settings: KafkaSettings, topic: str) -> list[int]:
    consumer = kafka.consumer(settings, f"t.ends.{uuid.uuid4().hex[:8]}")
    try:
        return [
            consumer.get_watermark_offsets(TopicPartition(topic, p), 10, cached=False)[1]
            for p in range(PARTITIONS)
        ]
    finally:
        consumer.close()


def committed(settings: KafkaSettings, group: str, topic: str) -> list[int]:
    consumer = kafka.consumer(settings, group)
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], 10)
        return [tp.offset for tp in tps]
    finally:
        consumer.close()


@pytest.fixture
def stalled_member(kafka_settings: KafkaSettings) -> Iterator[Callable[[str, str], Consumer]]:
    members: list[Consumer] = []

    def join(group: str, topic: str) -> Consumer:
        member = kafka.consumer(kafka_settings, group)
        member.subscribe([topic])
        deadline = time.monotonic() + 30
        while not member.assignment():
            assert time.monotonic() < deadline, "the member got no partitions"
            member.consume(1, 0.2)
        members.append(member)
        return member

    yield join
    for member in members:
        member.close()


def test_idle_at_the_end_of_a_transactional_topic_is_lag_zero_and_one_record_behind_is_not(
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    unique: Callable[[str], str],
    stalled_member: Callable[[str, str], Consumer],
) -> None:
    topics = Topics(make_topic)
    last = produce_in_transactions(kafka_settings, topics.source)
    ends = end_offsets(kafka_settings, topics.source)
    assert all(end > offset + 1 for end, offset in zip(ends, last, strict=True)), (ends, last)
    group = unique("social-loyalty.position")
    behind = unique("social-loyalty.behind")
    worker = make_worker(kafka_settings, topics, group)
    watch = LagMonitorSettings(
        kafka=kafka_settings, group_prefixes=(group, behind), window_size=3, sample_interval_s=5
    )
    sampler, config, state = Sampler(watch), eval_config(watch), MonitorState()
    with running(worker):
        assert len(read(kafka_settings, topics.sink, 18)) == 18
        deadline = time.monotonic() + 15
        while committed(kafka_settings, group, topics.source) != ends:
            assert time.monotonic() < deadline, (committed(kafka_settings, group, topics.source),
                                                 ends)  # fmt: skip
            time.sleep(0.5)
        # a live member that committed up to its last real record but not past it
        member = stalled_member(behind, topics.source)
        offsets = [TopicPartition(topics.source, p, last[p]) for p in range(PARTITIONS)]
        member.commit(offsets=offsets, asynchronous=False)
        statuses: dict[str, list[Status]] = {group: [], behind: []}
        lags: dict[str, int] = {}
        for _ in range(3):
            state, snapshot = evaluate(state, sampler.sample(), config)
            for lag in snapshot.groups:
                if lag.group in statuses:
                    statuses[lag.group].append(lag.status)
                    lags[lag.group] = lag.total_lag
    assert statuses[group] == [Status.OK] * 3, statuses
    assert lags[group] == 0
    assert lags[behind] == sum(end - offset for end, offset in zip(ends, last, strict=True))
    assert statuses[behind][-1] is Status.STALL, statuses
