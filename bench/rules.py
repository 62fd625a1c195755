"""Rules benchmark: the pure engine, one real worker Kafka to Kafka, replay, the worker's RSS.

Rows (``./run bench rules``; ``BENCH_RULES_EVENTS`` likes, default 10,000):

* the pure ``evaluate_all`` with the acceptance set (``services/rules/examples``)
  loaded, and the worker's per-event path (``process`` + the member record's
  bytes), both in this process (``services.rules.bench``);
* one real ``python -m services.rules worker`` (rocksdb store) on fresh topics,
  schema and app id: links first (their commands arriving proves the worker is
  assigned and warm), then the likes; time from producing the first like to the
  last command on the command topics. The commands received are checked against
  the pure ``process`` over the same events (same ids, same count). The ratio is
  to a raw confluent-kafka consumer reading the same ``social.events`` topic in
  the same run;
* replay ``--dry-run`` of ``likes-5-then-1`` over that topic (events/s read);
* the worker's peak RSS (``VmHWM``) before it is stopped.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

from confluent_kafka import KafkaError
from psycopg import sql

from services.contracts import models as m
from services.contracts.codec import make_codec
from services.contracts.topics import EVENTS, TopicSettings, catalog, ensure
from services.rules import bench as pure
from services.rules.offers import load_offer
from services.rules.processing import COMMAND_TOPIC, Link, MemberRecord, link_key, process, resolve
from services.rules.replay import run_replay
from services.rules.settings import RulesSettings
from services.rules.store import EXAMPLES_DIR, OfferStore
from services.runtime import db, kafka
from services.runtime.settings import DatabaseSettings, KafkaSettings

ROOT = Path(__file__).resolve().parents[1]
LIKES = int(os.environ.get("BENCH_RULES_EVENTS", "10000"))
MEMBERS = 300
PARTITIONS = 6
DEADLINE_S = 120.0
BASE = datetime(2025, 3, 1, tzinfo=UTC)


def _events() -> tuple[list[m.DomainEvent], list[m.DomainEvent]]:
    """Links of ``MEMBERS`` users, then likes (every 10th an unlike of the user's previous post)."""
    links: list[m.DomainEvent] = [
        m.ProfileLinked.build(
            network="vk",
            social_user_id=str(u),
            member_id=f"M{u}",
            registration=False,
            observed_at=BASE,
            snapshot_at=BASE,
        )
        for u in range(MEMBERS)
    ]
    likes: list[m.DomainEvent] = []
    for i in range(LIKES):
        user, post = i % MEMBERS, i // MEMBERS + 1
        at = BASE + timedelta(hours=1, seconds=i * 10)
        kind = m.PostUnliked if i % 10 == 9 and post > 1 else m.PostLiked
        likes.append(
            kind.build(
                network="vk",
                group_id=1001,
                social_user_id=str(user),
                post_id=post - 1 if kind is m.PostUnliked else post,
                observed_at=at,
                snapshot_at=at,
                previous_snapshot_at=at - timedelta(hours=1),
            )
        )
    return links, likes


def _expected(events: list[m.DomainEvent]) -> tuple[set[str], set[str]]:
    """Command ids the pure path gives for the links, and for the rest."""
    offers = [load_offer(p) for p in sorted(EXAMPLES_DIR.glob("*.yaml"))]
    tz = ZoneInfo("Europe/Moscow")  # the worker's default RULES_TIMEZONE
    links: dict[str, Link] = {}
    records: dict[str, MemberRecord] = {}
    ids: tuple[set[str], set[str]] = (set(), set())
    for event in events:
        key = link_key(event)
        new, rule_event = resolve(links.get(key), event)
        if new is not None:
            links[key] = new
        if rule_event is None:
            continue
        result = process(
            offers,
            records.get(rule_event.member_id, MemberRecord()),
            rule_event,
            tz=tz,
            issued_at=BASE,
        )
        records[rule_event.member_id] = result.record
        target = ids[0] if isinstance(event, m.ProfileLinked) else ids[1]
        target.update(c.command_id for c in result.commands)
    return ids


class CommandCounter:
    """Counts raw messages on the command topics (decoded only after the timing)."""

    def __init__(self, settings: KafkaSettings, topics: list[str]) -> None:
        self._consumer = kafka.consumer(settings, f"bench.rules.reader.{uuid.uuid4().hex[:8]}")
        self._consumer.subscribe(topics)
        self.values: list[tuple[str, bytes]] = []
        self.last_at = 0.0

    def until(self, total: int, alive: Callable[[], None]) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while len(self.values) < total:
            alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.values)} of {total} commands in {DEADLINE_S:.0f}s")
            # Ask for no more than is missing: consume() waits out its timeout for a full batch.
            for msg in self._consumer.consume(min(1000, total - len(self.values)), 0.2):
                if msg.error() is None:
                    self.values.append((str(msg.topic()), bytes(msg.value() or b"")))
                    self.last_at = time.perf_counter()

    def command_ids(self, settings: KafkaSettings) -> list[str]:
        codec = make_codec(settings)
        kinds = tuple(m.COMMAND_TYPES.values())
        ids = []
        for topic, value in self.values:
            command = codec.decode(value, topic, kinds)
            assert isinstance(command, m.BonusAccrue | m.BonusDeduct | m.SendMessage
                              | m.CounterIncrement | m.MailingSet)  # fmt: skip
            ids.append(command.command_id)
        return ids

    def close(self) -> None:
        self._consumer.close()


