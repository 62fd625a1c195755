"""The exactly-once-in-effect consumer every actions consumer runs on.

A batch of messages is applied in ONE PostgreSQL transaction together with the
consumer's position (``consumer_offsets``) and the records it has to publish
(``outbox``). On partition assignment the consumer seeks to the positions stored in
PostgreSQL, not to Kafka's committed offsets ("storing offsets outside Kafka"), so a
crash anywhere replays exactly the batches whose transaction did not commit. The
outbox is published after the commit: at least once, deduplicable by ``command_id``.
Kafka's committed offset is written after the commit too, only so lag dashboards
move; nothing reads it back.

A timer (``ACTIONS_SCHEDULER_INTERVAL_S``) runs between batches whether or not
messages arrive: it re-publishes this group's outbox rows that stayed unpublished
(a delivery that failed) and lets the handler do timed work (delayed messages).

The per-topic logic is a :class:`Handler`: ``prepare`` (its own committed
transaction, before any side effect outside PostgreSQL), ``perform`` (the side
effect, e.g. an SMTP send, with no transaction open) and ``apply`` (in the batch's
transaction). The ledger needs only ``apply``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg
from confluent_kafka import OFFSET_BEGINNING, KafkaError, Message, TopicPartition

from services.actions import metrics
from services.actions.schema import use_schema
from services.actions.settings import ActionsSettings
from services.contracts.codec import Codec, DecodeError
from services.contracts.models import Command, DeadLetter, Record
from services.contracts.topics import DEADLETTER, OUTCOMES
from services.runtime import kafka
from services.runtime.db import connect

log = logging.getLogger(__name__)

TopicKey = tuple[str, int]
OutboxRow = tuple[int, str, bytes | None, bytes]
"""(outbox id, topic, key, value)"""


@dataclass(frozen=True)
class Item:
    """A decoded command and where it came from (for dead letters)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    command: Command

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
    """A record to publish after the commit: an outcome or a dead letter."""

    base_topic: str
    key: bytes | None
    record: Record

    @classmethod
    def outcome(cls, record: Record, member_id: str) -> Emit:
        return cls(OUTCOMES, member_id.encode(), record)

    @classmethod
    def dead(cls, letter: DeadLetter) -> Emit:
        return cls(DEADLETTER, letter.key, letter)


class Handler:
    """One command topic's logic; subclasses override ``apply`` (and, for side effects
    outside PostgreSQL, ``prepare`` and ``perform``)."""

    name: ClassVar[str]
    topic: ClassVar[str]
    expected: ClassVar[tuple[type, ...]]

    group: str = ""

    def record(self, work: Callable[[psycopg.Connection], list[Emit]]) -> None:
        """Run ``work`` in a transaction of its own and queue the records it returns in
        the outbox of that same transaction; published with the batch (set by the
        engine). For handlers that must commit before the batch does."""
        raise NotImplementedError

    def prepare(self, conn: psycopg.Connection, items: list[Item]) -> Any:
        return None

    def perform(self, prepared: Any) -> Any:
        return prepared

    def apply(self, conn: psycopg.Connection, items: list[Item], performed: Any) -> list[Emit]:
        raise NotImplementedError

    def record_skipped(self, conn: psycopg.Connection, items: list[Item], reason: str) -> int:
        """Record ``items`` in ``skipped_commands`` with ``reason``, each command id once
        (an id already there is left as it is); returns how many rows were new."""
        return len(
            conn.execute(
                "INSERT INTO skipped_commands (command_id, kind, reason, source_topic, "
                "source_partition, source_offset) "
                "SELECT id, %s, %s, t, p, o "
                "FROM unnest(%s::text[], %s::text[], %s::int[], %s::bigint[]) AS u(id, t, p, o) "
                "ON CONFLICT (command_id) DO NOTHING RETURNING command_id",
                (
                    self.name,
                    reason,
                    [item.command.command_id for item in items],
                    [item.topic for item in items],
                    [item.partition for item in items],
                    [item.offset for item in items],
                ),
            ).fetchall()
        )

    def idle(self, conn: psycopg.Connection) -> Any:
        """Called on the engine's timer, between batches, under traffic too: work
        outside any transaction (e.g. send delayed messages); its result goes to
        ``apply_idle``."""
        return None

    def apply_idle(self, conn: psycopg.Connection, performed: Any) -> list[Emit]:
        """Record what ``idle`` did, in a transaction with its outbox records."""
        return []

    def close(self) -> None:
        """Release senders and pools."""


