"""Rules benchmark: the pure engine, a raw read, a hand-written roofline and one real worker.

``./run bench rules`` (or ``.venv/bin/python -m bench rules`` with the stack env
exported) prints, in one run, over one realistic mix (``services.rules.bench.event_mix``:
links, members with a VK and an OK profile, likes, unlikes, like-unlike-like,
comments, joins and leaves, reposts, four months; ``BENCH_RULES_EVENTS``, default
100,000, for the throughput phases, plus the paced tail):

1. the pure ``processing.process`` over the mix's resolved events, with every example
   offer and with ``likes-5-then-1`` alone (events/s; also how many commands each
   worker run must deliver, and which);
2. the raw read: a plain read_committed confluent-kafka consumer reading the
   6-partition ``social.events`` topic to the end (``bench._stream.timed_read``, best
   of three), the ceiling;
3. the roofline: a minimal hand-written transactional loop doing ``likes-5-then-1``
   on the same topic (fastavro body decode, a dict of member state, a command per
   credited like or deducted unlike, offsets and commit at the worker's cadence);
4. one ``python -m services.rules worker`` subprocess per offer set (``likes-5-then-1``
   alone; every example offer), each with its own topic prefix, group and PG schema:
   the events are on the topic before the worker starts; once it is ready
   (``/readyz`` 200, offers checked on ``/offers``), its rate is the throughput
   phase's events over the time from its first command's creation to the moment
   the last expected command is readable read_committed; then a paced phase
   (``BENCH_RULES_PACED_RATE`` events/s for ``BENCH_RULES_PACED_S`` seconds) gives
   the event-to-command latency (command readable minus event produced). Every
   command id is checked against the pure path (no missing, none twice).

``BENCH_RULES_COMMIT_INTERVAL_S`` (default: the service's ``RULES_COMMIT_INTERVAL_S``
default) is the worker's and the roofline's commit interval.
``BENCH_RULES_PROFILE=<dir>`` runs each worker under cProfile (``<dir>/<run>.prof``);
``BENCH_RULES_PYSPY=<dir>`` records each worker's throughput phase with py-spy
(``<dir>/<run>.txt``, collapsed stacks) when ``py-spy`` is installed.
"""

from __future__ import annotations

import gc
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]
from fastavro import schemaless_reader, schemaless_writer
from psycopg import sql

from bench._stream import peak_rss_mib, produce_all, timed_read
from services.contracts import models as m
from services.contracts.codec import SINGLE_OBJECT_MAGIC, Codec, make_codec
from services.contracts.schemas import default_schema_set
from services.contracts.topics import EVENTS, TopicSettings, catalog, ensure, observe, plan
from services.rules.bench import TZ, event_mix, example_offers, resolve_all, run_process
from services.rules.offer_store import OfferStore
from services.rules.offers import Offer
from services.rules.processing import COMMAND_TOPIC, MemberRecord, decode_rule_event, process
from services.rules.settings import RulesSettings
from services.runtime import db, kafka
from services.runtime.settings import DatabaseSettings, KafkaSettings
from services.runtime.stream import StreamConfig

ROOT = Path(__file__).resolve().parents[1]
EVENTS_COUNT = int(os.environ.get("BENCH_RULES_EVENTS", "100000"))
PACED_RATE = float(os.environ.get("BENCH_RULES_PACED_RATE", "2000"))
PACED_S = float(os.environ.get("BENCH_RULES_PACED_S", "10"))
COMMIT_INTERVAL_S = float(
    os.environ.get(
        "BENCH_RULES_COMMIT_INTERVAL_S",
        str(RulesSettings.model_fields["commit_interval_s"].default),  # the service default
    )
)
COMMIT_EVERY = 5000  # the worker's default RULES_COMMIT_EVERY
PARTITIONS = 6
DEADLINE_S = float(os.environ.get("BENCH_RULES_DEADLINE_S", "600"))
QUIET_S = COMMIT_INTERVAL_S * 2 + 1.0
LIKES_OFFER = "likes-5-then-1"

TARGET_PURE = 60_000
TARGET_WORKER = {LIKES_OFFER: 20_000, "all": 8_000}
TARGET_ROOFLINE_SHARE = 0.5
TARGET_P99_S = 1.0


