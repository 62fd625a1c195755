"""Actions benchmark: ledger commands/s with the exactly-once consumer vs a raw consumer.

It fills a fresh 6-partition ``loyalty.commands.bonus`` with ``BENCH_ACTIONS_COMMANDS``
(default 20,000) ``BonusAccrue`` commands for 5,000 members, reads the whole topic
with a raw confluent-kafka consumer (no decoding: the ceiling) and with Avro
decoding, then starts the real service (``python -m services.actions run --only
bonus``) as a subprocess with its own topic prefix, PostgreSQL schema and groups,
and times it from partition assignment until PostgreSQL holds every offset. Each
ratio is against the raw read of the same run (the best of three: 20,000 messages
read in tens of milliseconds, so one read is at the mercy of one fetch round trip),
so a busy shared machine moves both sides together. The ledger is checked afterwards
(one entry per command, exact balance sum): a figure for a wrong result would be worthless.

The notify path is timed the same way with ``BENCH_ACTIONS_MESSAGES`` (default
2,000) ``SendMessage`` commands, half email (SMTP) and half SMS (HTTP), against the
local sinks started in this process; every message must arrive exactly once.

Peak RSS and CPU seconds are the service subprocess's own (``wait4``), not this
process's; the CPU seconds include its start (the imports alone: about 1.2 s).
Run: ``./run bench actions``.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Message
from psycopg import sql

from bench._stream import timed_read
from services.actions.sinks import Sinks, free_port
from services.contracts import make_codec
from services.contracts.models import BonusAccrue, Channel, Command, SendMessage
from services.contracts.topics import (
    COMMANDS_BONUS,
    COMMANDS_NOTIFY,
    TopicSettings,
    apply,
    catalog,
    plan,
)
from services.runtime import kafka
from services.runtime.settings import DatabaseSettings, KafkaSettings

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = int(os.environ.get("BENCH_ACTIONS_COMMANDS", "20000"))
MESSAGES = int(os.environ.get("BENCH_ACTIONS_MESSAGES", "2000"))
MEMBERS = 5_000
PARTITIONS = 6
DEADLINE_S = 180.0


@dataclass(frozen=True)
class ServiceRun:
    """What one run of the service subprocess cost."""

    seconds: float  # partition assignment -> every offset stored in PostgreSQL
    peak_rss_mib: float
    cpu_s: float


@dataclass(frozen=True)
class World:
    """This run's private topics, schema, groups and sinks."""

    kafka: KafkaSettings
    database: DatabaseSettings
    topics: TopicSettings
    schema: str
    group_prefix: str
    sinks: Sinks

    def env(self) -> dict[str, str]:
        """The service's environment: everything private to this run."""
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "DATABASE_URL": self.database.database_url.get_secret_value(),
            "TOPIC_PREFIX": self.topics.prefix,
            "TOPIC_PARTITIONS": str(PARTITIONS),
            "ACTIONS_DB_SCHEMA": self.schema,
            "ACTIONS_GROUP_PREFIX": self.group_prefix,
            "ACTIONS_HOST": "127.0.0.1",
            "ACTIONS_PORT": str(free_port()),
            "ACTIONS_SMTP_PORT": str(self.sinks.smtp_port),
            "ACTIONS_SMS_URL": f"{self.sinks.http_url}/sms",
            "ACTIONS_PUSH_URL": f"{self.sinks.http_url}/push",
            "ACTIONS_VIBER_URL": f"{self.sinks.http_url}/viber",
        }

    def scalar(self, statement: str, *params: object) -> Any:
        url = self.database.database_url.get_secret_value()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            row = conn.execute(statement, params).fetchone()
        return row[0] if row else None


def _produce(world: World, base: str, commands: list[Command]) -> float:
    codec = make_codec(world.kafka)
    producer = kafka.producer(world.kafka, "bench-actions", extra={"linger.ms": 20})
    topic = world.topics.name(base)
    started = time.perf_counter()
    for command in commands:
        while True:
            try:
                producer.produce(topic, codec.encode(command, topic), command.member_id.encode())
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError(f"could not produce the commands to {topic}")
    return time.perf_counter() - started