class OffsetConflictError(RuntimeError):
    """Another consumer moved a stored offset: this one is a zombie for that partition."""


class ExactlyOnceConsumer:
    """Runs one :class:`Handler` until ``stop`` is set (SIGTERM sets it)."""

    def __init__(
        self,
        settings: ActionsSettings,
        handler: Handler,
        codec: Codec,
        stop: threading.Event,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.codec = codec
        self.stop = stop
        self.group = settings.group(handler.name)
        handler.group = self.group
        handler.record = self._record  # type: ignore[method-assign]
        self.topic = settings.topics.name(handler.topic)
        self._positions: dict[TopicKey, int | None] = {}
        self._published: list[int] = []  # outbox ids to delete in the next transaction
        self._in_flight: set[int] = set()  # outbox ids produced, not yet acknowledged
        self._next_tick = 0.0
        self._staged: list[OutboxRow] = []
        self._conn: psycopg.Connection | None = None
        self._consumer: Any = None
        self._producer: Any = None
        self.ready = threading.Event()
        self.applied_messages = 0

    # ------------------------------------------------------------------ plumbing

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings.database, autocommit=True)
            use_schema(self._conn, self.settings.db_schema)
        return self._conn

    def _consumer_config(self) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "session.timeout.ms": self.settings.session_timeout_ms,
            "heartbeat.interval.ms": max(1000, self.settings.session_timeout_ms // 5),
            "partition.assignment.strategy": "range",
        }
        if self.settings.instance_id:
            extra["group.instance.id"] = f"{self.group}.{self.settings.instance_id}"
        return extra

    def run(self) -> None:
        """Poll, apply, publish until stopped; then close everything cleanly."""
        self._producer = kafka.producer(self.settings.kafka, f"actions.{self.handler.name}")
        self._consumer = kafka.consumer(
            self.settings.kafka, self.group, extra=self._consumer_config()
        )
        try:
            self._publish_leftovers()
            self._consumer.subscribe(
                [self.topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )
            failures = 0
            while not self.stop.is_set():
                try:
                    self._step()
                    failures = 0
                except Exception:
                    failures += 1
                    log.exception("%s: batch failed; rewinding to stored offsets", self.group)
                    self._publish(self._take_staged())  # committed by the handler already
                    self._recover()
                    self.stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
        try:
            if self._published and self._conn is not None and not self._conn.closed:
                self._delete_published(self._conn)
        except psycopg.Error:
            log.warning("%s: could not trim the outbox on shutdown", self.group)
        if self._consumer is not None:
            self._consumer.close()
        self.handler.close()
        if self._conn is not None:
            self._conn.close()

    # --------------------------------------------------------------- rebalancing

    def _stored_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        rows = self.conn.execute(
            "SELECT partition, next_offset FROM consumer_offsets "
            "WHERE group_id = %s AND topic = %s AND partition = ANY(%s)",
            (self.group, self.topic, list(partitions)),
        ).fetchall()
        return {int(partition): int(offset) for partition, offset in rows}

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        stored = self._stored_offsets([p.partition for p in partitions])
        for tp in partitions:
            offset = stored.get(tp.partition)
            tp.offset = OFFSET_BEGINNING if offset is None else offset
            self._positions[(tp.topic, tp.partition)] = offset
        consumer.assign(partitions)
        log.info(
            "%s: assigned %s at stored offsets %s",
            self.group,
            [p.partition for p in partitions],
            {p.partition: stored.get(p.partition) for p in partitions},
        )
        self.ready.set()

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._positions.pop((tp.topic, tp.partition), None)
        consumer.unassign()

    def _recover(self) -> None:
        """After a failed batch: drop the connection if it broke, and seek every
        assigned partition back to what PostgreSQL says, so nothing is skipped."""
        if self._conn is not None and self._conn.broken:
            self._conn = None
        try:
            stored = self._stored_offsets([p for _, p in self._positions])
            for topic, partition in list(self._positions):
                offset = stored.get(partition)
                self._positions[(topic, partition)] = offset
                target = OFFSET_BEGINNING if offset is None else offset
                self._consumer.seek(TopicPartition(topic, partition, target))
        except Exception:
            log.exception("%s: could not rewind; will retry", self.group)

    # ------------------------------------------------------------------- batches

    def _step(self) -> None:
        self._producer.poll(0)
        messages = self._consumer.consume(self.settings.batch_size, self.settings.poll_timeout_s)
        if messages:
            self._apply_batch(messages)
        tick = time.monotonic() >= self._next_tick
        if tick:
            self._next_tick = time.monotonic() + self.settings.scheduler_interval_s
        if tick or not messages:
            self._idle(tick=tick)

    def _apply_batch(self, messages: list[Message]) -> None:
        started = time.perf_counter()
        items, dead, advance = self._decode(messages)
        if not advance:
            return
        prepared = self.handler.prepare(self.conn, items) if items else None
        performed = self.handler.perform(prepared) if items else None
        with self.conn.transaction():
            emits = self.handler.apply(self.conn, items, performed) if items else []
            emits += [Emit.dead(letter) for letter in dead]
            self._store_offsets(advance)
            rows = self._outbox_add(emits)
            self._delete_published(self.conn)
        self._positions.update(advance)
        metrics.APPLY_SECONDS.labels(self.handler.name).observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.labels(self.handler.name).observe(len(messages))
        if dead:
            metrics.DEAD_LETTERS.labels(self.handler.name).inc(len(dead))
        self.applied_messages += len(messages)
        self._publish(self._take_staged() + rows)
        self._consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in advance.items()], asynchronous=True
        )

    def _decode(
        self, messages: list[Message]
    ) -> tuple[list[Item], list[DeadLetter], dict[TopicKey, int]]:
        items: list[Item] = []
        dead: list[DeadLetter] = []
        advance: dict[TopicKey, int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s: consumer error %s", self.group, error)
                continue
            where = (message.topic(), message.partition())
            if where not in self._positions:
                continue  # revoked while this batch was in flight
            stored = self._positions[where]
            offset = int(message.offset() or 0)
            if stored is not None and offset < stored:
                continue  # applied by an earlier transaction
            advance[where] = offset + 1
            try:
                command = self.codec.decode(message.value(), where[0], self.handler.expected)
            except DecodeError as exc:
                dead.append(
                    DeadLetter.for_error(
                        exc,
                        topic=where[0],
                        partition=where[1],
                        offset=offset,
                        key=message.key(),
                        value=message.value(),
                        consumer_group=self.group,
                    )
                )
                continue
            items.append(
                Item(where[0], where[1], offset, message.key(), message.value(), command)  # type: ignore[arg-type]
            )
        return items, dead, advance

    def _store_offsets(self, advance: dict[TopicKey, int]) -> None:
        """Compare-and-set per partition: a consumer that lost a partition without
        noticing (a zombie) finds the stored offset moved and rolls back its batch."""
        for (topic, partition), next_offset in advance.items():
            expected = self._positions.get((topic, partition))
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
                metrics.OFFSET_CONFLICTS.labels(self.handler.name).inc()
                raise OffsetConflictError(
                    f"{self.group}: stored offset of {topic}[{partition}] is not {expected}"
                )

    # -------------------------------------------------------------------- outbox

    def _record(self, work: Callable[[psycopg.Connection], list[Emit]]) -> None:
        with self.conn.transaction():
            rows = self._outbox_add(work(self.conn))
        self._staged.extend(rows)

    def _take_staged(self) -> list[OutboxRow]:
        staged, self._staged = self._staged, []
        return staged

    def _outbox_add(self, emits: list[Emit]) -> list[OutboxRow]:
        if not emits:
            return []
        topics = [self.settings.topics.name(emit.base_topic) for emit in emits]
        keys = [emit.key for emit in emits]
        values = [
            self.codec.encode(emit.record, topic) for emit, topic in zip(emits, topics, strict=True)
        ]
        ids = self.conn.execute(
            "INSERT INTO outbox (source, topic, key, value) "
            "SELECT %s, t, k, v FROM unnest(%s::text[], %s::bytea[], %s::bytea[]) "
            "WITH ORDINALITY AS u(t, k, v, n) ORDER BY n RETURNING id",
            (self.group, topics, keys, values),
        ).fetchall()
        return [
            (int(row[0]), t, k, v) for row, t, k, v in zip(ids, topics, keys, values, strict=True)
        ]

    def _delete_published(self, conn: psycopg.Connection) -> None:
        if self._published:
            conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", (self._published,))
            self._published = []

    def _publish(self, rows: list[OutboxRow], *, wait: bool = False) -> None:
        """Send committed outbox rows without waiting for the acknowledgements (the
        batch loop serves them with ``poll(0)``); an acknowledged row's id is deleted
        in the next transaction. A row whose delivery failed stays in the outbox and
        the timer sends it again (:meth:`_republish_stale`): at least once."""
        for row_id, topic, key, value in rows:
            self._in_flight.add(row_id)
            while True:
                try:
                    self._producer.produce(topic, value, key, on_delivery=self._acked(row_id))
                    break
                except BufferError:
                    self._producer.poll(0.1)
        if wait:
            self._producer.flush(30)
        else:
            self._producer.poll(0)

    def _acked(self, row_id: int) -> Callable[[Any, Any], None]:
        def callback(err: Any, _msg: Any) -> None:
            self._in_flight.discard(row_id)
            if err is None:
                self._published.append(row_id)
            else:
                log.warning("%s: outbox record %d not delivered: %s", self.group, row_id, err)

        return callback

    def _publish_leftovers(self) -> None:
        """Records committed by an earlier run that crashed before publishing them."""
        while True:
            rows = self.conn.execute(
                "SELECT id, topic, key, value FROM outbox WHERE source = %s ORDER BY id LIMIT 5000",
                (self.group,),
            ).fetchall()
            if not rows:
                return
            self._publish([(int(i), str(t), k, bytes(v)) for i, t, k, v in rows], wait=True)
            if not self._published:
                raise RuntimeError(f"{self.group}: cannot publish the outbox")
            with self.conn.transaction():
                self._delete_published(self.conn)
            log.info(
                "%s: published %d outbox records left by an earlier run", self.group, len(rows)
            )

    def _republish_stale(self) -> None:
        """Outbox rows of this group older than ``ACTIONS_OUTBOX_RETRY_AFTER_S`` that
        are neither in flight nor acknowledged: their delivery failed (or the process
        that wrote them died), so send them again now instead of at the next start.
        Another process of the same group may send one too: outcomes are at least
        once and deduplicated by ``command_id`` downstream."""
        rows = self.conn.execute(
            "SELECT id, topic, key, value FROM outbox WHERE source = %s "
            "AND created_at < now() - make_interval(secs => %s) AND NOT (id = ANY(%s)) "
            "ORDER BY id LIMIT 5000",
            (
                self.group,
                self.settings.outbox_retry_after_s,
                sorted(self._in_flight.union(self._published)),
            ),
        ).fetchall()
        if rows:
            log.warning("%s: re-publishing %d undelivered outbox records", self.group, len(rows))
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
