"""Shared pieces of the rules integration tests: topics, events in, commands out, a worker.

Events are produced with the shared producer factory (zstd, as the detector
and the link API write them), so the worker reads what production writes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from services.contracts import models as m
from services.contracts.codec import make_codec
from services.contracts.topics import (
    COMMANDS_BONUS,
    COMMANDS_COUNTER,
    COMMANDS_MAILING,
    COMMANDS_NOTIFY,
    DEADLETTER,
    EVENTS,
    TopicSettings,
    catalog,
    ensure,
    observe,
    plan,
)
from services.rules.offer_store import EXAMPLES_DIR, OfferStore
from services.rules.offers import load_offer
from services.runtime import kafka
from services.runtime.settings import DatabaseSettings, KafkaSettings

REPO = Path(__file__).resolve().parents[3]
DEADLINE_S = 60.0
COMMAND_TOPICS = (COMMANDS_BONUS, COMMANDS_NOTIFY, COMMANDS_MAILING, COMMANDS_COUNTER)


@dataclass(frozen=True)
class Env:
    """One test's private world: topic prefix, PG schema, Faust app id."""

    kafka: KafkaSettings
    database: DatabaseSettings
    topics: TopicSettings
    schema: str
    app_id: str

    def store(self) -> OfferStore:
        store = OfferStore(self.database, self.schema)
        store.migrate()
        return store

    def environ(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "DATABASE_URL": self.database.database_url.get_secret_value(),
            "TOPIC_PREFIX": self.topics.prefix,
            "TOPIC_PARTITIONS": str(self.topics.partitions),
            "RULES_APP_ID": self.app_id,
            "RULES_DB_SCHEMA": self.schema,
            **extra,
        }


def make_env(
    kafka_settings: KafkaSettings, database: DatabaseSettings, name: str, *, partitions: int = 2
) -> Env:
    """Create the catalog topics under a fresh prefix (2 partitions by default: enough
    to route; a group of workers needs more to share)."""
    token = uuid.uuid4().hex[:8]
    topics = TopicSettings(prefix=f"{name}.{token}.", partitions=partitions)
    app_id = f"social-loyalty.rules.t{token}"
    admin = kafka.admin(kafka_settings)
    specs = catalog(topics, rules_app_id=app_id)
    ensure(admin, specs, fix=False)
    deadline = time.monotonic() + DEADLINE_S
    while any(not p.in_sync for p in plan(specs, observe(admin, [s.name for s in specs]))):
        assert time.monotonic() < deadline, "topics not created"
        time.sleep(0.2)
    return Env(kafka_settings, database, topics, f"rules_t_{token}", app_id)


def activate_examples(env: Env, *names: str) -> None:
    store = env.store()
    for name in names:
        offer = load_offer(EXAMPLES_DIR / f"{name}.yaml")
        store.create(offer.model_dump(mode="json"), author="test")
        store.set_active(offer.id, True)


# ----------------------------------------------------------------------- events


def linked(user: str, member: str, at: datetime) -> m.ProfileLinked:
    return m.ProfileLinked.build(
        network="vk",
        social_user_id=user,
        member_id=member,
        registration=False,
        observed_at=at,
        snapshot_at=at,
    )


def unlinked(user: str, member: str, at: datetime) -> m.ProfileUnlinked:
    return m.ProfileUnlinked.build(
        network="vk",
        social_user_id=user,
        member_id=member,
        registration=False,
        observed_at=at,
        snapshot_at=at,
    )


def liked(user: str, post: int, at: datetime, *, group: int = 1) -> m.PostLiked:
    return m.PostLiked.build(
        network="vk",
        group_id=group,
        social_user_id=user,
        post_id=post,
        observed_at=at,
        snapshot_at=at,
        previous_snapshot_at=at - timedelta(hours=1),
    )


def group_event(model: type[m.GroupJoined | m.GroupLeft], user: str, at: datetime) -> m.DomainEvent:
    return model.build(
        network="vk",
        group_id=1001,  # the group join-group.yaml rewards
        social_user_id=user,
        observed_at=at,
        snapshot_at=at,
        previous_snapshot_at=at - timedelta(hours=1),
    )


