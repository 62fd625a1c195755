"""The PostgreSQL-sink variant of the stream runtime: consumers whose effects are rows.

Every consumer that writes PostgreSQL (the four actions consumers, the detector's read
model) runs on :class:`PgSinkWorker`, so the exactly-once argument is written once:

* **effects and input offsets in ONE database transaction.** A batch is applied in
  one transaction together with the consumer's position (``consumer_offsets``) and
  the records it has to publish (``outbox``). On partition assignment the worker
  seeks to the positions stored in PostgreSQL, not to Kafka's committed offsets
  ("storing offsets outside Kafka"), so a crash anywhere replays exactly the batches
  whose transaction did not commit. Kafka's committed offset is written after the
  commit too, only so lag dashboards move; nothing reads it back.
* **zombie fencing.** Storing an offset is a compare-and-set against what this
  worker last stored; a worker that lost a partition without noticing finds it moved
  and rolls its batch back (:class:`OffsetConflictError`).
* **the outbox.** Records to publish (outcomes, dead letters) are rows written in the
  batch's transaction and sent through :class:`~services.runtime.sender.Sender` after
  the commit: at least once, never for a batch that rolled back. A timer
  (``scheduler_interval_s``, between batches, under traffic too) re-sends rows that
  stayed unpublished and lets the handler do timed work.
* **the bad-record policy.** A failure that is *transient* (PostgreSQL unreachable or
  the connection lost, a serialization failure or deadlock, a read-only standby, a
  missing grant or table, the broker away, a zombie's offset conflict, or what the
  handler lists in ``transient``: :data:`TRANSIENT`) rolls back,
  rewinds to the stored offsets and retries with backoff; ``not_ready`` says so while
  it lasts and nothing is dead-lettered. Any other exception means some record of the
  batch cannot be applied: the batch is applied again **one record per
  transaction**, and a record that raises alone becomes a dead letter (source topic,
  partition, offset, key, value, error class and message) written to the outbox in
  the same transaction as its offset advance; the next record goes on. A record that
  does not decode is a dead letter at once.
* **honest health.** :meth:`PgSinkWorker.not_ready` is ``None`` only while the loop
  polls, has had its first assignment and is not failing; an unrecoverable error
  ends :meth:`PgSinkWorker.run` with the exception.

A service brings a :class:`Handler`: ``prepare`` (its own committed transaction, before
any side effect outside PostgreSQL), ``perform`` (the side effect, e.g. an SMTP send,
no transaction open) and ``apply`` (in the batch's transaction, returns what to
publish). A read model or a ledger needs only ``apply``. ``apply`` must be safe to run
again on any subset of a batch that rolled back (it is, when it keys its effects by
an id, as every consumer here does).

The tables (the ``pgsink`` migrations in ``services/runtime/migrations/``) live in
the service's schema, next to its effects.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import psycopg
from confluent_kafka import (
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)
from prometheus_client import REGISTRY, CollectorRegistry
from psycopg import sql

from services.contracts.codec import Codec, DecodeError
from services.contracts.headers import Headers, headers_or_none
from services.contracts.models import DeadLetter, Record
from services.contracts.topics import DEADLETTER, TopicSettings
from services.runtime import kafka
from services.runtime.checkpoint import CheckpointError, CheckpointWorker, TopicKey
from services.runtime.db import DatabaseUnavailableError, connect
from services.runtime.health import Dependencies, probes
from services.runtime.metric_set import MetricSet
from services.runtime.sender import DeliveryError, Sender
from services.runtime.settings import DatabaseSettings, KafkaSettings

log = logging.getLogger(__name__)


class PgSinkMetrics(MetricSet):
    """The PostgreSQL sink's metrics, labelled by consumer group."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.records = self.counter(
            "social_loyalty_pgsink_records_total",
            "Records consumed and committed (applied or dead-lettered).",
            "group",
        )
        self.batch_size = self.histogram(
            "social_loyalty_pgsink_batch_size",
            "Messages per committed batch.",
            "group",
            buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000),
        )
        self.apply_seconds = self.histogram(
            "social_loyalty_pgsink_apply_seconds",
            "Wall time from a batch's arrival to its PostgreSQL commit.",
            "group",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.dead = self.counter(
            "social_loyalty_pgsink_deadlettered_total",
            "Records written to the dead-letter topic: undecodable, or their apply raised.",
            "group",
            "cause",
        )
        self.isolated = self.counter(
            "social_loyalty_pgsink_isolated_batches_total",
            "Batches that raised and were applied again one record per transaction.",
            "group",
        )
        self.failures = self.counter(
            "social_loyalty_pgsink_transient_failures_total",
            "Transient failures: rolled back, rewound to the stored offsets, retried with backoff.",
            "group",
        )
        self.offset_conflicts = self.counter(
            "social_loyalty_pgsink_offset_conflicts_total",
            "Batches rolled back because another consumer had moved the stored offsets (a zombie).",
            "group",
        )
        self.republished = self.counter(
            "social_loyalty_pgsink_outbox_republished_total",
            "Outbox rows sent again by the timer (their delivery had failed or was never seen).",
            "group",
        )
        self.assigned = self.gauge(
            "social_loyalty_pgsink_assigned_partitions", "Input partitions assigned.", "group"
        )


OutboxRow = tuple[int, str, bytes | None, bytes]
"""(outbox id, real topic, key, value)"""

R = TypeVar("R")


def use_schema(conn: psycopg.Connection, schema: str) -> None:
    """Point an open connection's unqualified names at ``schema``."""
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    if not conn.autocommit:
        conn.commit()


@dataclass(frozen=True)
class Item(Generic[R]):
    """A decoded record and where it came from (for dead letters)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    record: R

    def dead_letter(self, error: BaseException, group: str) -> DeadLetter:
        return DeadLetter.for_error(
            error,
            topic=self.topic,
            partition=self.partition,
            offset=self.offset,
            key=self.key,
            value=self.value,
            consumer_group=group,
        )


@dataclass(frozen=True)
class Emit:
    """A record to publish after the commit; ``base_topic`` is a catalog name."""

    base_topic: str
    key: bytes | None
    record: Record

    @classmethod
    def dead(cls, letter: DeadLetter) -> Emit:
        return cls(DEADLETTER, letter.key, letter)


Work = Callable[[psycopg.Connection], list[Emit]]


class Handler(Generic[R]):
    """One input topic's logic; subclasses override ``apply`` (and, for side effects
    outside PostgreSQL, ``prepare`` and ``perform``)."""

    name: ClassVar[str]
    topic: ClassVar[str]
    """The input topic's catalog name."""
    expected: ClassVar[tuple[type, ...]]
    """Record types the codec accepts on the topic; anything else is a dead letter."""
    transient: ClassVar[tuple[type[BaseException], ...]] = ()
    """Exceptions of this handler that mean "retry the batch", not "a bad record"."""

    group: str = ""
    _recorder: Callable[[Work], None] | None = None

    def bind(self, group: str, recorder: Callable[[Work], None]) -> None:
        """Called by the worker that runs this handler."""
        self.group = group
        self._recorder = recorder

    def record(self, work: Work) -> None:
        """Run ``work`` in a transaction of its own and queue the records it returns in
        the outbox of that same transaction; published with the batch. For handlers
        that must commit before the batch does (a claim before a send)."""
        if self._recorder is None:
            raise RuntimeError(f"{type(self).__name__} is not bound to a worker")
        self._recorder(work)

    def prepare(self, conn: psycopg.Connection, items: list[Item[R]]) -> Any:
        return None

    def perform(self, prepared: Any) -> Any:
        return prepared

    def apply(self, conn: psycopg.Connection, items: list[Item[R]], performed: Any) -> list[Emit]:
        raise NotImplementedError

    def idle(self, conn: psycopg.Connection) -> Any:
        """Called on the worker's timer, between batches, under traffic too: work
        outside any transaction (e.g. send delayed messages); its result goes to
        ``apply_idle``."""
        return None

    def apply_idle(self, conn: psycopg.Connection, performed: Any) -> list[Emit]:
        """Record what ``idle`` did, in a transaction with its outbox records."""
        return []

    def close(self) -> None:
        """Release senders and pools."""