def _read(
    world: World, base: str, total: int, work: Callable[[Message], object] | None = None
) -> float:
    """Seconds from the first message to the last, with the service's batch size."""
    return timed_read(
        world.kafka,
        world.topics.name(base),
        total,
        work,
        group=f"{world.group_prefix}.raw.{uuid.uuid4().hex[:6]}",
        deadline_s=DEADLINE_S,
    )


def _reap(proc: subprocess.Popen[str], within_s: float) -> resource.struct_rusage | None:
    """The child's own resource usage once it has exited (``wait4``: ``Popen.wait``
    would reap it without keeping the usage); None while it still runs."""
    deadline = time.monotonic() + within_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def _run_service(world: World, consumer: str, total: int) -> ServiceRun:
    """Start ``python -m services.actions run --only <consumer>``; stop it with
    SIGTERM once PostgreSQL stores offsets past all ``total`` messages."""
    group = f"{world.group_prefix}.{consumer}"
    assigned = threading.Event()
    assigned_at: list[float] = []
    tail: list[str] = []
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.actions", "run", "--only", consumer],
        cwd=ROOT,
        env=world.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def watch() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if not assigned.is_set() and f"{group}: assigned" in line:
                assigned_at.append(time.perf_counter())
                assigned.set()
            tail[:] = [*tail[-20:], line.rstrip()]

    threading.Thread(target=watch, daemon=True).start()
    url = world.database.database_url.get_secret_value()
    usage: resource.struct_rusage | None = None
    finished = 0.0
    try:
        deadline = time.monotonic() + DEADLINE_S
        stored = sql.SQL(
            "SELECT coalesce(sum(next_offset), 0) FROM {}.consumer_offsets WHERE group_id = %s"
        ).format(sql.Identifier(world.schema))
        with psycopg.connect(url, autocommit=True) as conn:
            while True:
                usage = _reap(proc, 0)
                if usage is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"actions {consumer} exited or timed out:\n" + "\n".join(tail)
                    )
                if assigned.is_set():
                    row = conn.execute(stored, (group,)).fetchone()
                    if row is not None and int(row[0]) >= total:
                        finished = time.perf_counter()
                        break
                time.sleep(0.02)
    finally:
        if usage is None:
            proc.send_signal(signal.SIGTERM)
            usage = _reap(proc, 60)
        if usage is None:
            proc.kill()
            usage = _reap(proc, 10)
    if proc.returncode != 0 or usage is None:
        raise RuntimeError(f"actions {consumer} exited with {proc.returncode}:\n" + "\n".join(tail))
    return ServiceRun(
        seconds=finished - assigned_at[0],
        peak_rss_mib=usage.ru_maxrss / 1024,
        cpu_s=usage.ru_utime + usage.ru_stime,
    )


def _accruals() -> list[Command]:
    now = datetime.now(UTC)
    return [
        BonusAccrue(
            command_id=f"bench-{i}",
            member_id=f"member-{i % MEMBERS}",
            offer_id="bench",
            source_event_id=f"event-{i}",
            issued_at=now,
            points=1 + i % 10,
            reason="bench",
        )
        for i in range(COMMANDS)
    ]


def _messages() -> list[Command]:
    now = datetime.now(UTC)
    return [
        SendMessage(
            command_id=f"bench-msg-{i}",
            member_id=f"member-{i % MEMBERS}",
            offer_id="bench",
            source_event_id=f"event-{i}",
            issued_at=now,
            channel=Channel.EMAIL if i % 2 else Channel.SMS,
            template_id="news",
            params={"headline": "Hello", "text": "news for you"},
            marketing=False,
        )
        for i in range(MESSAGES)
    ]