def produce_aborted(env: Env, events: Iterable[m.DomainEvent]) -> None:
    """Write ``events`` in a transaction and abort it: read_committed readers never see them."""
    codec = make_codec(env.kafka)
    producer = kafka.producer(
        env.kafka,
        "rules-test-tx",
        transactional_id=f"t.rules.{uuid.uuid4().hex[:8]}",
    )
    topic = env.topics.name(EVENTS)
    producer.init_transactions(30)
    producer.begin_transaction()
    for event in events:
        producer.produce(topic, key=event.key().to_bytes(), value=codec.encode(event, topic))
    producer.flush(30)
    producer.abort_transaction(30)


def produce(env: Env, events: Iterable[m.DomainEvent], *, timestamp_ms: int | None = None) -> None:
    codec = make_codec(env.kafka)
    producer = kafka.producer(env.kafka, "rules-test")
    topic = env.topics.name(EVENTS)
    for event in events:
        extra: dict[str, Any] = {} if timestamp_ms is None else {"timestamp": timestamp_ms}
        producer.produce(
            topic, key=event.key().to_bytes(), value=codec.encode(event, topic), **extra
        )
    assert producer.flush(30) == 0


def produce_raw(env: Env, key: bytes, value: bytes) -> None:
    producer = kafka.producer(env.kafka, "rules-test-raw")
    producer.produce(env.topics.name(EVENTS), key=key, value=value)
    assert producer.flush(30) == 0


def dead_letters(env: Env, count: int) -> list[m.DeadLetter]:
    """The first ``count`` records of the dead-letter topic (waits up to the deadline)."""
    codec = make_codec(env.kafka)
    consumer = kafka.consumer(env.kafka, f"t.dlq.{uuid.uuid4().hex[:8]}")
    consumer.subscribe([env.topics.name(DEADLETTER)])
    letters: list[m.DeadLetter] = []
    deadline = time.monotonic() + DEADLINE_S
    try:
        while len(letters) < count:
            assert time.monotonic() < deadline, f"only {len(letters)} dead letters"
            for msg in consumer.consume(10, timeout=0.5):
                if not msg.error():
                    letter = codec.decode(msg.value(), str(msg.topic()), (m.DeadLetter,))
                    assert isinstance(letter, m.DeadLetter)
                    letters.append(letter)
    finally:
        consumer.close()
    return letters


# --------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Received:
    topic: str
    key: bytes
    command: m.Command


class CommandReader:
    """Reads every command topic from the start; ``until`` polls with a deadline."""

    def __init__(self, env: Env) -> None:
        self._env = env
        self._codec = make_codec(env.kafka)
        self._consumer = kafka.consumer(env.kafka, f"t.reader.{uuid.uuid4().hex[:8]}")
        self._consumer.subscribe([env.topics.name(t) for t in COMMAND_TOPICS])
        self.received: list[Received] = []

    def poll(self, seconds: float = 0.5) -> None:
        for msg in self._consumer.consume(500, timeout=seconds):
            if msg.error():
                continue
            topic, key = str(msg.topic()), bytes(msg.key() or b"")
            command = self._codec.decode(msg.value(), topic, tuple(m.COMMAND_TYPES.values()))
            assert isinstance(command, m.BonusAccrue | m.BonusDeduct | m.SendMessage
                              | m.CounterIncrement | m.MailingSet)  # fmt: skip
            # every command says what it is in its headers (services/contracts/headers.py)
            headers = dict(msg.headers() or [])
            source = b"social-loyalty/replay" if command.replay else b"social-loyalty/rules"
            assert (headers["ce_id"], headers["ce_type"], headers["ce_source"]) == (
                command.command_id.encode(),
                command.avro_name.encode(),
                source,
            ), headers
            base = topic.removeprefix(self._env.topics.prefix)
            self.received.append(Received(base, key, command))

    def until(self, done: Callable[[list[Received]], bool], what: str) -> list[Received]:
        deadline = time.monotonic() + DEADLINE_S
        while not done(self.received):
            assert time.monotonic() < deadline, (
                f"timed out waiting for {what}; {len(self.received)} received, "
                f"last: {self.received[-3:]}"
            )
            self.poll()
        return self.received

    def ids(self) -> set[str]:
        return {r.command.command_id for r in self.received}

    def close(self) -> None:
        self._consumer.close()