# ------------------------------------------------------------------ the private world


@dataclass(frozen=True)
class World:
    """One worker run's topics, group and PG schema; nothing shared with any other run."""

    label: str
    topics: TopicSettings
    app_id: str
    schema: str

    @classmethod
    def fresh(cls, tag: str, label: str) -> World:
        topics = TopicSettings(prefix=f"bench.rules.{tag}.{label}.", partitions=PARTITIONS)
        return cls(label, topics, f"bench.rules.{tag}.{label}", f"bench_rules_{tag}_{label}")

    @property
    def events_topic(self) -> str:
        return self.topics.name(EVENTS)

    @property
    def command_topics(self) -> list[str]:
        return sorted({self.topics.name(base) for base in COMMAND_TOPIC.values()})

    def create(
        self, settings: KafkaSettings, database: DatabaseSettings, offers: list[Offer]
    ) -> None:
        admin = kafka.admin(settings, "bench-rules")
        specs = catalog(self.topics, rules_app_id=self.app_id)
        ensure(admin, specs, fix=False)
        deadline = time.monotonic() + 60
        while any(not p.in_sync for p in plan(specs, observe(admin, [s.name for s in specs]))):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics under {self.topics.prefix} not created")
            time.sleep(0.2)  # waiting for the new topics' metadata
        store = OfferStore(database, self.schema)
        store.migrate()
        for offer in offers:
            store.create(offer.model_dump(mode="json"), author="bench")
            store.set_active(offer.id, True)


