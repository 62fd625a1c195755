"""Detector through the real broker: snapshot-to-events latency and the worker's event rate.

A private topic catalog and a real ``python -m services.detector worker`` subprocess
(RocksDB store in a temp dir). Snapshots are produced like the collector does: one
Kafka transaction per run, 16 member buckets. Measured:

* latency: a 1,000,000-member group is baselined, then a run with 1% churn (5,000
  leave, 5,000 join) is committed; seconds from the commit until the last of its
  10,000 events is read back from ``social.events`` (target: under 5 s);
* throughput: ``BENCH_DETECTOR_RUNS`` more runs (default 2) of the same group, each
  with 2.5% member churn and 50 new posts of 500 likers (50,000 events per run), all
  committed back to back; events per second from the first commit to the last event;
* the same ``social.events`` topic read by a raw confluent-kafka consumer in the same
  run (best of two reads): the ceiling the worker's rate is compared with;
* the worker's peak RSS (``VmHWM``) before it is stopped.

Run: ``.venv/bin/python -m bench detector_stream`` (needs ``KAFKA_BOOTSTRAP_SERVERS``;
``BENCH_DETECTOR_STORE=memory://`` for the memory table store).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from bench._stream import peak_rss_mib, timed_read
from services.contracts import MembersChunk, PostLikesChunk, RunManifest, SnapshotChunk, make_codec
from services.contracts.models import Network
from services.contracts.topics import EVENTS, SNAPSHOTS, TopicSettings, apply, catalog, plan
from services.runtime import kafka
from services.runtime.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = 1_000_000
BUCKETS = 16
CHURN = 0.01
LOAD_RUNS = int(os.environ.get("BENCH_DETECTOR_RUNS", "2"))
STORE = os.environ.get("BENCH_DETECTOR_STORE", "rocksdb://")
LOAD_CHURN = 0.025
LOAD_POSTS = 50
LOAD_LIKERS = 500
PARTITIONS = 6
GROUP = 4242
T0 = datetime(2026, 3, 1, tzinfo=UTC)
DEADLINE_S = 120.0

Ids = np.ndarray[tuple[int], np.dtype[np.int64]]


def _at(run: int) -> datetime:
    return T0 + timedelta(hours=run)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Post:
    post_id: int
    posted_at: datetime
    likers: Ids


def _run(run: int, members: Ids, posts: list[Post]) -> list[SnapshotChunk]:
    """One collection run as the collector publishes it: buckets, post likes, manifest."""
    common = {
        "network": Network.VK,
        "group_id": GROUP,
        "run_id": uuid.uuid4().hex,
        "snapshot_at": _at(run),
        "baseline_at": _at(0),
    }
    buckets = members % BUCKETS
    chunks: list[SnapshotChunk] = [
        MembersChunk(
            bucket=b,
            bucket_count=BUCKETS,
            member_ids=tuple(members[buckets == b].tolist()),
            **common,
        )
        for b in range(BUCKETS)
    ]
    chunks.extend(
        PostLikesChunk(
            post_id=post.post_id,
            posted_at=post.posted_at,
            user_ids=tuple(post.likers.tolist()),
            **common,
        )
        for post in posts
    )
    chunks.append(
        RunManifest(
            bucket_count=BUCKETS,
            post_ids=tuple(p.post_id for p in posts),
            chunk_count=len(chunks),
            **common,
        )
    )
    return chunks


def _churn(rng: np.random.Generator, members: Ids, fraction: float) -> tuple[Ids, int]:
    """Members after ``fraction`` of them changed (half leave, half join); and the count."""
    changed = int(members.size * fraction / 2)
    stay = np.sort(rng.permutation(members)[changed:])
    joiners = np.setdiff1d(
        rng.integers(1, 2_000_000_000, changed * 2, dtype=np.int64), members, assume_unique=False
    )
    joiners = rng.permutation(joiners)[:changed]
    return np.union1d(stay, joiners), changed * 2


class Publisher:
    """A transactional producer configured as the collector's (one transaction per run)."""

    def __init__(self, settings: KafkaSettings, topics: TopicSettings) -> None:
        self.codec = make_codec(settings)
        self.topic = topics.name(SNAPSHOTS)
        self.producer: Producer = kafka.producer(
            settings,
            "bench-collector",
            transactional_id=f"bench-tx-{uuid.uuid4().hex}",
            extra={"message.max.bytes": 8_388_608 + 64 * 1024},
        )
        self.producer.init_transactions(30)

    def encode(self, chunks: list[SnapshotChunk]) -> list[tuple[bytes, bytes, int]]:
        """(key, value, partition) as the collector sends them: the manifest to every
        partition, the rest where their keys hash (-1)."""
        return [
            (c.key().to_bytes(), self.codec.encode(c, self.topic), partition)
            for c in chunks
            for partition in (range(PARTITIONS) if isinstance(c, RunManifest) else (-1,))
        ]

    def publish(self, records: list[tuple[bytes, bytes, int]]) -> float:
        """Produce and commit one run; returns the monotonic time the commit returned."""
        self.producer.begin_transaction()
        for key, value, partition in records:
            while True:
                try:
                    self.producer.produce(self.topic, value, key, partition=partition)
                    break
                except BufferError:
                    self.producer.poll(0.1)
            self.producer.poll(0)
        self.producer.commit_transaction(60)
        return time.monotonic()


