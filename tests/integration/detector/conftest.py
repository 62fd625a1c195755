"""A real detector worker (a subprocess, as in production) over a private topic catalog.

One worker is shared by the module's tests because Faust takes seconds to join its
group; each test uses its own group ids, so tests do not see each other's events.
Snapshots are produced as the collector does: one Kafka transaction per run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, cast

import pytest
from confluent_kafka import TopicPartition

from services.contracts import (
    Comment,
    DeadLetter,
    DomainEvent,
    MembersChunk,
    PostCommentsChunk,
    PostLikesChunk,
    PostRepostsChunk,
    RunManifest,
    SnapshotChunk,
    make_codec,
)
from services.contracts.models import EVENT_TYPES, Network
from services.contracts.topics import (
    DEADLETTER,
    EVENTS,
    SNAPSHOTS,
    TopicSettings,
    apply,
    catalog,
    plan,
)
from services.runtime import kafka
from services.runtime.settings import KafkaSettings

REPO = Path(__file__).resolve().parents[3]
T0 = datetime(2025, 3, 1, tzinfo=UTC)
DEADLINE_S = 240.0  # only reached on failure; a loaded 2-core CI box is slow


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@dataclass
class Post:
    post_id: int
    posted_at: datetime
    likes: set[int] = field(default_factory=set)
    reposts: set[int] = field(default_factory=set)
    comments: dict[str, int] = field(default_factory=dict)


def run_chunks(
    group_id: int,
    snapshot_at: datetime,
    baseline_at: datetime,
    members: set[int],
    posts: list[Post],
    *,
    buckets: int = 2,
    network: Network = Network.VK,
) -> list[SnapshotChunk]:
    """One collection run as the collector publishes it: buckets, post facets, manifest."""
    run_id = uuid.uuid4().hex
    common = {
        "network": network,
        "group_id": group_id,
        "run_id": run_id,
        "snapshot_at": snapshot_at,
        "baseline_at": baseline_at,
    }
    chunks: list[SnapshotChunk] = [
        MembersChunk(
            bucket=b,
            bucket_count=buckets,
            member_ids=tuple(sorted(m for m in members if m % buckets == b)),
            **common,
        )
        for b in range(buckets)
    ]
    for post in posts:
        where = {"post_id": post.post_id, "posted_at": post.posted_at, **common}
        chunks.append(PostLikesChunk(user_ids=tuple(sorted(post.likes)), **where))
        chunks.append(
            PostCommentsChunk(
                comments=tuple(
                    Comment(comment_id=c, author_id=a) for c, a in sorted(post.comments.items())
                ),
                **where,
            )
        )
        if network is Network.VK:
            chunks.append(PostRepostsChunk(user_ids=tuple(sorted(post.reposts)), **where))
    chunks.append(
        RunManifest(
            bucket_count=buckets,
            post_ids=tuple(p.post_id for p in posts),
            chunk_count=len(chunks),
            **common,
        )
    )
    return chunks


@dataclass
class Stack:
    """The private catalog, a transactional snapshot producer and an events reader."""

    kafka_settings: KafkaSettings
    topics: TopicSettings
    app_id: str
    data_dir: Path

    def __post_init__(self) -> None:
        self.codec = make_codec(self.kafka_settings)
        self.producer = kafka.producer(
            self.kafka_settings,
            "detector-test",
            transactional_id=f"tx-{uuid.uuid4().hex}",
            # aiokafka (under Faust) reads zstd only with cramjam, not installed here.
            extra={"compression.type": "gzip"},
        )
        self.producer.init_transactions(30)
        self.reader = kafka.consumer(self.kafka_settings, f"reader-{uuid.uuid4().hex}")
        self.reader.subscribe([self.topics.name(EVENTS)])
        self.seen: list[tuple[bytes, DomainEvent]] = []
        self.worker: Worker | None = None

    def publish(self, chunks: list[SnapshotChunk], *, abort: bool = False) -> None:
        topic = self.topics.name(SNAPSHOTS)
        self.producer.begin_transaction()
        for chunk in chunks:
            value, key = self.codec.encode(chunk, topic), chunk.key().to_bytes()
            if isinstance(chunk, RunManifest):  # as the collector: a copy in every partition
                for partition in range(self.topics.partitions):
                    self.producer.produce(topic, value, key, partition=partition)
            else:
                self.producer.produce(topic, value, key)
        if abort:
            self.producer.flush(30)
            self.producer.abort_transaction(30)
        else:
            self.producer.commit_transaction(30)

    def publish_raw(self, key: bytes, value: bytes) -> None:
        self.producer.begin_transaction()
        self.producer.produce(self.topics.name(SNAPSHOTS), value, key)
        self.producer.commit_transaction(30)

    def poll_events(self, until: Callable[[list[DomainEvent]], bool], what: str) -> None:
        """Read events until ``until(all events so far)`` holds; fail after the deadline."""
        deadline = time.monotonic() + DEADLINE_S
        topic = self.topics.name(EVENTS)
        while not until([e for _, e in self.seen]):
            if time.monotonic() > deadline:
                log = (
                    "" if self.worker is None else f"; the worker's log ends:\n{self.worker.tail()}"
                )
                pytest.fail(f"timed out waiting for {what}; have {len(self.seen)} events{log}")
            if self.worker is not None and not self.worker.alive():
                pytest.fail(f"the worker died; its log ends:\n{self.worker.tail()}")
            msg: object = self.reader.poll(0.5)
            if msg is None or getattr(msg, "error")():  # noqa: B009
                continue
            event = self.codec.decode(msg.value(), topic, tuple(EVENT_TYPES.values()))  # type: ignore[attr-defined]
            headers = dict(msg.headers() or [])  # type: ignore[attr-defined]
            assert (headers["ce_id"], headers["ce_source"]) == (
                cast(DomainEvent, event).event_id.encode(),
                b"social-loyalty/detector",
            ), headers
            self.seen.append((msg.key(), event))  # type: ignore[attr-defined,arg-type]

    def dead_letters(self, count: int, original_topic: str | None = None) -> list[DeadLetter]:
        """The first ``count`` dead letters of the private catalog (of one source topic)."""
        topic = self.topics.name(DEADLETTER)
        consumer = kafka.consumer(self.kafka_settings, f"dl-{uuid.uuid4().hex}")
        consumer.subscribe([topic])
        letters: list[DeadLetter] = []
        deadline = time.monotonic() + DEADLINE_S
        try:
            while len(letters) < count:
                if time.monotonic() > deadline:
                    pytest.fail(f"timed out waiting for {count} dead letters; have {len(letters)}")
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                letter = self.codec.decode(msg.value(), topic, (DeadLetter,))
                assert isinstance(letter, DeadLetter)
                if original_topic in (None, letter.original_topic):
                    letters.append(letter)
        finally:
            consumer.close()
        return letters

    def poll_commits_caught_up(self) -> None:
        """Wait until the worker has committed past every record a reader can see.

        A ``read_committed`` consumer receives neither transaction markers nor aborted
        records, so a caught-up group has committed the offset after each partition's
        last committed record (markers and aborted records after it are only passed
        when the next record arrives)."""
        topic = self.topics.name(SNAPSHOTS)
        partitions = [TopicPartition(topic, p, 0) for p in range(self.topics.partitions)]
        reader = kafka.consumer(
            self.kafka_settings, f"ends-{uuid.uuid4().hex}", extra={"enable.partition.eof": True}
        )
        reader.assign(partitions)
        last: dict[int, int] = {}
        at_end: set[int] = set()
        try:
            while len(at_end) < len(partitions):
                msg = reader.poll(5)
                assert msg is not None, "no end of partition reported"
                partition, offset = msg.partition(), msg.offset()
                assert partition is not None and offset is not None
                if msg.error() is not None:
                    at_end.add(partition)
                else:
                    last[partition] = offset
        finally:
            reader.close()
        group = kafka.consumer(self.kafka_settings, self.app_id)
        deadline = time.monotonic() + DEADLINE_S
        try:
            while True:
                committed = group.committed(partitions, timeout=30)
                behind = {
                    tp.partition: (tp.offset, last[tp.partition] + 1)
                    for tp in committed
                    if tp.partition in last and tp.offset <= last[tp.partition]
                }
                if not behind:
                    return
                if time.monotonic() > deadline:
                    pytest.fail(f"commits stalled; partition: (committed, expected): {behind}")
                time.sleep(0.5)
        finally:
            group.close()

    def poll_commits_at_end(self, within_s: float) -> None:
        """Wait until the worker's committed offset is the end offset of every partition
        of the snapshot topic, transaction markers and aborted records included (what
        Kafka's own tool and the lag monitor compare); fail after ``within_s``."""
        topic = self.topics.name(SNAPSHOTS)
        partitions = [TopicPartition(topic, p) for p in range(self.topics.partitions)]
        group = kafka.consumer(self.kafka_settings, self.app_id)
        deadline = time.monotonic() + within_s
        try:
            while True:
                ends = {
                    tp.partition: kafka.watermarks(group, topic, tp.partition)[1]
                    for tp in partitions
                }
                committed = {
                    tp.partition: tp.offset for tp in group.committed(partitions, timeout=30)
                }
                behind = {p: (committed[p], end) for p, end in ends.items() if committed[p] != end}
                if not behind:
                    return
                if time.monotonic() > deadline:
                    log = (
                        ""
                        if self.worker is None
                        else f"; the worker's log ends:\n{self.worker.tail()}"
                    )
                    pytest.fail(
                        f"not at the end {within_s:.0f}s after going idle; partition: "
                        f"(committed, end): {behind}{log}"
                    )
                time.sleep(0.5)
        finally:
            group.close()

    def events_of(self, group_id: int) -> list[DomainEvent]:
        return [e for _, e in self.seen if getattr(e, "group_id", None) == group_id]


@dataclass
class Worker:
    """``python -m services.detector worker`` as a subprocess."""

    env: dict[str, str]
    log: IO[bytes]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        """True while running, and while deliberately stopped between kill and restart."""
        return self.process is None or self.process.poll() is None

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.detector", "worker", "--loglevel", "info"],
            cwd=REPO,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tag = uuid.uuid4().hex[:8]
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    topics = TopicSettings(prefix=f"t.det.{tag}.", partitions=3)
    admin = kafka.admin(settings)
    app_id = f"t.social-loyalty.detector.{tag}"
    apply(admin, plan(catalog(topics, detector_app_id=app_id), {}), fix=False)
    stack = Stack(settings, topics, app_id, tmp_path_factory.mktemp("det"))
    yield stack
    stack.reader.close()


def stack_env(stack: Stack) -> dict[str, str]:
    """The environment of a detector worker on the stack's private catalog."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_settings.bootstrap_servers,
        "TOPIC_PREFIX": stack.topics.prefix,
        "TOPIC_PARTITIONS": str(stack.topics.partitions),
        "DETECTOR_APP_ID": stack.app_id,
    }


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Iterator[Worker]:
    env = {
        **stack_env(stack),
        "DETECTOR_STORE": "rocksdb://",
        "DETECTOR_DATA_DIR": str(stack.data_dir),
        "DETECTOR_WORKER_PORT": "0",
        # After kill -9 the dead member holds its partitions until this expires.
        "DETECTOR_SESSION_TIMEOUT_S": "8",
    }
    log_path = stack.data_dir / "worker.log"
    with log_path.open("ab") as log:
        process = Worker(env, log, log_path)
        process.start()
        stack.worker = process
        yield process
        if process.process is not None and process.process.poll() is None:
            assert process.stop() == 0, process.tail()