def _cleanup(
    settings: KafkaSettings, database: DatabaseSettings, tag: str, schemas: list[str]
) -> None:
    admin = kafka.admin(settings, "bench-rules")
    prefix = f"bench.rules.{tag}."
    names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names).values():
            future.result()
    with db.connect(database, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _encode(codec: Codec, topic: str, events: Sequence[m.DomainEvent]) -> list[tuple[bytes, bytes]]:
    """As the detector writes them: the Avro value, the key ``network:social_user_id``."""
    return [(e.key().to_bytes(), codec.encode(e, topic)) for e in events]


def _produce(settings: KafkaSettings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    produce_all(settings, topic, records, "bench-rules-fill")


# -------------------------------------------------------------------------- roofline


def _roofline(  # noqa: PLR0912, PLR0915  (the point is one flat hand-written loop)
    settings: KafkaSettings, topic: str, total: int, out_topic: str
) -> tuple[float, int]:
    """``likes-5-then-1`` by hand on one transactional producer: seconds from the first
    event read to the last commit, and the commands produced. Per event only what any
    implementation must do: decode the body, look up the link and the member's month,
    produce the command; offsets go with the commit every ``COMMIT_INTERVAL_S`` or
    ``COMMIT_EVERY`` records, as the worker does."""
    schemas = default_schema_set()
    writers = {fp: (w.name.rsplit(".", 1)[1], w.parsed) for fp, w in schemas.writers.items()}
    accrue_name, deduct_name = (
        "social_loyalty.commands.BonusAccrue",
        "social_loyalty.commands.BonusDeduct",
    )
    accrue, deduct = schemas.current[accrue_name], schemas.current[deduct_name]
    accrue_head = SINGLE_OBJECT_MAGIC + schemas.fingerprints[accrue_name]
    deduct_head = SINGLE_OBJECT_MAGIC + schemas.fingerprints[deduct_name]
    tag = uuid.uuid4().hex[:8]
    consumer = kafka.consumer(settings, f"bench.rules.roofline.{tag}")
    consumer.subscribe([topic])
    producer = kafka.producer(
        settings, "bench-rules-roofline", transactional_id=f"bench.rules.roofline.{tag}"
    )
    producer.init_transactions(30)
    links: dict[bytes, str] = {}
    months: dict[tuple[str, int, int], list[int]] = {}  # paid likes, points
    earned: dict[tuple[str, str, int], int] = {}  # what a like earned; 0 once taken back
    positions: dict[tuple[str, int], int] = {}
    seen = commands = records = 0
    started: float | None = None
    txn_started = 0.0
    in_txn = False

    def commit() -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(60)

    deadline = time.monotonic() + DEADLINE_S
    try:
        while seen < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"roofline: {seen} of {total}")
            for msg in consumer.consume(1000, 0.1):
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(str(error))
                    continue
                if started is None:
                    started = time.perf_counter()
                if not in_txn:
                    producer.begin_transaction()
                    in_txn, txn_started, records = True, time.monotonic(), 0
                positions[(str(msg.topic()), int(msg.partition() or 0))] = (
                    int(msg.offset() or 0) + 1
                )
                seen += 1
                records += 1
                value = msg.value() or b""
                name, schema = writers[value[2:10]]
                body = io.BytesIO(value)
                body.seek(10)
                event = schemaless_reader(body, schema, None)
                assert isinstance(event, dict)
                key = msg.key() or b""
                if name == "ProfileLinked":
                    links[key] = event["member_id"]
                    continue
                if name == "ProfileUnlinked":
                    links.pop(key, None)
                    continue
                if name not in {"PostLiked", "PostUnliked"} or event["network"] != "vk":
                    continue  # likes-5-then-1 pays VK likes only
                member = links.get(key)
                if member is None:
                    continue
                thing = (member, event["network"], event["post_id"])
                out = io.BytesIO()
                if name == "PostLiked":
                    if thing in earned:
                        continue
                    at = event["snapshot_at"].astimezone(TZ)
                    month = months.setdefault((member, at.year, at.month), [0, 0])
                    points = min(5 if month[0] == 0 else 1, 15 - month[1])
                    earned[thing] = max(points, 0)
                    if points <= 0:
                        continue
                    month[0] += 1
                    month[1] += points
                    out.write(accrue_head)
                    schemaless_writer(out, accrue, {
                        "command_id": f"{event['event_id']}:likes-5-then-1", "member_id": member,
                        "offer_id": LIKES_OFFER, "source_event_id": event["event_id"],
                        "replay": False, "issued_at": datetime.now(UTC), "points": points,
                        "reason": "like", "reverses": None, "budget": None,
                    })  # fmt: skip
                else:
                    points = earned.get(thing, 0)
                    if not points:
                        continue
                    earned[thing] = 0
                    out.write(deduct_head)
                    schemaless_writer(out, deduct, {
                        "command_id": f"{event['event_id']}:likes-5-then-1", "member_id": member,
                        "offer_id": LIKES_OFFER, "source_event_id": event["event_id"],
                        "replay": False, "issued_at": datetime.now(UTC), "points": points,
                        "reason": "unlike", "reverses": None,
                    })  # fmt: skip
                while True:
                    try:
                        producer.produce(out_topic, out.getvalue(), key=member.encode())
                        break
                    except BufferError:
                        producer.poll(0.05)
                commands += 1
            producer.poll(0)
            if in_txn and (
                records >= COMMIT_EVERY or time.monotonic() - txn_started >= COMMIT_INTERVAL_S
            ):
                commit()
                in_txn = False
        if in_txn:
            commit()
    finally:
        consumer.close()
    return time.perf_counter() - (started or time.perf_counter()), commands


# ------------------------------------------------------------------------ the worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Worker:
    """``python -m services.rules worker`` as a subprocess, health on a free port."""

    def __init__(self, env: dict[str, str], log: IO[bytes], log_path: Path, label: str) -> None:
        self.port = _free_port()
        self.log_path = log_path
        profile = os.environ.get("BENCH_RULES_PROFILE")
        wrap = ["-m", "cProfile", "-o", str(Path(profile) / f"{label}.prof")] if profile else []
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

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return bytes(r.read())
        except OSError:
            return None

    def wait_ready(self, offers: set[str]) -> None:
        """Until ``/readyz`` answers 200 and ``/offers`` lists exactly ``offers``."""
        deadline = time.monotonic() + 120
        while True:
            self.check()
            if self._get("/readyz") is not None:
                loaded = self._get("/offers")
                if loaded is not None and {o["id"] for o in json.loads(loaded)} == offers:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("the rules worker did not get ready")
            time.sleep(0.05)  # polling readiness with a deadline

    def records(self, group: str) -> float:
        """``social_loyalty_stream_records_total`` of ``group``: records the loop handled."""
        text = (self._get("/metrics") or b"").decode()
        prefix = "social_loyalty_stream_records_total{"
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(prefix) and f'group="{group}"' in line
        )

    def cpu_s(self) -> float:
        """User + system CPU seconds the worker has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class PySpy:
    """``py-spy record`` of one process while it runs (nothing when py-spy is missing)."""

    def __init__(self, pid: int, out: Path | None) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.process: subprocess.Popen[bytes] | None = None
        if out is not None and Path(exe).exists():
            self.process = subprocess.Popen(
                [
                    exe,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(30)


class CommandReader(threading.Thread):
    """Reads the command topics read_committed, noting when each message became readable
    (wall clock) and when the worker created it; decodes only after the timing."""

    def __init__(self, settings: KafkaSettings, topics: list[str]) -> None:
        super().__init__(name="commands", daemon=True)
        self._consumer = kafka.consumer(
            settings,
            f"bench.rules.reader.{uuid.uuid4().hex[:8]}",
            extra={"fetch.wait.max.ms": 10},  # the instrument should not add latency
        )
        self.assigned = threading.Event()
        self._consumer.subscribe(topics, on_assign=lambda *_: self.assigned.set())
        self._halt = threading.Event()
        self.messages: list[tuple[float, int, str, bytes]] = []
        self.error: str | None = None

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                for msg in self._consumer.consume(1000, 0.05):
                    error = msg.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            self.error = str(error)
                        continue
                    now = time.time()
                    self.messages.append(
                        (now, msg.timestamp()[1], str(msg.topic()), bytes(msg.value() or b""))
                    )
        finally:
            self._consumer.close()

    def wait_quiet(self, done: Callable[[], bool]) -> None:
        """Until ``done()`` (the worker has handled every record) and then no command for
        ``QUIET_S``: a transaction still open commits within one commit interval."""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            if self.error is not None:
                raise RuntimeError(f"command reader: {self.error}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.messages)} commands after {DEADLINE_S:.0f}s")
            if done():
                count = len(self.messages)
                time.sleep(QUIET_S)  # one commit interval and then some, for the last commit
                if len(self.messages) == count and done():
                    return
            time.sleep(0.5)  # the counter comes from /metrics: polling it costs the worker CPU

    def close(self) -> None:
        self._halt.set()
        self.join(10)


@dataclass
class WorkerFigures:
    rate: float
    seconds: float
    commands: int
    cpu_us: float
    ready_to_first_s: float
    paced_rate: float
    latencies: list[float] = field(default_factory=list)
    rss_mib: float | None = None

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _paced(
    settings: KafkaSettings,
    topic: str,
    events: Sequence[m.DomainEvent],
    records: list[tuple[bytes, bytes]],
) -> tuple[dict[str, float], float]:
    """Produce at ``PACED_RATE``; the wall time each event was handed to the producer."""
    producer = kafka.producer(settings, "bench-rules-paced")
    produced: dict[str, float] = {}
    started = time.perf_counter()
    for i, (event, (key, value)) in enumerate(zip(events, records, strict=True)):
        delay = started + i / PACED_RATE - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # the pace itself
        produced[event.event_id] = time.time()
        producer.produce(topic, value, key=key)
        producer.poll(0)
    seconds = time.perf_counter() - started
    if producer.flush(30):
        raise RuntimeError("paced events not delivered")
    return produced, len(events) / seconds


@dataclass(frozen=True)
class Expected:
    """What the pure path says about one offer set over the mix, in snapshot order."""

    commands: dict[str, tuple[str, str]]  # command id -> (member id, source event id)
    resolved_main: int  # records the worker's by-member hop gets from the main phase
    resolved_paced: int
    single_profile: frozenset[str]  # members with one linked profile: one input partition


def _by_member_ids(settings: KafkaSettings, topic: str, offers: list[Offer]) -> set[str]:
    """The command ids ``process`` gives over the by-member topic in its partitions' order:
    exactly the order the worker evaluated each member's events in."""
    consumer = kafka.consumer(
        settings, f"bench.rules.check.{uuid.uuid4().hex[:8]}", extra={"enable.partition.eof": True}
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    records: dict[str, MemberRecord] = {}
    ids: set[str] = set()
    pending = set(range(PARTITIONS))
    deadline = time.monotonic() + DEADLINE_S
    try:
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}")
            for msg in consumer.consume(1000, 0.5):
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(str(error))
                    pending.discard(int(msg.partition() or 0))
                    continue
                event = decode_rule_event(msg.value() or b"")
                old = records.get(event.member_id, MemberRecord())
                records[event.member_id], specs = process(offers, old, event, tz=TZ)
                ids.update(c.command_id for c in specs)
    finally:
        consumer.close()
    return ids