class EventsReader:
    """Counts what reaches ``social.events`` (all of it is ours: a private catalog)."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.topic = topic
        self.consumer: Consumer = kafka.consumer(settings, f"bench-{uuid.uuid4().hex[:8]}")
        metadata = self.consumer.list_topics(topic, timeout=10)
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.topics[topic].partitions]
        )
        self.count = 0
        self.last_at = 0.0

    def until(self, total: int, alive: Callable[[], None]) -> float:
        """Read until ``total`` events have arrived; the monotonic time of the last one."""
        deadline = time.monotonic() + DEADLINE_S
        while self.count < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.count} of {total} events after {DEADLINE_S:.0f}s")
            alive()
            for message in self.consumer.consume(10_000, 0.05):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(str(error))
                    continue
                self.count += 1
                self.last_at = time.monotonic()
        return self.last_at

    def close(self) -> None:
        self.consumer.close()


class Worker:
    """``python -m services.detector worker`` as a subprocess, with health on a free port."""

    def __init__(self, env: dict[str, str], log: IO[bytes], log_path: Path) -> None:
        self.port = _free_port()
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.detector", "worker", "--loglevel", "warning"],
            cwd=ROOT,
            env={**env, "DETECTOR_WORKER_PORT": str(self.port)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def check(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the detector worker exited ({self.process.returncode}):\n{tail}")

    def metric(self, name: str, label: str) -> float:
        """The sum of the worker's matching /metrics samples (0 when absent or not serving)."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/metrics", timeout=2
            ) as response:
                text = response.read().decode()
        except OSError:
            return 0.0
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith((f"{name} ", f"{name}{{")) and label in line
        )

    def wait_for(self, name: str, label: str, value: float, what: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while self.metric(name, label) < value:
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the worker did not {what} in {DEADLINE_S:.0f}s")
            time.sleep(0.2)  # polling a metric with a deadline, not a synchronisation sleep

    def peak_rss_mib(self) -> float:
        return peak_rss_mib(self.process.pid) or 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def run() -> list[dict[str, object]]:
    settings = KafkaSettings()
    tag = uuid.uuid4().hex[:8]
    topics = TopicSettings(prefix=f"bench.det.{tag}.", partitions=PARTITIONS)
    admin = kafka.admin(settings, "bench-detector")
    app_id = f"bench.social-loyalty.detector.{tag}"
    specs = catalog(topics, detector_app_id=app_id)
    apply(admin, plan(specs, {}), fix=False)
    rng = np.random.default_rng(2026)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-detector-") as tmp:
        log_path = Path(tmp) / "worker.log"
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "TOPIC_PREFIX": topics.prefix,
            "TOPIC_PARTITIONS": str(PARTITIONS),
            "DETECTOR_APP_ID": app_id,
            "DETECTOR_STORE": STORE,
            "DETECTOR_DATA_DIR": str(Path(tmp) / "data"),
        }
        publisher = Publisher(settings, topics)
        reader = EventsReader(settings, topics.name(EVENTS))
        with log_path.open("ab") as log:
            worker = Worker(env, log, log_path)
            try:
                rows = _measure(
                    rng,
                    worker=worker,
                    publisher=publisher,
                    reader=reader,
                    settings=settings,
                    topics=topics,
                )
            finally:
                reader.close()
                worker.stop()
    admin.delete_topics(
        [s.name for s in specs] + [f"{app_id}-keys-changelog", f"{app_id}-groups-changelog"]
    )
    return rows


