"""The stream runtime against a real broker: transactions, state restore, dead letters,
bounded jobs. A tiny counting service stands in for rules: it keeps a count per key and
emits ``key=count`` for every record, so a lost or repeated record shows in the output."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import pytest
from confluent_kafka import Message

from services.contracts import models as m
from services.contracts.codec import SingleObjectCodec
from services.runtime import kafka
from services.runtime.settings import KafkaSettings
from services.runtime.stream import (
    BoundedStreamWorker,
    Output,
    Stores,
    StoreSpec,
    StreamConfig,
    StreamWorker,
)

pytestmark = pytest.mark.integration

PARTITIONS = 3


class Topics:
    def __init__(self, make_topic: Callable[..., str]) -> None:
        self.source = make_topic("stream-in", partitions=PARTITIONS)
        self.sink = make_topic("stream-out", partitions=PARTITIONS)
        self.changelog = make_topic(
            "stream-changelog", partitions=PARTITIONS, config={"cleanup.policy": "compact"}
        )
        self.deadletter = make_topic("stream-dlq", partitions=1)


def counting(topics: Topics) -> Callable[[Message, Stores], Iterable[Output]]:
    def handle(message: Message, stores: Stores) -> Iterable[Output]:
        value = message.value() or b""
        if value.startswith(b"poison"):
            raise ValueError(f"refusing {value!r}")
        key = message.key() or b""
        counts = stores["counts"]
        count = int(counts.get(key, 0)) + 1
        counts.set(key, count)
        return (Output(topics.sink, key, key + b"=" + str(count).encode()),)

    return handle


def make_worker(
    settings: KafkaSettings, topics: Topics, group: str, **extra: object
) -> StreamWorker:
    return StreamWorker(
        settings,
        StreamConfig(group=group, commit_interval_s=0.1, session_timeout_ms=6000),
        handlers={topics.source: counting(topics)},
        stores=[
            StoreSpec("counts", topics.source, topics.changelog, lambda v: str(v).encode(), int)
        ],
        codec=SingleObjectCodec(),
        deadletter_topic=topics.deadletter,
        **extra,  # type: ignore[arg-type]
    )


@contextmanager
def running(worker: StreamWorker) -> Iterator[StreamWorker]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(30)
        assert not thread.is_alive(), "worker did not stop"
    assert not errors, errors


def produce(settings: KafkaSettings, topic: str, records: Iterable[tuple[bytes, bytes]]) -> None:
    producer = kafka.producer(settings, "stream-test")
    for key, value in records:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


def read(settings: KafkaSettings, topic: str, count: int, deadline_s: float = 60) -> list[Message]:
    consumer = kafka.consumer(settings, f"t.read.{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    got: list[Message] = []
    deadline = time.monotonic() + deadline_s
    try:
        while len(got) < count:
            assert time.monotonic() < deadline, f"only {len(got)} of {count} records on {topic}"
            got += [msg for msg in consumer.consume(500, 0.5) if msg.error() is None]
        got += [msg for msg in consumer.consume(500, 1.0) if msg.error() is None]  # no extras
    finally:
        consumer.close()
    return got


def test_state_survives_a_restart_and_every_record_counts_once(
    kafka_settings: KafkaSettings, make_topic: Callable[..., str], unique: Callable[[str], str]
) -> None:
    topics = Topics(make_topic)
    group = unique("stream")
    keys = [f"k{i}".encode() for i in range(12)]
    produce(kafka_settings, topics.source, [(k, b"x") for k in keys * 5])
    with running(make_worker(kafka_settings, topics, group)):
        read(kafka_settings, topics.sink, 60)
    # A new process of the same worker: the counts come back from the changelog.
    produce(kafka_settings, topics.source, [(k, b"x") for k in keys * 3])
    with running(make_worker(kafka_settings, topics, group)) as worker:
        outputs = read(kafka_settings, topics.sink, 96)
        assert worker.not_ready() is None
    final: dict[bytes, int] = {}
    for msg in outputs:
        key, count = (msg.value() or b"").split(b"=")
        assert int(count) == final.get(key, 0) + 1, "a record was lost or counted twice"
        final[key] = int(count)
    assert final == dict.fromkeys(keys, 8)
    assert len(outputs) == 96


def test_a_record_whose_handler_raises_is_dead_lettered_and_the_next_one_runs(
    kafka_settings: KafkaSettings, make_topic: Callable[..., str], unique: Callable[[str], str]
) -> None:
    topics = Topics(make_topic)
    producer = kafka.producer(kafka_settings, "stream-test")
    for value in (b"x", b"poison-1", b"x"):
        producer.produce(topics.source, value, b"same", partition=1)
    assert producer.flush(30) == 0
    with running(make_worker(kafka_settings, topics, unique("stream-dlq"))):
        outputs = read(kafka_settings, topics.sink, 2)
        (letter_msg,) = read(kafka_settings, topics.deadletter, 1)
    assert [msg.value() for msg in outputs] == [b"same=1", b"same=2"]
    letter = SingleObjectCodec().decode(letter_msg.value(), topics.deadletter)
    assert isinstance(letter, m.DeadLetter)
    assert (letter.original_topic, letter.original_partition, letter.original_offset) == (
        topics.source,
        1,
        1,
    )
    assert letter.error_class == "builtins.ValueError"
    assert "poison-1" in letter.reason
    assert letter.value == b"poison-1"


def test_a_bounded_read_only_job_reads_its_range_writes_nothing_and_ends(
    kafka_settings: KafkaSettings, make_topic: Callable[..., str], unique: Callable[[str], str]
) -> None:
    topics = Topics(make_topic)
    producer = kafka.producer(kafka_settings, "stream-test")
    for n in range(10):
        producer.produce(topics.source, f"v{n}".encode(), b"k", partition=0)
    assert producer.flush(30) == 0
    seen: list[bytes] = []

    def collect(message: Message, _stores: Stores) -> Iterable[Output]:
        seen.append(message.value() or b"")
        return ()

    worker = BoundedStreamWorker(
        kafka_settings,
        StreamConfig(group=unique("stream-bounded")),
        handlers={topics.source: collect},
        codec=SingleObjectCodec(),
        deadletter_topic=topics.deadletter,
        bounds={(topics.source, 0): (3, 7), (topics.source, 1): (0, 0)},
        transactional=False,
    )
    started = time.monotonic()
    worker.run()  # returns by itself at the end of the range
    assert time.monotonic() - started < 30
    assert seen == [b"v3", b"v4", b"v5", b"v6"]
