"""Every record of a source partition handled once and in offset order, whatever Faust delivers.

Faust 0.15.3 does not promise a stream the records of a partition without a hole: right
after a restart (a kill -9, then a worker recovering its tables) it was caught handing a
stream a partition's records with a run of 11 to 34 of them missing, fetched before it
sought to the committed offsets and then dropped (docs/detector.md, "In offset order").
A hole is a wrong answer: the detector would diff a key's next chunk against an older
state (new event ids, lost ones). (The downstream consumers do not run on Faust: they
use the stream runtime, services/runtime/stream.py, which needs no such guard.)

:class:`InOrder` keeps the next offset it expects per partition: the group's committed
offset when partitions are (re)assigned, then one past each record handled. A record
beyond it makes it read the range in between itself with a side consumer
(``read_committed``, so transaction markers and aborted records are not records) and
hand what it finds to the handler first, in order. A record below it was handled already
in this assignment and is skipped.

Commits follow what was handled, not what Faust acked: the guard keeps
:attr:`ReadCommittedApp.commit_limits` at the next record to handle per partition, and
the consumer never commits past it (nor at all for a partition with no handled record
in the current generation). Faust acks messages it skips without handing them over (an
old generation's, or while its flow control is off), and it acks the message of an agent
that fails; neither may move a commit. A failed handler leaves the limit where it was,
and the next delivered record retries from the first unhandled one.

Handlers run inside the agent, with the delivered message as Faust's current event: a
table write for a read-back record goes to the same partition's changelog, as it should.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition
from faust.types import TP

from services.detector.faust_app import ReadCommittedApp
from services.runtime import kafka
from services.runtime.settings import KafkaSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One source record: where it came from (for dead letters and partition-local state)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @classmethod
    def of(cls, message: Any) -> SourceRecord:
        """From a Faust ``Message``."""
        return cls(message.topic, message.partition, message.offset, message.key, message.value)


class RangeReadError(RuntimeError):
    """The skipped range could not be read in time: crash rather than go on with a hole."""


class _RangeReader:
    """The side consumer. It shares the worker's group id only to read the group's
    committed offsets; it never subscribes (so never joins the group) and never commits.
    Agents call it from worker threads, possibly two at once: one lock, since a
    librdkafka consumer's assignment is not per caller."""

    def __init__(
        self, settings: KafkaSettings, group_id: str, client_id: str, timeout_s: float
    ) -> None:
        self._settings = settings
        self._group_id = group_id
        self._client_id = client_id
        self._timeout_s = timeout_s
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = kafka.consumer(
                self._settings,
                self._group_id,
                client_id=self._client_id,
                # A range read is short: without this each one waits out the fetch
                # long-poll of the previous one (500 ms instead of a few).
                # The end of a partition is an event: ``clear_until`` stops there.
                extra={"fetch.wait.max.ms": 5, "enable.partition.eof": True},
            )
        return self._consumer

    def start_of(self, topic: str, partition: int) -> int:
        """The group's committed offset, or the log start when it has none."""
        with self._lock:
            return self._start_of(topic, partition)

    def _start_of(self, topic: str, partition: int) -> int:
        timeout = self._settings.connect_timeout_s
        where = TopicPartition(topic, partition)
        (committed,) = self.consumer.committed([where], timeout=timeout)
        if committed.offset >= 0:
            return int(committed.offset)
        low, _ = kafka.watermarks(self.consumer, topic, partition, timeout)
        return int(low)

    def read(self, topic: str, partition: int, start: int, end: int) -> list[SourceRecord]:
        """The committed records with offsets in ``[start, end)``; ``end`` must be one."""
        with self._lock:
            return self._read(topic, partition, start, end)

    def _read(self, topic: str, partition: int, start: int, end: int) -> list[SourceRecord]:
        consumer = self.consumer
        consumer.assign([TopicPartition(topic, partition, start)])
        found: list[SourceRecord] = []
        deadline = time.monotonic() + self._timeout_s
        try:
            while True:
                if time.monotonic() > deadline:
                    raise RangeReadError(
                        f"could not read {topic}[{partition}] from {start} to {end} "
                        f"in {self._timeout_s}s"
                    )
                msg = consumer.poll(1.0)
                if msg is None or msg.error() is not None:
                    continue
                offset = msg.offset()
                assert offset is not None
                if offset >= end:
                    return found
                found.append(SourceRecord(topic, partition, offset, msg.key(), msg.value()))
        finally:
            consumer.unassign()

    def clear_until(
        self, topic: str, partition: int, start: int, end: int, timeout_s: float
    ) -> int | None:
        """How far from ``start`` towards ``end`` the partition holds no committed
        record: the offset of the first one, or ``end`` when none is below it (``end``
        must be at or below the last stable offset). None when that cannot be told
        within ``timeout_s``."""
        with self._lock:
            consumer = self.consumer
            consumer.assign([TopicPartition(topic, partition, start)])
            deadline = time.monotonic() + timeout_s
            try:
                while time.monotonic() < deadline:
                    msg = consumer.poll(0.1)
                    if msg is None:
                        continue
                    error, offset = msg.error(), msg.offset()
                    if error is None and offset is not None:
                        return min(offset, end)
                    # The end of the partition comes after every record below it.
                    eof = error is not None and error.code() == KafkaError._PARTITION_EOF
                    if eof and offset is not None and offset >= end:
                        return end
                return None
            finally:
                consumer.unassign()

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