# ----------------------------------------------------------------------- worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def loaded_offers(self) -> set[str] | None:
        try:
            response = httpx.get(f"http://127.0.0.1:{self.port}/offers", timeout=2)
        except httpx.HTTPError:
            return None
        return {o["id"] for o in response.json()}

    def wait_offers(self, expected: set[str]) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while self.loaded_offers() != expected:
            assert self.process.poll() is None, f"worker died: {self.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"worker offers {self.loaded_offers()}"
            time.sleep(0.2)


@contextmanager
def worker(env: Env, log: Path, *, instance: str = "0", **extra: str) -> Iterator[Worker]:
    """``python -m services.rules worker`` as group member ``instance``; SIGTERM at the end."""
    port = free_port()
    handle = log.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.rules", "worker", "--loglevel", "warning"],
        cwd=REPO,
        env=env.environ(
            RULES_RELOAD_INTERVAL_S="0.5",
            RULES_SESSION_TIMEOUT_S="8",
            RULES_TRANSACTION_TIMEOUT_S="10",
            RULES_WORKER_HTTP_PORT=str(port),
            RULES_INSTANCE_ID=instance,
            **extra,
        ),
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    w = Worker(process, port, log)
    try:
        yield w
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        handle.close()


# ------------------------------------------------- exactly-once: sized envs, many workers


def make_sized_env(
    kafka_settings: KafkaSettings, database: DatabaseSettings, name: str, *, partitions: int
) -> Env:
    """``make_env`` with ``partitions`` per topic."""
    return make_env(kafka_settings, database, name, partitions=partitions)


def produce_at(
    env: Env, topic: str, records: Iterable[tuple[bytes, bytes]], partition: int
) -> list[int]:
    """Write raw ``(key, value)`` records to one partition of the real ``topic``, in order;
    their offsets."""
    producer = kafka.producer(env.kafka, "rules-test-at")
    offsets: list[int] = []

    def delivered(error: Any, msg: Any) -> None:
        assert error is None, error
        offsets.append(int(msg.offset()))

    for key, value in records:
        producer.produce(topic, key=key, value=value, partition=partition, on_delivery=delivered)
        assert producer.flush(30) == 0
    return offsets


def start_worker(env: Env, log: Path, *, instance: str, **settings: str) -> Worker:
    """A rules worker as group member ``instance`` (info log in ``log``); ``settings``
    (``RULES_*``) override the test defaults. The caller stops it (``kill_worker``)."""
    port = free_port()
    environ = {
        "RULES_RELOAD_INTERVAL_S": "0.5",
        "RULES_SESSION_TIMEOUT_S": "6",
        "RULES_TRANSACTION_TIMEOUT_S": "10",
        **settings,
        "RULES_WORKER_HTTP_PORT": str(port),
        "RULES_INSTANCE_ID": instance,
    }
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.rules", "worker", "--loglevel", "info"],
            cwd=REPO,
            env=env.environ(**environ),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    return Worker(process, port, log)


def worker_ready(w: Worker) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{w.port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(w: Worker) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not worker_ready(w):
        assert w.process.poll() is None, f"worker died: {w.log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"worker not ready: {w.log.read_text()[-3000:]}"
        time.sleep(0.1)


def assigned_partitions(w: Worker) -> int | None:
    """Input partitions the worker holds (its metrics), ``None`` when it does not answer."""
    try:
        text = httpx.get(f"http://127.0.0.1:{w.port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("social_loyalty_stream_assigned_partitions{"):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def kill_worker(w: Worker) -> None:
    """SIGKILL: no flush, no commit, no leaving the group."""
    if w.process.poll() is None:
        w.process.send_signal(signal.SIGKILL)
    w.process.wait(30)


def drop_env(env: Env) -> None:
    """Remove what ``make_env`` made and the worker added (best effort)."""
    import psycopg

    with psycopg.connect(env.database.database_url.get_secret_value(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {env.schema} CASCADE")
    admin = kafka.admin(env.kafka)
    names = [
        t
        for t in admin.list_topics(timeout=30).topics
        if t.startswith((env.topics.prefix, env.app_id))
    ]
    for future in admin.delete_topics(names).values() if names else ():
        try:
            future.result(30)
        except Exception:  # cleanup is best effort
            continue