def _raw_read(settings: KafkaSettings, topic: str, total: int) -> float:
    consumer = kafka.consumer(
        settings, f"bench.rules.raw.{uuid.uuid4().hex[:8]}", read_committed=True
    )
    consumer.subscribe([topic])
    seen, started = 0, None
    deadline = time.monotonic() + DEADLINE_S
    try:
        while seen < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw read: {seen} of {total}")
            for msg in consumer.consume(min(1000, total - seen), 0.5):
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(str(error))
                    continue
                if started is None:
                    started = time.perf_counter()
                seen += 1
    finally:
        consumer.close()
    return time.perf_counter() - (started or time.perf_counter())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Worker:
    """``python -m services.rules worker`` as a subprocess, health on a free port."""

    def __init__(self, env: dict[str, str], log: IO[bytes], log_path: Path) -> None:
        self.port = _free_port()
        self.log_path = log_path
        profile = os.environ.get("BENCH_RULES_PROFILE")  # a path: cProfile the worker into it
        wrap = ["-m", "cProfile", "-o", profile] if profile else []
        self.process = subprocess.Popen(
            [sys.executable, *wrap, "-m", "services.rules", "worker", "--loglevel", "warning"],
            cwd=ROOT,
            env={**env, "RULES_WORKER_HTTP_PORT": str(self.port)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def check(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the rules worker exited ({self.process.returncode}):\n{tail}")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            self.check()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the rules worker did not get ready")
            time.sleep(0.2)  # polling readiness with a deadline

    def cpu_s(self) -> float:
        """User + system CPU seconds the worker has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _produce(settings: KafkaSettings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = kafka.producer(settings, "bench-rules-fill", extra={"linger.ms": 20})
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("events not delivered")


def _cleanup(
    settings: KafkaSettings, database: DatabaseSettings, prefix: str, app_id: str, schema: str
) -> None:
    admin = kafka.admin(settings, "bench-rules")
    names = [t for t in admin.list_topics(timeout=30).topics if t.startswith((prefix, app_id))]
    if names:
        for future in admin.delete_topics(names).values():
            future.result()
    with db.connect(database, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def run() -> list[dict[str, object]]:  # noqa: PLR0915  (one linear scenario)
    rows: list[dict[str, object]] = []
    engine, worker_path, record_bytes = pure.measure()
    rows.append(
        {
            "stage": "pure evaluate_all, 9 example offers",
            "events/s": f"{engine:,.0f}",
            "vs raw read": "",
            "note": "this process, 20,000 events, 1,000 members",
        }
    )
    rows.append(
        {
            "stage": "worker path: process + record bytes",
            "events/s": f"{worker_path:,.0f}",
            "vs raw read": "",
            "note": f"member record {record_bytes:,} B after 20 events",
        }
    )

    settings = KafkaSettings()
    database = DatabaseSettings()
    tag = uuid.uuid4().hex[:8]
    topics = TopicSettings(prefix=f"bench.rules.{tag}.", partitions=PARTITIONS)
    app_id, schema = f"bench.social-loyalty.rules.{tag}", f"bench_rules_{tag}"
    admin = kafka.admin(settings, "bench-rules")
    specs = catalog(topics)
    ensure(admin, specs, fix=False)
    store = OfferStore(database, schema)
    store.migrate()
    store.load_examples(activate=True)
    codec = make_codec(settings)
    events_topic = topics.name(EVENTS)
    links, likes = _events()
    link_ids, like_ids = _expected(links + likes)

    def encoded(events: list[m.DomainEvent]) -> list[tuple[bytes, bytes]]:
        return [(e.key().to_bytes(), codec.encode(e, events_topic)) for e in events]

    command_topics = sorted({topics.name(base) for base in COMMAND_TOPIC.values()})
    try:
        with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
            log_path = Path(tmp) / "worker.log"
            env = {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                "DATABASE_URL": database.database_url.get_secret_value(),
                "TOPIC_PREFIX": topics.prefix,
                "TOPIC_PARTITIONS": str(PARTITIONS),
                "RULES_APP_ID": app_id,
                "RULES_DB_SCHEMA": schema,
                "RULES_STORE": "rocksdb://",
                "RULES_DATA_DIR": str(Path(tmp) / "data"),
            }
            reader = CommandCounter(settings, command_topics)
            with log_path.open("ab") as log:
                worker = Worker(env, log, log_path)
                try:
                    worker.wait_ready()
                    _produce(settings, events_topic, encoded(links))
                    reader.until(len(link_ids), worker.check)
                    like_records = encoded(likes)
                    cpu_before, started = worker.cpu_s(), time.perf_counter()
                    _produce(settings, events_topic, like_records)
                    reader.until(len(link_ids) + len(like_ids), worker.check)
                    worker_s = reader.last_at - started
                    cpu_us = (worker.cpu_s() - cpu_before) / len(likes) * 1e6
                    rss = worker.peak_rss_mib()
                finally:
                    worker.stop()
            reader.close()
            received = reader.command_ids(settings)
            if len(received) != len(set(received)) or set(received) != link_ids | like_ids:
                raise RuntimeError(
                    f"worker commands differ from the pure path: {len(received)} received, "
                    f"{len(set(received))} distinct, {len(link_ids | like_ids)} expected"
                )
        total = len(links) + len(likes)
        # Best of three: 10k messages are a few fetch round trips, so one read is noisy.
        raw_s = min(_raw_read(settings, events_topic, total) for _ in range(3))
        raw_rate = total / raw_s
        worker_rate = len(likes) / worker_s
        rows.append(
            {
                "stage": "raw confluent-kafka read of social.events",
                "events/s": f"{raw_rate:,.0f}",
                "vs raw read": "1",
                "note": f"{total:,} messages, {PARTITIONS} partitions, best of 3",
            }
        )
        rows.append(
            {
                "stage": "one rules worker, Kafka to Kafka",
                "events/s": f"{worker_rate:,.0f}",
                "vs raw read": f"{worker_rate / raw_rate:.2g}",
                "note": f"{len(likes):,} likes/unlikes, {MEMBERS} members, "
                f"{len(like_ids):,} commands, {worker_s:.1f} s, worker CPU {cpu_us:,.0f} us/event",
            }
        )

        rules_settings = RulesSettings(
            topics=topics, db_schema=schema, app_id=app_id, kafka=settings, database=database
        )
        offer = load_offer(EXAMPLES_DIR / "likes-5-then-1.yaml")
        report = run_replay(
            rules_settings,
            offer,
            start=BASE - timedelta(days=1),
            end=None,
            apply=False,
            notify=False,
        )
        replay_rate = report.messages_read / report.seconds
        rows.append(
            {
                "stage": "replay --dry-run likes-5-then-1",
                "events/s": f"{replay_rate:,.0f}",
                "vs raw read": f"{replay_rate / raw_rate:.2g}",
                "note": f"{report.messages_read:,} read in {report.seconds:.2f} s "
                "(incl. consumer start)",
            }
        )
        rows.append(
            {
                "stage": "rules worker peak RSS (VmHWM)",
                "events/s": f"{rss:.0f} MiB",
                "vs raw read": "",
                "note": "rocksdb store",
            }
        )
    finally:
        _cleanup(settings, database, topics.prefix, app_id, schema)
    return rows