def _check(
    settings: KafkaSettings,
    world: World,
    codec: Codec,
    *,
    messages: list[tuple[float, int, str, bytes]],
    main_read: int,
    produced: dict[str, float],
    expected: Expected,
    offers: list[Offer],
) -> list[float]:
    """Check the commands (none twice; exactly what ``process`` gives over the by-member
    topic; for single-profile members exactly the pure path's in snapshot order; the
    throughput phase's all read before the pace began); the paced commands' latencies."""
    kinds = tuple(m.COMMAND_TYPES.values())
    received: dict[str, str] = {}
    latencies: list[float] = []
    for i, (read_at, _created, topic, value) in enumerate(messages):
        command = codec.decode(value, topic, kinds)
        assert isinstance(command, m.BonusAccrue | m.BonusDeduct | m.SendMessage
                          | m.CounterIncrement | m.MailingSet)  # fmt: skip
        if command.command_id in received:
            raise RuntimeError(f"{world.label}: command {command.command_id} twice")
        received[command.command_id] = command.member_id
        if i >= main_read:
            latencies.append(read_at - produced[command.source_event_id])
        elif command.source_event_id in produced:
            raise RuntimeError(f"{world.label}: a paced event's command before the pace")
    replayed = _by_member_ids(settings, world.topics.name(f"{world.app_id}.by-member"), offers)
    single = expected.single_profile
    mine = {c for c, member in received.items() if member in single}
    pure = {c for c, (member, _) in expected.commands.items() if member in single}
    if set(received) != replayed or mine != pure:
        raise RuntimeError(
            f"{world.label}: {len(received):,} commands received; the by-member replay gives "
            f"{len(replayed):,} ({len(set(received) ^ replayed):,} differ); single-profile "
            f"members: {len(mine):,} received, {len(pure):,} by the pure path"
        )
    return latencies


