"""Fixtures for the actions integration tests: a private topic catalog, a private
PostgreSQL schema, in-process sinks, and the service running on a thread."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
import pytest
from confluent_kafka import TopicPartition
from psycopg import sql

from services.actions.service import CONSUMERS, run
from services.actions.settings import ActionsSettings
from services.actions.sinks import Sinks, free_port
from services.contracts.codec import Codec, make_codec
from services.contracts.models import (
    OUTCOME_TYPES,
    BonusAccrue,
    BonusDeduct,
    Channel,
    Command,
    CounterIncrement,
    DeadLetter,
    MailingSet,
    PointsCredited,
    SendMessage,
)
from services.contracts.topics import (
    COMMANDS_BONUS,
    COMMANDS_COUNTER,
    COMMANDS_MAILING,
    COMMANDS_NOTIFY,
    DEADLETTER,
    OUTCOMES,
    TopicSettings,
    apply,
    catalog,
    plan,
)
from services.runtime import kafka
from services.runtime.settings import DatabaseSettings, KafkaSettings

TOPIC_OF: dict[type, str] = {
    BonusAccrue: COMMANDS_BONUS,
    BonusDeduct: COMMANDS_BONUS,
    SendMessage: COMMANDS_NOTIFY,
    MailingSet: COMMANDS_MAILING,
    CounterIncrement: COMMANDS_COUNTER,
}


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def accrue(member: str, points: int, cid: str | None = None, **extra: Any) -> BonusAccrue:
    return BonusAccrue(
        command_id=cid or uuid.uuid4().hex,
        member_id=member,
        offer_id="offer",
        source_event_id="event",
        issued_at=datetime.now(UTC),
        points=points,
        reason="test",
        **extra,
    )


def deduct(member: str, points: int, cid: str | None = None, **extra: Any) -> BonusDeduct:
    return BonusDeduct(
        command_id=cid or uuid.uuid4().hex,
        member_id=member,
        offer_id="offer",
        source_event_id="event",
        issued_at=datetime.now(UTC),
        points=points,
        reason="test",
        **extra,
    )


def message(
    member: str,
    channel: Channel = Channel.EMAIL,
    *,
    marketing: bool = False,
    cid: str | None = None,
    template: str = "news",
) -> SendMessage:
    return SendMessage(
        command_id=cid or uuid.uuid4().hex,
        member_id=member,
        offer_id="offer",
        source_event_id="event",
        issued_at=datetime.now(UTC),
        channel=channel,
        template_id=template,
        params={"headline": "Hello", "text": "news for you"},
        marketing=marketing,
    )


def mailing(member: str, channel: Channel, enabled: bool, cid: str | None = None) -> MailingSet:
    return MailingSet(
        command_id=cid or uuid.uuid4().hex,
        member_id=member,
        offer_id="offer",
        source_event_id="event",
        issued_at=datetime.now(UTC),
        channel=channel,
        enabled=enabled,
    )


def count(member: str, name: str, by: int = 1, cid: str | None = None) -> CounterIncrement:
    return CounterIncrement(
        command_id=cid or uuid.uuid4().hex,
        member_id=member,
        offer_id="offer",
        source_event_id="event",
        issued_at=datetime.now(UTC),
        name=name,
        by=by,
    )


@dataclass
class ActionsEnv:
    """One test's world: its topics, schema, sinks, settings and a producer."""

    kafka: KafkaSettings
    database: DatabaseSettings
    topics: TopicSettings
    schema: str
    group_prefix: str
    sinks: Sinks
    codec: Codec
    producer: Any
    running: list[tuple[threading.Event, threading.Thread]] = field(default_factory=list)

    def settings(self, **overrides: Any) -> ActionsSettings:
        base: dict[str, Any] = {
            "kafka": self.kafka,
            "database": self.database,
            "topics": self.topics,
            "db_schema": self.schema,
            "group_prefix": self.group_prefix,
            "smtp_port": self.sinks.smtp_port,
            "sms_url": f"{self.sinks.http_url}/sms",
            "push_url": f"{self.sinks.http_url}/push",
            "viber_url": f"{self.sinks.http_url}/viber",
            "port": free_port(),
            "host": "127.0.0.1",
            "poll_timeout_s": 0.2,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
            "session_timeout_ms": 6000,
        }
        base.update(overrides)
        return ActionsSettings(**base)

    def topic(self, base: str) -> str:
        return self.topics.name(base)

    def send(self, *commands: Command) -> None:
        for command in commands:
            topic = self.topic(TOPIC_OF[type(command)])
            self.producer.produce(
                topic, self.codec.encode(command, topic), command.member_id.encode()
            )
        assert self.producer.flush(30) == 0

    def send_raw(self, base: str, value: bytes, key: bytes = b"m") -> None:
        self.producer.produce(self.topic(base), value, key)
        assert self.producer.flush(30) == 0

    def start(
        self, settings: ActionsSettings, only: tuple[str, ...] = CONSUMERS
    ) -> threading.Event:
        stop = threading.Event()
        thread = threading.Thread(
            target=run, args=(settings, only), kwargs={"stop": stop}, daemon=True
        )
        thread.start()
        self.running.append((stop, thread))
        return stop

    def stop_all(self) -> None:
        for stop, thread in self.running:
            stop.set()
            thread.join(60)
        self.running.clear()

    def query(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        url = self.database.database_url.get_secret_value()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            return conn.execute(statement, params).fetchall()

    def scalar(self, statement: str, *params: Any) -> Any:
        try:
            rows = self.query(statement, *params)
        except psycopg.errors.UndefinedTable:
            return None
        return rows[0][0] if rows else None

    def read_topic(self, base: str, expected: tuple[type, ...] | None = None) -> list[Any]:
        """Everything now on ``base`` (decoded when ``expected`` is given)."""
        topic = self.topic(base)
        consumer = kafka.consumer(self.kafka, f"t.read.{uuid.uuid4().hex[:8]}")
        try:
            metadata = consumer.list_topics(topic, timeout=30)
            ends = {}
            assign = []
            for partition in metadata.topics[topic].partitions:
                low, high = kafka.watermarks(consumer, topic, partition)
                if high > low:
                    ends[partition] = high
                    assign.append(TopicPartition(topic, partition, low))
            out: list[Any] = []
            if not assign:
                return out
            consumer.assign(assign)
            done: set[int] = set()
            deadline = time.monotonic() + 60
            while len(done) < len(ends) and time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is None or msg.error():
                    continue
                partition, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                if offset + 1 >= ends[partition]:
                    done.add(partition)
                if not expected:
                    out.append(msg)
                    continue
                record = self.codec.decode(msg.value(), topic, expected)
                if isinstance(record, tuple(OUTCOME_TYPES.values())):
                    headers = dict(msg.headers() or [])
                    assert (headers["ce_id"], headers["ce_source"]) == (
                        cast(PointsCredited, record).command_id.encode(),  # any outcome
                        b"social-loyalty/actions",
                    ), headers
                out.append(record)
            return out
        finally:
            consumer.close()

    def outcomes(self) -> list[Any]:
        return self.read_topic(OUTCOMES, tuple(OUTCOME_TYPES.values()))

    def dead_letters(self) -> list[DeadLetter]:
        return self.read_topic(DEADLETTER, (DeadLetter,))


def _wait_for_leaders(admin: Any, names: list[str], timeout_s: float = 30.0) -> None:
    """On a fresh broker a topic just created has no leader for a moment (reads then
    fail with NOT_LEADER_FOR_PARTITION): wait until every partition has one."""
    deadline = time.monotonic() + timeout_s
    while True:
        topics = admin.list_topics(timeout=10).topics
        if all(
            name in topics
            and topics[name].error is None
            and topics[name].partitions
            and all(p.leader >= 0 for p in topics[name].partitions.values())
            for name in names
        ):
            return
        assert time.monotonic() < deadline, f"no leaders for {names} after {timeout_s}s"
        time.sleep(0.1)


@pytest.fixture
def env(
    kafka_settings: KafkaSettings,
    database_settings: DatabaseSettings,
    unique: Callable[[str], str],
) -> Iterator[ActionsEnv]:
    topics = TopicSettings(prefix=unique("act") + ".", partitions=3)
    admin = kafka.admin(kafka_settings)
    wanted = [s for s in catalog(topics) if s.name.startswith(topics.name("loyalty."))]
    apply(admin, plan(wanted, {}), fix=False)
    _wait_for_leaders(admin, [spec.name for spec in wanted])
    schema = f"t_actions_{uuid.uuid4().hex[:10]}"
    sinks = Sinks(smtp_port=free_port(), http_port=free_port()).start()
    producer = kafka.producer(kafka_settings, "actions-test")
    world = ActionsEnv(
        kafka_settings,
        database_settings,
        topics,
        schema,
        "t." + unique("actions"),
        sinks,
        make_codec(kafka_settings),
        producer,
    )
    try:
        yield world
    finally:
        world.stop_all()
        sinks.stop()
        for future in admin.delete_topics([s.name for s in wanted]).values():
            try:
                future.result(30)
            except Exception:  # best-effort cleanup
                continue
        url = database_settings.database_url.get_secret_value()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