@dataclass(frozen=True)
class PgSinkConfig:
    """How one worker runs."""

    group: str
    schema: str
    """PostgreSQL schema of ``consumer_offsets`` and ``outbox`` (and, usually, the effects)."""
    instance_id: str | None = None
    """Static membership: ``group.instance.id`` = ``<group>.<instance_id>``."""
    batch_size: int = 1000
    poll_timeout_s: float = 0.5
    session_timeout_ms: int = 10_000
    scheduler_interval_s: float = 5.0
    outbox_retry_after_s: float = 10.0
    stale_after_s: float = 300.0
    """``not_ready`` once the loop has made no progress for this long (stuck)."""
    max_backoff_s: float = 5.0
    source: str = "actions"
    """Who writes the outcomes: their ``ce_source`` header is ``social-loyalty/<source>``."""


class OffsetConflictError(RuntimeError):
    """Another consumer moved a stored offset: this one is a zombie for that partition."""


class PgSinkError(CheckpointError):
    """The worker cannot go on (a fatal consumer error)."""


TRANSIENT: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,  # connection lost, admin shutdown, deadlock, serialization
    psycopg.InterfaceError,  # the connection is closed
    DatabaseUnavailableError,  # no new connection
    # The database, not the record: a failover to a read-only standby, a lost grant, a
    # table gone. Dead-lettering every record would empty the topic into the DLQ.
    psycopg.errors.ReadOnlySqlTransaction,
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,  # a deploy ahead of its migration
    psycopg.errors.UndefinedFunction,
    psycopg.errors.InvalidSchemaName,
    KafkaException,
    DeliveryError,
    OffsetConflictError,
)
"""Failures that say nothing about the records: roll back, rewind, retry."""