def _worker_run(
    settings: KafkaSettings,
    database: DatabaseSettings,
    world: World,
    *,
    codec: Codec,
    main: Sequence[m.DomainEvent],
    paced: Sequence[m.DomainEvent],
    expected: Expected,
    offers: list[Offer],
    tmp: Path,
) -> WorkerFigures:
    """Throughput over ``main`` (already on the topic before the worker starts), then the
    latency of ``paced``; the commands checked against the pure path."""
    world.create(settings, database, offers)
    _produce(settings, world.events_topic, _encode(codec, world.events_topic, main))
    paced_records = _encode(codec, world.events_topic, paced)
    reader = CommandReader(settings, world.command_topics)
    reader.start()
    if not reader.assigned.wait(60):
        raise TimeoutError("the command reader got no partitions")
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "DATABASE_URL": database.database_url.get_secret_value(),
        "TOPIC_PREFIX": world.topics.prefix,
        "TOPIC_PARTITIONS": str(PARTITIONS),
        "RULES_APP_ID": world.app_id,
        "RULES_DB_SCHEMA": world.schema,
        "RULES_INSTANCE_ID": "0",
        "RULES_COMMIT_INTERVAL_S": str(COMMIT_INTERVAL_S),
        "RULES_COMMIT_EVERY": str(COMMIT_EVERY),
    }
    spy_dir = os.environ.get("BENCH_RULES_PYSPY")
    log_path = tmp / f"worker-{world.label}.log"
    main_records = len(main) + expected.resolved_main
    all_records = main_records + len(paced) + expected.resolved_paced
    try:
        with log_path.open("ab") as log:
            worker = Worker(env, log, log_path, world.label)
            try:
                worker.wait_ready({o.id for o in offers})
                ready_at, cpu_before = time.time(), worker.cpu_s()
                spy = PySpy(
                    worker.process.pid, Path(spy_dir) / f"{world.label}.txt" if spy_dir else None
                )

                def handled(total: int) -> Callable[[], bool]:
                    def done() -> bool:
                        worker.check()
                        return worker.records(world.app_id) >= total

                    return done

                reader.wait_quiet(handled(main_records))
                cpu = worker.cpu_s() - cpu_before
                spy.stop()
                main_read = len(reader.messages)
                first = min(created for _, created, _, _ in reader.messages) / 1000
                last = reader.messages[-1][0]
                produced, paced_rate = _paced(settings, world.events_topic, paced, paced_records)
                reader.wait_quiet(handled(all_records))
                rss = peak_rss_mib(worker.process.pid)
            except TimeoutError as exc:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise TimeoutError(f"{world.label}: {exc}; worker log:\n{tail}") from exc
            finally:
                worker.stop()
    finally:
        reader.close()
    latencies = _check(
        settings,
        world,
        codec,
        messages=reader.messages[:],
        main_read=main_read,
        produced=produced,
        expected=expected,
        offers=offers,
    )
    seconds = last - first
    return WorkerFigures(
        rate=len(main) / seconds,
        seconds=seconds,
        commands=main_read,
        cpu_us=cpu / len(main) * 1e6,
        ready_to_first_s=first - ready_at,
        paced_rate=paced_rate,
        latencies=latencies,
        rss_mib=rss,
    )