class InOrder:
    """The per-partition sequence guard one Faust worker puts in front of its handlers."""

    def __init__(
        self,
        app: ReadCommittedApp,
        settings: KafkaSettings,
        group_id: str,
        *,
        client_id: str,
        timeout_s: float = 60.0,
        on_skipped: Callable[[int], None] = lambda _count: None,
    ) -> None:
        self._app = app
        self._reader = _RangeReader(settings, group_id, client_id, timeout_s)
        self._on_skipped = on_skipped
        self._next: dict[tuple[str, int], int] = {}
        self._generation: int | None = None
        self._idle_at: dict[tuple[str, int], int] = {}
        self._checked: dict[tuple[str, int], tuple[int, int]] = {}
        if app.commit_limits is None:
            app.commit_limits = {}
        self._limits = app.commit_limits

    async def run(self, message: Any, handle: Callable[[SourceRecord], Awaitable[None]]) -> bool:
        """Handle the delivered ``message`` after any record Faust skipped before it.

        False when it was handled already in this assignment (nothing is done)."""
        if message.generation_id != self._generation:
            self._start_generation(message.generation_id)
        record = SourceRecord.of(message)
        where = (record.topic, record.partition)
        expected = self._next.get(where)
        if expected is None:
            expected = await asyncio.to_thread(self._reader.start_of, *where)
        if record.offset < expected:
            return False
        tp = TP(record.topic, record.partition)
        limits = self._limits
        # The commit limit is always the next record to handle: a failing handler
        # leaves it there (Faust acks the delivered message on the way out of a
        # failing agent, and a commit must not pass what was never handled).
        limits[tp] = expected
        if record.offset > expected:
            missed = await asyncio.to_thread(self._reader.read, *where, expected, record.offset)
            if missed:
                log.warning(
                    "Faust skipped %d record(s) of %s[%d] in [%d, %d); handling them first",
                    len(missed),
                    record.topic,
                    record.partition,
                    expected,
                    record.offset,
                )
                self._on_skipped(len(missed))
            for earlier in missed:
                await handle(earlier)
                limits[tp] = self._next[where] = earlier.offset + 1
        await handle(record)
        limits[tp] = self._next[where] = record.offset + 1
        return True

    def _start_generation(self, generation: int | None) -> None:
        self._generation = generation
        self._next.clear()  # partitions may have moved: ask the broker again
        self._limits.clear()  # and commit nothing until a record is handled here
        self._idle_at.clear()
        self._checked.clear()

    async def step_over(self, positions: Mapping[TP, int], timeout_s: float = 5.0) -> dict[TP, int]:
        """Idle, move the next offset (and the commit limit) of each partition past the
        records no consumer is given: the marker of the transaction that ended with its
        last record, and aborted records. Without this an idle group stays one behind
        the end of every partition with data, for good (KAFKA-6607); Kafka Streams
        commits its position for the same reason (apache/kafka#8040). Returns the
        partitions moved and where to.

        ``positions`` (the consumer's, :meth:`ReadCommittedApp.idle_positions`) only says
        how far to look; records the consumer handed over may still wait in Faust's
        buffers, or have been dropped by it. A partition moves only on the second call
        in a row that finds it at the same next offset (nothing handled in between),
        and only as far as the side consumer proves the log holds no committed record:
        from the next offset to the first committed record or the position, whichever
        is lower. Every record below the new offset was therefore handled, as for any
        other commit limit. A partition with nothing handled in this assignment starts
        from the group's committed offset, as :meth:`run` does. Whatever the agent
        handles while this waits for the broker wins: that partition is left as it is.
        """
        generation = self._app.consumer_generation_id
        if generation != self._generation:  # no record of this assignment handled yet
            self._start_generation(generation)
        moved: dict[TP, int] = {}
        for tp, position in positions.items():
            where = (tp.topic, tp.partition)
            start = self._next.get(where)
            if start is None:
                start = await asyncio.to_thread(self._reader.start_of, *where)
                if self._generation != generation or where in self._next:
                    continue
                self._next[where] = start
            if position <= start:
                continue
            if self._idle_at.get(where) != start:
                self._idle_at[where] = start  # handled something since the last call
                continue
            if self._checked.get(where) == (start, position):
                continue  # the record found last time is not handled yet: wait for it
            clear = await asyncio.to_thread(
                self._reader.clear_until, *where, start, position, timeout_s
            )
            if clear is None or self._generation != generation or self._next.get(where) != start:
                continue
            self._checked[where] = (start, position)
            if clear > start:
                self._next[where] = self._limits[TP(*where)] = self._idle_at[where] = clear
                moved[TP(*where)] = clear
        return moved

    def close(self) -> None:
        self._reader.close()
