"""What the collector's integration tests share: a snapshots topic and a PostgreSQL
schema of their own, a collector wired to them, and a reader that sees what a
``read_committed`` (or ``read_uncommitted``) consumer would."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import KafkaError, TopicPartition

from services.collector.publish import SnapshotPublisher
from services.collector.run import Collector
from services.collector.settings import CollectorSettings
from services.collector.store import RunStore, connect, migrate
from services.contracts.codec import SingleObjectCodec
from services.contracts.models import (
    MembersChunk,
    PostCommentsChunk,
    PostLikesChunk,
    PostRepostsChunk,
    RunManifest,
    SnapshotChunk,
)
from services.contracts.topics import SNAPSHOTS, TopicSettings, apply, catalog, plan
from services.runtime import kafka
from services.runtime.settings import DatabaseSettings, KafkaSettings
from services.simulator.testing import VK_GROUP_TOKEN

DEADLINE_S = 60.0
ENV = {"SIM_VK_TOKEN": VK_GROUP_TOKEN}
SNAPSHOT_CLASSES = (MembersChunk, PostLikesChunk, PostCommentsChunk, PostRepostsChunk, RunManifest)


@dataclass
class Env:
    settings: CollectorSettings
    topic: str
    kafka: KafkaSettings


def make_env(
    kafka_settings: KafkaSettings,
    database_settings: DatabaseSettings,
    database_url: str,
    unique: Callable[[str], str],
) -> Iterator[Env]:
    """A snapshots topic and a PG schema of one test's own, removed when it ends."""
    topics = TopicSettings(prefix=unique("col") + ".", partitions=3)
    specs = [s for s in catalog(topics) if s.name == topics.name(SNAPSHOTS)]
    admin = kafka.admin(kafka_settings)
    apply(admin, plan(specs, {}), fix=False)
    schema = f"t_col_{uuid.uuid4().hex[:10]}"
    settings = CollectorSettings(
        kafka=kafka_settings,
        database=database_settings,
        topics=topics,
        db_schema=schema,
        transactional_id_prefix=unique("tx"),
    )
    yield Env(settings, topics.name(SNAPSHOTS), kafka_settings)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    for future in admin.delete_topics([s.name for s in specs]).values():
        try:
            future.result(30)
        except Exception:
            continue


def collector(env: Env, **overrides: Any) -> Collector:
    settings = env.settings.model_copy(update=overrides)
    publisher = SnapshotPublisher(
        settings.kafka,
        SingleObjectCodec(),
        env.topic,
        transactional_id_prefix=settings.transactional_id_prefix,
        max_message_bytes=settings.max_message_bytes,
    )
    return Collector(settings, publisher, environ=ENV)


async def prepared(env: Env) -> None:
    conn = await connect(env.settings.database)
    await migrate(conn, env.settings.db_schema)
    await conn.close()


def read_until_manifest(env: Env, run_id: str, *, committed: bool = True) -> list[SnapshotChunk]:
    """Every message of the topic, from the start to the end of every partition, once the
    manifest of ``run_id`` has been seen (a committed run is then wholly readable)."""
    consumer = kafka.consumer(
        env.kafka,
        f"t.reader.{uuid.uuid4().hex[:8]}",
        read_committed=committed,
        extra={"enable.partition.eof": True},
    )
    codec = SingleObjectCodec()
    metadata = consumer.list_topics(env.topic, timeout=30)
    partitions = sorted(metadata.topics[env.topic].partitions)
    consumer.assign([TopicPartition(env.topic, p, 0) for p in partitions])
    seen: list[SnapshotChunk] = []
    at_end: set[int] = set()
    found = False
    deadline = time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                partition = msg.partition()
                if error.code() == KafkaError._PARTITION_EOF and partition is not None:
                    at_end.add(partition)
                    if found and at_end == set(partitions):
                        return seen
                continue
            at_end.discard(msg.partition())
            chunk = codec.decode(msg.value(), env.topic)
            assert isinstance(chunk, SNAPSHOT_CLASSES)
            seen.append(chunk)
            found = found or (isinstance(chunk, RunManifest) and chunk.run_id == run_id)
            if found and at_end == set(partitions):
                return seen
    finally:
        consumer.close()
    raise AssertionError(f"no manifest of {run_id} within {DEADLINE_S}s; saw {len(seen)}")


async def run_row(env: Env, run_id: str) -> dict[str, Any]:
    conn = await connect(env.settings.database)
    try:
        row = await RunStore(conn, env.settings.db_schema).get(run_id)
    finally:
        await conn.close()
    assert row is not None
    return row


def read_to_end(env: Env, *, committed: bool) -> list[SnapshotChunk]:
    """Every message a fresh reader gets from the start to the end of every partition.

    For a ``read_committed`` reader the end is the last stable offset: an open
    transaction's messages, and everything after them, are not readable yet.
    """
    consumer = kafka.consumer(
        env.kafka,
        f"t.reader.{uuid.uuid4().hex[:8]}",
        read_committed=committed,
        extra={"enable.partition.eof": True},
    )
    codec = SingleObjectCodec()
    metadata = consumer.list_topics(env.topic, timeout=30)
    partitions = set(metadata.topics[env.topic].partitions)
    consumer.assign([TopicPartition(env.topic, p, 0) for p in partitions])
    seen: list[SnapshotChunk] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            partition = msg.partition()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF and partition is not None:
                    at_end.add(partition)
                    if at_end == partitions:
                        return seen
                continue
            if partition is not None:
                at_end.discard(partition)
            chunk = codec.decode(msg.value(), env.topic)
            assert isinstance(chunk, SNAPSHOT_CLASSES)
            seen.append(chunk)
    finally:
        consumer.close()
    raise AssertionError(f"the end of {env.topic} not reached within {DEADLINE_S}s")