# ------------------------------------------------------------------------------ run


def _verdict(ok: bool, what: str) -> str:
    return f"{what}: {'met' if ok else 'MISSED'}"


def run() -> list[dict[str, object]]:
    settings, database = KafkaSettings(), DatabaseSettings()
    codec = make_codec(settings)
    if codec.framing != "single-object":
        raise RuntimeError("the roofline reads single-object framing; unset the schema registry")
    paced_count = int(PACED_RATE * PACED_S)
    mix = event_mix(EVENTS_COUNT + paced_count)
    main, paced = mix[: len(mix) - paced_count], mix[len(mix) - paced_count :]
    paced_ids = {e.event_id for e in paced}
    resolved = resolve_all(mix)
    resolved_paced = sum(1 for e in resolved if e.event_id in paced_ids)
    networks: dict[str, set[str]] = {}
    for event in mix:
        if isinstance(event, m.ProfileLinked):
            networks.setdefault(event.member_id, set()).add(event.network.value)
    single = frozenset(member for member, nets in networks.items() if len(nets) == 1)

    pure: dict[str, tuple[float, int]] = {}
    expected: dict[str, Expected] = {}
    offer_sets = {LIKES_OFFER: example_offers(LIKES_OFFER), "all": example_offers()}
    # The pure rows run with the collector settings the worker runs with
    # (StreamConfig.gc_threshold), the event models out of its walks.
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(StreamConfig.gc_threshold, 20, 100)
    for label, offers in offer_sets.items():
        seconds, commands = run_process(offers, resolved)
        flat = [c for specs in commands for c in specs]
        pure[label] = (len(resolved) / seconds, len(flat))
        expected[label] = Expected(
            {c.command_id: (c.member_id, c.source_event_id) for c in flat},
            len(resolved) - resolved_paced,
            resolved_paced,
            single,
        )
    gc.set_threshold(*thresholds)
    gc.unfreeze()

    tag = uuid.uuid4().hex[:8]
    reads = World.fresh(tag, "read")  # the raw read and the roofline, on a topic of their own
    worlds = {LIKES_OFFER: World.fresh(tag, "likes"), "all": World.fresh(tag, "all")}
    figures: dict[str, WorkerFigures] = {}
    try:
        reads.create(settings, database, [])
        _produce(settings, reads.events_topic, _encode(codec, reads.events_topic, main))
        raw_s = min(timed_read(settings, reads.events_topic, len(main)) for _ in range(3))
        out_topic = reads.topics.name("bench.roofline")
        admin = kafka.admin(settings, "bench-rules")
        for future in admin.create_topics([NewTopic(out_topic, PARTITIONS, 1)]).values():
            future.result()
        roof_s, roof_commands = _roofline(settings, reads.events_topic, len(main), out_topic)
        with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
            for label, offers in offer_sets.items():
                figures[label] = _worker_run(
                    settings,
                    database,
                    worlds[label],
                    codec=codec,
                    main=main,
                    paced=paced,
                    expected=expected[label],
                    offers=offers,
                    tmp=Path(tmp),
                )
    finally:
        schemas = [reads.schema] + [w.schema for w in worlds.values()]
        _cleanup(settings, database, tag, schemas)

    return _table(
        Results(
            events=len(mix),
            resolved=len(resolved),
            main=len(main),
            paced=len(paced),
            pure=pure,
            raw_rate=len(main) / raw_s,
            roof_rate=len(main) / roof_s,
            roof_commands=roof_commands,
            workers=figures,
        )
    )