def _check_ledger(world: World) -> None:
    entries = world.scalar("SELECT count(*) FROM entries")
    balance = world.scalar("SELECT sum(balance) FROM accounts")
    expected = sum(1 + i % 10 for i in range(COMMANDS))
    if entries != COMMANDS or balance != expected:
        raise RuntimeError(
            f"ledger wrong: {entries} entries (want {COMMANDS}), balance {balance} "
            f"(want {expected})"
        )


def _check_deliveries(world: World) -> None:
    counts = world.sinks.log.counts()
    sent = world.scalar("SELECT count(*) FROM deliveries WHERE status = 'sent'")
    if counts["total"] != MESSAGES or counts["duplicate_keys"] or sent != MESSAGES:
        raise RuntimeError(f"deliveries wrong: sinks {counts}, {sent} rows sent")


def _cleanup(world: World, topic_names: list[str]) -> None:
    admin = kafka.admin(world.kafka, "bench")
    groups = [
        g.group_id
        for g in admin.list_consumer_groups(request_timeout=10).result(15).valid or []
        if g.group_id.startswith(world.group_prefix)
    ]
    futures = list(admin.delete_topics(topic_names).values())
    if groups:
        futures += list(admin.delete_consumer_groups(groups, request_timeout=10).values())
    for future in futures:
        try:
            future.result(30)
        except Exception as exc:  # best effort: report, do not hide the figures
            print(f"cleanup: {exc}", file=sys.stderr)
    url = world.database.database_url.get_secret_value()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(world.schema))
        )


def run() -> list[dict[str, object]]:
    run_id = uuid.uuid4().hex[:8]
    topics = TopicSettings(prefix=f"bench.{run_id}.", partitions=PARTITIONS)
    kafka_settings = KafkaSettings()
    wanted = [s for s in catalog(topics) if not s.name.endswith(("snapshots", "events"))]
    apply(kafka.admin(kafka_settings, "bench"), plan(wanted, {}), fix=False)
    sinks = Sinks(smtp_port=free_port(), http_port=free_port()).start()
    world = World(
        kafka_settings,
        DatabaseSettings(),
        topics,
        f"bench_actions_{run_id}",
        f"bench.{run_id}.actions",
        sinks,
    )
    codec = make_codec(kafka_settings)
    bonus_topic = topics.name(COMMANDS_BONUS)
    try:
        fill_s = _produce(world, COMMANDS_BONUS, _accruals())
        raw_s = min(_read(world, COMMANDS_BONUS, COMMANDS) for _ in range(3))
        decode_s = _read(
            world, COMMANDS_BONUS, COMMANDS, lambda m: codec.decode(m.value(), bonus_topic)
        )
        ledger = _run_service(world, "bonus", COMMANDS)
        _check_ledger(world)
        notify: ServiceRun | None = None
        if MESSAGES:
            _produce(world, COMMANDS_NOTIFY, _messages())
            notify = _run_service(world, "notify", MESSAGES)
            _check_deliveries(world)
    finally:
        sinks.stop()
        _cleanup(world, [s.name for s in wanted])

    def row(
        stage: str, n: int, seconds: float, service: ServiceRun | None = None
    ) -> dict[str, object]:
        return {
            "stage": stage,
            "messages": f"{n:,}",
            "seconds": f"{seconds:.2f}",
            "per second": f"{n / seconds:,.0f}",
            "vs raw read": f"{raw_s / seconds * n / COMMANDS:.2g}x",
            "peak RSS": f"{service.peak_rss_mib:.0f} MiB" if service else "",
            "CPU s": f"{service.cpu_s:.1f}" if service else "",
        }

    rows = [
        row("produce BonusAccrue (encode + send)", COMMANDS, fill_s),
        row("raw confluent-kafka read (best of 3)", COMMANDS, raw_s),
        row("read + Avro decode", COMMANDS, decode_s),
        row(
            f"ledger, exactly-once (service, {PARTITIONS} partitions)",
            COMMANDS,
            ledger.seconds,
            ledger,
        ),
    ]
    if notify is not None:
        rows.append(row("notify: email + SMS to local sinks", MESSAGES, notify.seconds, notify))
    return rows