class PgSinkWorker(CheckpointWorker, Generic[R]):
    """Runs one :class:`Handler` until ``stop`` is set (SIGTERM sets it): the
    PostgreSQL offset store of the checkpoint protocol
    (:class:`~services.runtime.checkpoint.CheckpointWorker`)."""

    def __init__(
        self,
        handler: Handler[R],
        config: PgSinkConfig,
        *,
        kafka_settings: KafkaSettings,
        database: DatabaseSettings,
        topics: TopicSettings,
        codec: Codec,
        stop: threading.Event | None = None,
        partitioners: Mapping[str, str] | None = None,
        partition_counts: Mapping[str, int] | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        super().__init__(
            config,
            dependencies=Dependencies(probes(database=database, kafka_settings=kafka_settings)),
            stop=stop,
        )
        self.kafka_settings = kafka_settings
        self.database = database
        self.topics = topics
        self.config = config
        self.handler = handler
        self.codec = codec
        self.stop = self.stop_event
        self.topic = topics.name(handler.topic)
        self.deadletter_topic = topics.name(DEADLETTER)
        handler.bind(self.group, self._record)
        self._partitioners = dict(partitioners or {})
        self._partition_counts = dict(partition_counts or {})
        self._published: list[int] = []  # acknowledged outbox ids, deleted in the next txn
        self._unsettled: list[int] = []  # sent, acknowledgements not all in yet
        self._unsettled_since = 0.0
        self._next_tick = 0.0
        self._staged: list[OutboxRow] = []
        self._headers: dict[int, Headers | None] = {}  # outbox id -> its headers (None: none)
        self.source = config.source
        self._conn: psycopg.Connection | None = None
        self._sender: Sender | None = None
        self._ticked = False
        self._in_batch = False  # this step applies records
        self._failing_batch = False  # the failure came with records: wait for them
        self._closed = False
        self._labels = {"group": self.group}
        self._metrics = PgSinkMetrics.on(registry)
        self.applied_messages = 0

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.database, autocommit=True)
            use_schema(self._conn, self.config.schema)
        return self._conn

    # ----------------------------------------------------------------- running

    def start(self) -> None:
        """Build the clients, publish what an earlier run left in the outbox, subscribe."""
        config = self.config
        producer = kafka.producer(self.kafka_settings, self.group)
        self._sender = Sender(
            producer,
            native="consistent_random",  # librdkafka's default, the outbox topics' one
            partitioners=self._partitioners,
            partition_counts=self._partition_counts,
        )
        extra: dict[str, Any] = {
            "session.timeout.ms": config.session_timeout_ms,
            "heartbeat.interval.ms": max(1000, config.session_timeout_ms // 5),
            "partition.assignment.strategy": "range",
            "auto.offset.reset": "error",  # a stored offset gone from the log stops us
        }
        if config.instance_id:
            extra["group.instance.id"] = f"{self.group}.{config.instance_id}"
        self._publish_leftovers()
        self._consumer = kafka.consumer(self.kafka_settings, self.group, extra=extra)
        self._consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        self._last_progress = time.monotonic()

    def step(self, timeout: float | None = None) -> int:
        """One poll and what follows (:meth:`CheckpointWorker.step`); starts the
        clients on the first call."""
        if self._consumer is None:
            self.start()
        self._ticked = self._in_batch = False
        return super().step(timeout)

    def _healthy_again(self, messages: list[Message]) -> bool:
        # the failed batch went through after the rewind, or, for a failure between
        # batches, the timer's database work did
        return bool(messages) or (self._ticked and not self._failing_batch) or not self._stored

    def _fail(self, exc: BaseException) -> None:
        self._metrics.failures.labels(**self._labels).inc()
        self._failing_batch = self._in_batch
        super()._fail(exc)

    def _discard(self) -> None:
        """The batch's transaction rolled back by itself; publish what the handler
        committed on its own (``record``), drop a broken connection."""
        try:
            self._publish(self._take_staged())
        finally:
            if self._conn is not None and (self._conn.broken or self._conn.closed):
                self._conn = None

    def _is_fatal(self, exc: BaseException) -> bool:
        return isinstance(exc, (CheckpointError, PgSinkError))

    def close(self) -> None:
        if self.dependencies is not None:
            self.dependencies.stop()
        if self._closed:
            return
        self._closed = True
        sender = self._sender
        if sender is not None:
            sender.producer.flush(10)
            self._settle()
        try:
            if self._published and self._conn is not None and not self._conn.closed:
                self._delete_published(self._conn)
        except psycopg.Error:
            log.warning("%s: could not trim the outbox on shutdown", self.group)
        if self._consumer is not None:
            try:
                self._consumer.close()
            except (KafkaException, RuntimeError):
                log.warning("%s: consumer close failed", self.group, exc_info=True)
            self._consumer = None
        self.handler.close()
        if self._conn is not None:
            self._conn.close()
        self._sender = None

    # -------------------------------------------------------------- rebalancing

    def _stored_offsets(self, keys: Sequence[TopicKey]) -> dict[TopicKey, int | None]:
        rows = self.conn.execute(
            "SELECT topic, partition, next_offset FROM consumer_offsets "
            "WHERE group_id = %s AND topic = %s AND partition = ANY(%s)",
            (self.group, self.topic, [partition for _, partition in keys]),
        ).fetchall()
        return {(str(topic), int(partition)): int(offset) for topic, partition, offset in rows}

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._take(partitions, consumer.assign)
        self._metrics.assigned.labels(**self._labels).set(len(self._stored))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._revoked_partitions(partitions)
        self._metrics.assigned.labels(**self._labels).set(len(self._stored))
        consumer.unassign()

    # ------------------------------------------------------------------ batches

    def _process(self, messages: list[Message]) -> None:
        self._in_batch = True
        self._handle(messages)

    def _after_poll(self, messages: list[Message]) -> None:
        sender = self._sender
        assert sender is not None
        sender.producer.poll(0)
        self._settle()
        tick = time.monotonic() >= self._next_tick
        if tick:
            self._next_tick = time.monotonic() + self.config.scheduler_interval_s
        if tick or not messages:
            self._idle(tick=tick)
        self._ticked = tick

    def _transient(self, exc: BaseException) -> bool:
        """True for a failure to retry. A ``PgSinkError`` (fenced, fatal consumer error)
        is re-raised by the callers before this is asked: it ends the worker."""
        return isinstance(exc, TRANSIENT + self.handler.transient)

    def _handle(self, messages: list[Message]) -> None:
        """The batch in one transaction; if it raises for another reason than a
        transient one, each of its records in a transaction of its own."""
        try:
            self._apply(messages)
        except PgSinkError:
            raise
        except Exception as exc:
            if self._transient(exc):
                raise
            self._metrics.isolated.labels(**self._labels).inc()
            log.warning(
                "%s: batch of %d failed (%s: %s); applying its records one by one",
                self.group, len(messages), type(exc).__name__, exc,
            )  # fmt: skip
            for message in messages:
                self._apply_alone(message)

    def _apply_alone(self, message: Message) -> None:
        try:
            self._apply([message])
        except PgSinkError:
            raise
        except Exception as exc:
            if self._transient(exc):
                raise
            self._dead_letter_failed(message, exc)

    def _apply(self, messages: list[Message]) -> None:
        started = time.perf_counter()
        items, dead, advance = self._decode(messages)
        if not advance:
            return
        handler = self.handler
        prepared = handler.prepare(self.conn, items) if items else None
        performed = handler.perform(prepared) if items else None
        with self.conn.transaction():
            emits = handler.apply(self.conn, items, performed) if items else []
            emits += [Emit.dead(letter) for letter in dead]
            self._store_offsets(advance)
            rows = self._outbox_add(emits)
            self._delete_published(self.conn)
        self._committed(advance, rows, len(messages), started)
        if dead:
            self._metrics.dead.labels(cause="decode", **self._labels).inc(len(dead))

    def _dead_letter_failed(self, message: Message, error: Exception) -> None:
        """The record raised alone: its dead letter and its offset advance, together."""
        where = (str(message.topic()), int(message.partition() or 0))
        offset = int(message.offset() or 0)
        if where not in self._stored or where in self._rewinding:
            return  # revoked meanwhile
        stored = self._stored[where]
        if stored is not None and offset < stored:
            return
        started = time.perf_counter()
        letter = DeadLetter.for_message(error, message, self.group)
        advance = {where: offset + 1}
        with self.conn.transaction():
            self._store_offsets(advance)
            rows = self._outbox_add([Emit.dead(letter)])
        log.warning("%s: dead-lettered %s[%d]@%d: %s: %s", self.group, where[0], where[1],
                    offset, letter.error_class, letter.reason)  # fmt: skip
        self._metrics.dead.labels(cause="apply", **self._labels).inc()
        self._committed(advance, rows, 1, started)

    def _committed(
        self, advance: dict[TopicKey, int], rows: list[OutboxRow], count: int, started: float
    ) -> None:
        consumer = self._consumer
        assert consumer is not None
        self._committed_offsets(advance)
        self._metrics.apply_seconds.labels(**self._labels).observe(time.perf_counter() - started)
        self._metrics.batch_size.labels(**self._labels).observe(count)
        self._metrics.records.labels(**self._labels).inc(count)
        self.applied_messages += count
        self._last_progress = time.monotonic()
        self._publish(self._take_staged() + rows)
        consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in advance.items()], asynchronous=True
        )

    def _store_position(self, ahead: dict[TopicKey, int]) -> None:
        """The positions into ``consumer_offsets`` (compare-and-set, as a batch's), then
        into Kafka's committed offsets for the dashboards."""
        consumer = self._consumer
        assert consumer is not None
        with self.conn.transaction():
            self._store_offsets(ahead)
        self._committed_offsets(ahead)
        consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in ahead.items()], asynchronous=True
        )

    def _decode(
        self, messages: list[Message]
    ) -> tuple[list[Item[R]], list[DeadLetter], dict[TopicKey, int]]:
        items: list[Item[R]] = []
        dead: list[DeadLetter] = []
        advance: dict[TopicKey, int] = {}
        for message in messages:  # admitted by the fence: at or past the stored offset
            where = (str(message.topic()), int(message.partition() or 0))
            offset = int(message.offset() or 0)
            advance[where] = offset + 1
            key, value = message.key(), message.value()
            try:
                decoded = self.codec.decode(value, where[0], self.handler.expected)
            except DecodeError as exc:
                dead.append(DeadLetter.for_message(exc, message, self.group))
                continue
            items.append(Item(where[0], where[1], offset, key, value, decoded))  # type: ignore[arg-type]
        return items, dead, advance

    def _store_offsets(self, advance: dict[TopicKey, int]) -> None:
        """Compare-and-set per partition: a consumer that lost a partition without
        noticing (a zombie) finds the stored offset moved and rolls back its batch."""
        for (topic, partition), next_offset in advance.items():
            expected = self._stored.get((topic, partition))
            if expected is None:
                cursor = self.conn.execute(
                    "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (self.group, topic, partition, next_offset),
                )
            else:
                cursor = self.conn.execute(
                    "UPDATE consumer_offsets SET next_offset = %s, updated_at = now() "
                    "WHERE group_id = %s AND topic = %s AND partition = %s AND next_offset = %s",
                    (next_offset, self.group, topic, partition, expected),
                )
            if cursor.rowcount != 1:
                self._metrics.offset_conflicts.labels(**self._labels).inc()
                raise OffsetConflictError(
                    f"{self.group}: stored offset of {topic}[{partition}] is not {expected}"
                )

    # ------------------------------------------------------------------- outbox

    def _record(self, work: Work) -> None:
        with self.conn.transaction():
            rows = self._outbox_add(work(self.conn))
        self._staged.extend(rows)
        self._last_progress = time.monotonic()

    def _take_staged(self) -> list[OutboxRow]:
        staged, self._staged = self._staged, []
        return staged

    def _outbox_add(self, emits: list[Emit]) -> list[OutboxRow]:
        if not emits:
            return []
        topics = [self.topics.name(emit.base_topic) for emit in emits]
        keys = [emit.key for emit in emits]
        values = [
            self.codec.encode(emit.record, topic) for emit, topic in zip(emits, topics, strict=True)
        ]
        headers = [headers_or_none(emit.record, self.source) for emit in emits]
        ids = self.conn.execute(
            "INSERT INTO outbox (source, topic, key, value) "
            "SELECT %s, t, k, v FROM unnest(%s::text[], %s::bytea[], %s::bytea[]) "
            "WITH ORDINALITY AS u(t, k, v, n) ORDER BY n RETURNING id",
            (self.group, topics, keys, values),
        ).fetchall()
        for row, h in zip(ids, headers, strict=True):
            self._headers[int(row[0])] = h
        return [
            (int(row[0]), t, k, v) for row, t, k, v in zip(ids, topics, keys, values, strict=True)
        ]

    def _delete_published(self, conn: psycopg.Connection) -> None:
        if self._published:
            conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", (self._published,))
            self._published = []

    def _headers_of(self, topic: str, value: bytes) -> Headers | None:
        """Headers of an outbox row written by an earlier run (read back from its value)."""
        try:
            return headers_or_none(self.codec.decode(value, topic), self.source)
        except DecodeError:
            return None

    def _publish(self, rows: list[OutboxRow]) -> None:
        """Send committed outbox rows without waiting for the acknowledgements; they
        are settled later (:meth:`_settle`) and acknowledged rows deleted in the next
        transaction. A row whose delivery failed stays in the outbox and the timer
        sends it again (:meth:`_republish_stale`): at least once."""
        if not rows:
            return
        sender = self._sender
        assert sender is not None
        if not self._unsettled:
            self._unsettled_since = time.monotonic()
        for row_id, topic, key, value in rows:
            # known when written; read back from the value only for a row of an earlier run
            # or one sent before (its entry is popped at the first send)
            headers = (
                self._headers.pop(row_id)
                if row_id in self._headers
                else self._headers_of(topic, value)
            )
            sender.send(topic, value, key, headers=headers)
            self._unsettled.append(row_id)
        sender.producer.poll(0)

    def _settle(self, wait_s: float = 0.0) -> None:
        """Once the producer has nothing in flight, the rows sent since the last
        settlement are acknowledged, unless a delivery failed among them: then they
        all stay in the outbox for the timer (a few sent twice; outbox records are at
        least once). Waits for the acknowledgements when sends pile up unsettled."""
        sender = self._sender
        if sender is None or not self._unsettled:
            return
        pending = len(sender.producer)
        if pending and (
            len(self._unsettled) > 4 * self.config.batch_size
            or time.monotonic() - self._unsettled_since > 1.0
        ):
            wait_s = max(wait_s, 5.0)
        if pending and wait_s:
            pending = sender.producer.flush(wait_s)
        if pending:
            return
        if sender.failures:
            log.warning("%s: %d outbox rows not all delivered (%s); the timer resends them",
                        self.group, len(self._unsettled), sender.failures[:3])  # fmt: skip
            sender.failures.clear()
        else:
            self._published.extend(self._unsettled)
        self._unsettled = []

    def _publish_leftovers(self) -> None:
        """Records committed by an earlier run that crashed before publishing them."""
        sender = self._sender
        assert sender is not None
        while True:
            rows = self.conn.execute(
                "SELECT id, topic, key, value FROM outbox WHERE source = %s ORDER BY id LIMIT 5000",
                (self.group,),
            ).fetchall()
            if not rows:
                return
            for _, topic, key, value in rows:
                headers = self._headers_of(str(topic), bytes(value))
                sender.send(str(topic), bytes(value), key, headers=headers)
            sender.flush(30)  # raises DeliveryError: the worker cannot start
            with self.conn.transaction():
                self.conn.execute(
                    "DELETE FROM outbox WHERE id = ANY(%s)", ([int(row[0]) for row in rows],)
                )
            log.info(
                "%s: published %d outbox records left by an earlier run", self.group, len(rows)
            )

    def _republish_stale(self) -> None:
        """Outbox rows of this group older than ``outbox_retry_after_s`` that are
        neither in flight nor acknowledged: their delivery failed (or the process that
        wrote them died), so send them again now instead of at the next start. Another
        process of the same group may send one too: outbox records are at least once
        and deduplicated downstream (by ``command_id``)."""
        rows = self.conn.execute(
            "SELECT id, topic, key, value FROM outbox WHERE source = %s "
            "AND created_at < now() - make_interval(secs => %s) AND NOT (id = ANY(%s)) "
            "ORDER BY id LIMIT 5000",
            (
                self.group,
                self.config.outbox_retry_after_s,
                sorted({*self._unsettled, *self._published}),
            ),
        ).fetchall()
        if rows:
            log.warning("%s: re-publishing %d undelivered outbox records", self.group, len(rows))
            self._metrics.republished.labels(**self._labels).inc(len(rows))
            self._publish([(int(i), str(t), k, bytes(v)) for i, t, k, v in rows])

    def _idle(self, *, tick: bool) -> None:
        """Between batches: on the timer, re-publish stale outbox rows and run the
        handler's timed work; always trim acknowledged rows and publish what is staged."""
        performed = None
        if tick:
            self._republish_stale()
            performed = self.handler.idle(self.conn)
        rows: list[OutboxRow] = []
        if performed is not None or self._published:
            with self.conn.transaction():
                emits = self.handler.apply_idle(self.conn, performed) if performed else []
                rows = self._outbox_add(emits)
                self._delete_published(self.conn)
        self._publish(self._take_staged() + rows)