@dataclass
class Results:
    """Everything one run measured."""

    events: int
    resolved: int
    main: int
    paced: int
    pure: dict[str, tuple[float, int]]
    raw_rate: float
    roof_rate: float
    roof_commands: int
    workers: dict[str, WorkerFigures]


def _table(r: Results) -> list[dict[str, object]]:
    raw_rate, roof_rate = r.raw_rate, r.roof_rate
    rows: list[dict[str, object]] = []

    def row(stage: str, rate: float | None, target: str, note: str) -> None:
        rows.append(
            {
                "stage": stage,
                "events/s": "" if rate is None else f"{rate:,.0f}",
                "vs raw read": "" if rate is None else f"{rate / raw_rate:.3f}",
                "vs roofline": "" if rate is None else f"{rate / roof_rate:.2f}",
                "target": target,
                "note": note,
            }
        )

    for label, (rate, count) in r.pure.items():
        offers_text = "9 example offers" if label == "all" else label
        target = _verdict(rate >= TARGET_PURE, f">= {TARGET_PURE:,}") if label == "all" else ""
        note = (
            f"this process (gc as the worker's), {r.resolved:,} resolved of {r.events:,} "
            f"events, {count:,} commands"
        )
        row(f"pure process, {offers_text}", rate, target, note)
    note = f"{r.main:,} events, {PARTITIONS} partitions, best of 3"
    row("raw read_committed read of social.events", raw_rate, "", note)
    note = f"{r.roof_commands:,} commands, commit every {COMMIT_INTERVAL_S:g} s / {COMMIT_EVERY:,}"
    row(f"roofline: hand-written EOS loop, {LIKES_OFFER}", roof_rate, "", note)
    for label, fig in r.workers.items():
        offers_text = "9 example offers" if label == "all" else label
        least = TARGET_WORKER[label]
        ok = fig.rate >= least
        wanted = f">= {least:,}"
        if label == LIKES_OFFER:
            ok = ok and fig.rate >= TARGET_ROOFLINE_SHARE * roof_rate
            wanted += f" and >= {TARGET_ROOFLINE_SHARE:g} roofline"
        note = (
            f"{r.main:,} events, {fig.commands:,} commands in {fig.seconds:.2f} s, "
            f"worker CPU {fig.cpu_us:,.0f} us/event, ready->first command "
            f"{fig.ready_to_first_s:.1f} s, peak RSS {fig.rss_mib or 0:.0f} MiB"
        )
        row(f"rules worker, {offers_text}", fig.rate, _verdict(ok, wanted), note)
        p99 = fig.quantile(0.99)
        note = (
            f"p50 {fig.quantile(0.5) * 1000:,.0f} ms, p99 {p99 * 1000:,.0f} ms, "
            f"max {max(fig.latencies) * 1000:,.0f} ms over {len(fig.latencies):,} commands "
            f"({r.paced:,} events in {PACED_S:g} s)"
        )
        stage = f"  paced {fig.paced_rate:,.0f} events/s, event->command"
        row(stage, None, _verdict(p99 <= TARGET_P99_S, f"p99 <= {TARGET_P99_S:g} s"), note)
    return rows