def _measure(
    rng: np.random.Generator,
    *,
    worker: Worker,
    publisher: Publisher,
    reader: EventsReader,
    settings: KafkaSettings,
    topics: TopicSettings,
) -> list[dict[str, object]]:
    members = np.unique(rng.integers(1, 2_000_000_000, int(MEMBERS * 1.01), dtype=np.int64))
    members = np.sort(rng.permutation(members)[:MEMBERS])
    publisher.publish(publisher.encode(_run(0, members, [])))
    chunks_metric = "social_loyalty_detector_chunks_total"
    worker.wait_for(chunks_metric, 'outcome="baseline"', BUCKETS, "read the baseline run")

    # Latency: one run with 1% churn.
    diff_metric = "social_loyalty_detector_diff_seconds_sum"
    diff_before = worker.metric(diff_metric, "")
    members, expected = _churn(rng, members, CHURN)
    records = _run(1, members, [])
    encoded = publisher.encode(records)
    snapshot_mb = sum(len(v) for _, v, _ in encoded) / 1e6
    committed = publisher.publish(encoded)
    last = reader.until(expected, worker.check)
    latency = last - committed
    worker.wait_for(chunks_metric, 'outcome="diff"', BUCKETS, "diff the churn run")
    diff_s = worker.metric(diff_metric, "") - diff_before

    # Throughput: several runs with member churn and new posts, committed back to back.
    workload = 0
    runs: list[list[tuple[bytes, bytes, int]]] = []
    posts: list[Post] = []
    for n in range(LOAD_RUNS):
        members, changed = _churn(rng, members, LOAD_CHURN)
        for p in range(LOAD_POSTS):
            likers = np.sort(rng.choice(members, LOAD_LIKERS, replace=False))
            posts.append(
                Post(10_000 + n * LOAD_POSTS + p, _at(2 + n) - timedelta(minutes=5), likers)
            )
        workload += changed + LOAD_POSTS * LOAD_LIKERS
        runs.append(publisher.encode(_run(2 + n, members, posts)))
    first_commit = publisher.publish(runs[0])
    for records_n in runs[1:]:
        publisher.publish(records_n)
    last = reader.until(expected + workload, worker.check)
    worker_s = last - first_commit
    total = expected + workload
    events_metric = "social_loyalty_detector_events_total"
    worker.wait_for(events_metric, "", total, "count its events")
    emitted = worker.metric(events_metric, "")
    if emitted != total:  # a wrong detector must not pass for a fast one
        raise RuntimeError(f"the worker emitted {emitted:.0f} events, expected {total}")
    peak = worker.peak_rss_mib()
    raw_s = min(
        timed_read(settings, topics.name(EVENTS), total, batch=10_000, deadline_s=DEADLINE_S)
        for _ in range(2)
    )
    worker_rate = workload / worker_s
    raw_rate = total / raw_s
    return [
        {
            "measure": "snapshot-to-events, 1M members, 1% churn",
            "figure": f"{latency:.2f} s",
            "note": f"{expected:,} events; commit -> last event read (target < 5 s); "
            f"{BUCKETS} chunks, {snapshot_mb:.1f} MB",
        },
        {
            "measure": "  of which diff in the worker",
            "figure": f"{diff_s:.2f} s",
            "note": "16 chunks: to_chunk, state decode, numpy diff, event records "
            "(not: Avro decode/encode, produce, table write)",
        },
        {
            "measure": f"worker events/s, {LOAD_RUNS} runs",
            "figure": f"{worker_rate:,.0f} /s",
            "note": f"{workload:,} events in {worker_s:.2f} s (first commit -> last event; "
            f"{LOAD_CHURN:.1%} churn + {LOAD_POSTS} new posts x {LOAD_LIKERS} likers per run)",
        },
        {
            "measure": "raw confluent-kafka read of social.events",
            "figure": f"{raw_rate:,.0f} /s",
            "note": f"{total:,} events in {raw_s:.2f} s (best of 2), same topic, same run",
        },
        {
            "measure": "worker rate / raw read rate",
            "figure": f"{worker_rate / raw_rate:.3f}x",
            "note": "",
        },
        {
            "measure": "worker peak RSS (VmHWM)",
            "figure": f"{peak:.0f} MiB",
            "note": f"table store {STORE}",
        },
    ]


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table("bench detector_stream", run())
