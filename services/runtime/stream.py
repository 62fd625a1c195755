"""The stream runtime every Kafka-to-Kafka consumer runs on (rules, replay).

One loop owns what exactly-once needs, so no service writes it again:

* a confluent-kafka consumer (``read_committed``, cooperative-sticky assignment,
  static membership) and one transactional producer per worker
  (``transactional.id`` = ``<group>.<instance>``: a restarted worker fences its
  predecessor at once and aborts its open transaction);
* a **transaction per commit interval**: the outputs, the state changelog and the
  input offsets (``send_offsets_to_transaction`` with the consumer's group
  metadata) commit together every ``commit_every`` records or ``commit_interval_s``
  seconds, whichever comes first;
* **state per input partition**: a :class:`Store` per declared store and assigned
  partition, an in-memory map restored on assignment from its compacted
  changelog (partition *n* of the changelog belongs to partition *n* of the input
  topic), written **once per key per transaction** (only the keys changed since
  the last commit, their last value), dropped on revoke;
* **dead letters**: a record whose handler raises is written to the dead-letter
  topic with its source topic, partition, offset and the error, inside the same
  transaction, and the loop goes on with the next record;
* **honest health**: :meth:`StreamWorker.not_ready` is ``None`` only while the
  loop is polling and no partition is restoring; an unrecoverable error ends
  :meth:`StreamWorker.run` with the exception (the entry point exits non-zero);
* **a watchdog on the transactional calls**: ``send_offsets_to_transaction`` can
  block past its timeout when the group coordinator's broker dies (librdkafka
  issues #5456 and #5511, open in 2.16: a decommissioned broker stays cached as
  the coordinator). A call still blocked ``STUCK_GRACE_S`` after its own timeout
  ends the process with :data:`STUCK_EXIT_CODE`; the supervisor starts it again,
  its ``init_transactions`` fences the stuck one and aborts its transaction, and
  the fresh client finds the new coordinator.

A service brings handlers: ``handler(record, stores) -> outputs``, where ``stores``
holds the partition's stores by name. A handler must not leave a store half-written
when it raises (compute, then ``set``), since the record is dead-lettered and the
store is kept. The handler is plain Python over plain values; the engine it calls
stays a pure function.

Modelled on confluent-kafka-python's ``examples/eos-transactions.py`` and Quix
Streams' checkpoint (changelog, flush and offsets in one commit).
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from prometheus_client import REGISTRY, CollectorRegistry

from services.contracts.codec import Codec
from services.contracts.models import DeadLetter
from services.runtime import kafka
from services.runtime.checkpoint import (
    EXIT_TEMPFAIL,
    CheckpointError,
    CheckpointWorker,
    RestartNeededError,
    TopicKey,
    describe,
)
from services.runtime.health import Dependencies, probes
from services.runtime.metric_set import MetricSet
from services.runtime.sender import NATIVE, Sender
from services.runtime.settings import KafkaSettings

log = logging.getLogger(__name__)

STUCK_EXIT_CODE = EXIT_TEMPFAIL
"""The process's exit code when a transactional call outlives its timeout (EX_TEMPFAIL)."""
STUCK_GRACE_S = 5.0
SEND_OFFSETS_TIMEOUT_S = 10.0
COMMIT_TIMEOUT_S = 30.0
ABORT_TIMEOUT_S = 10.0
"""Both take milliseconds on a healthy cluster. A call blocked past its timeout plus
``STUCK_GRACE_S`` ends the process: 15 s for the offsets, the usual case after the
group coordinator's broker restarted, so the worker is back within 30 s of the broker
(the fault matrix measures it); 45 s and 75 s before."""


class StreamMetrics(MetricSet):
    """The stream runtime's metrics, labelled by consumer group."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.records = self.counter(
            "social_loyalty_stream_records_total", "Records handled by a stream worker.", "group"
        )
        self.dead = self.counter(
            "social_loyalty_stream_deadlettered_total",
            "Records whose handler raised, sent to the dead-letter topic.",
            "group",
        )
        self.commits = self.counter(
            "social_loyalty_stream_transactions_total", "Transactions committed.", "group"
        )
        self.aborts = self.counter(
            "social_loyalty_stream_transactions_aborted_total",
            "Transactions aborted (the worker rewound to its committed offsets).",
            "group",
        )
        self.commit_seconds = self.histogram(
            "social_loyalty_stream_commit_seconds",
            "Time to write the changelog, send offsets and commit one transaction.",
            "group",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.restored = self.counter(
            "social_loyalty_stream_restored_records_total",
            "Changelog records read to restore state on assignment.",
            "group",
        )
        self.assigned = self.gauge(
            "social_loyalty_stream_assigned_partitions", "Input partitions assigned.", "group"
        )


class StreamError(CheckpointError):
    """The worker cannot go on (fenced, fatal producer error, wrong topic layout)."""


@dataclass(frozen=True, slots=True)
class Output:
    """A record to produce in the current transaction (``partition`` -1: by key)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int = -1
    headers: list[tuple[str, str | bytes | None]] | None = None
    """Kafka headers (``services.contracts.headers``: what the record is)."""


Encoder = Callable[[Any], bytes]
Decoder = Callable[[bytes], Any]


@dataclass(frozen=True)
class StoreSpec:
    """A keyed state store, partitioned like ``source`` (a real topic name)."""

    name: str
    source: str
    changelog: str
    encode: Encoder
    decode: Decoder


class Store:
    """One store's keys for one input partition; values are whatever the handler keeps."""

    __slots__ = ("_data", "dirty")

    def __init__(self) -> None:
        self._data: dict[bytes, Any] = {}
        self.dirty: set[bytes] = set()

    def get(self, key: bytes, default: Any = None) -> Any:
        return self._data.get(key, default)

    def set(self, key: bytes, value: Any) -> None:
        self._data[key] = value
        self.dirty.add(key)

    def delete(self, key: bytes) -> None:
        if self._data.pop(key, None) is not None:
            self.dirty.add(key)

    def load(self, key: bytes, value: Any | None) -> None:
        """Restore one changelog record (``None``: a tombstone)."""
        if value is None:
            self._data.pop(key, None)
        else:
            self._data[key] = value

    def changes(self) -> Iterable[tuple[bytes, Any | None]]:
        return ((key, self._data.get(key)) for key in self.dirty)


Stores = Mapping[str, Store]
Handler = Callable[[Message, Stores], Iterable[Output]]


@dataclass(frozen=True)
class StreamConfig:
    """How one worker runs: its group, instance and commit cadence."""

    group: str
    instance: str = "0"
    commit_every: int = 5000
    commit_interval_s: float = 0.1
    batch_size: int = 1000
    poll_timeout_s: float = 0.01
    """``consume`` waits this long for a full batch: short, or a trickle of records
    would wait it out on every loop before being handled (latency)."""
    session_timeout_ms: int = 10_000
    transaction_timeout_ms: int = 30_000
    static_membership: bool = True
    stale_after_s: float = 30.0
    """``not_ready`` once the loop has not polled for this long (stuck)."""
    max_backoff_s: float = 5.0
    """Longest wait between two tries after a transient failure."""
    gc_threshold: int = 50_000
    """Allocations between two young-generation collections (CPython's default: 700).
    A worker allocates a few dozen short-lived objects per record, freed by reference
    counting; at 700 the cycle collector ran every few records and walked the stores'
    long-lived objects again and again (the offer engine alone ran 16-18k events/s
    at 700 and 25-30k at 50,000 in one sitting). The stores restored at assignment are
    also frozen out of the collector's walks."""


@dataclass
class _Partition:
    stores: dict[str, Store] = field(default_factory=dict)


class StreamWorker(CheckpointWorker):
    """Runs ``handlers`` (one per real input topic name) until :meth:`stop`: the
    Kafka-transaction offset store of the checkpoint protocol
    (:class:`~services.runtime.checkpoint.CheckpointWorker`)."""

    def __init__(
        self,
        kafka_settings: KafkaSettings,
        config: StreamConfig,
        *,
        handlers: Mapping[str, Handler],
        stores: Sequence[StoreSpec] = (),
        codec: Codec,
        deadletter_topic: str,
        partitioners: Mapping[str, str] | None = None,
        partition_counts: Mapping[str, int] | None = None,
        on_commit: Callable[[], None] | None = None,
        transactional: bool = True,
        on_dead: Callable[[DeadLetter], None] | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        super().__init__(
            config,
            dependencies=Dependencies(probes(kafka_settings=kafka_settings)),
            needs_assignment=False,
        )
        self.kafka_settings = kafka_settings
        self.config = config
        self.handlers = dict(handlers)
        self.store_specs = list(stores)
        self.codec = codec
        self.deadletter_topic = deadletter_topic
        self._partitioners = dict(partitioners or {})
        self._partition_counts = dict(partition_counts or {})
        self._on_commit = on_commit
        self.transactional = transactional
        self._on_dead = on_dead
        self._partitions: dict[TopicKey, _Partition] = {}
        self._advance: dict[TopicKey, int] = {}  # next offset to commit, this transaction
        self._in_txn = False
        self._txn_records = 0
        self._txn_started = 0.0
        self._restoring = False
        self._sender: Sender | None = None
        self._labels = {"group": self.group}
        self._metrics = StreamMetrics.on(registry)
        self._blocked: tuple[str, float] | None = None  # call, deadline (monotonic)
        self._watchdog: threading.Thread | None = None

    # --------------------------------------------------------------- watchdog

    @contextmanager
    def _bounded(self, call: str, timeout_s: float) -> Iterator[None]:
        """Mark a blocking client call for the watchdog while it runs."""
        self._blocked = (call, time.monotonic() + timeout_s + STUCK_GRACE_S)
        try:
            yield
        finally:
            self._blocked = None

    def _watch(self) -> None:
        while not self.stop_event.wait(1.0):
            blocked = self._blocked
            if blocked is not None and time.monotonic() > blocked[1]:
                log.critical(
                    "%s: %s is still blocked %.0fs past its timeout (librdkafka #5456/#5511: a "
                    "dead coordinator stays cached); exiting with %d so the worker restarts, "
                    "fences this one and finds the new coordinator",
                    self.group,
                    blocked[0],
                    STUCK_GRACE_S,
                    STUCK_EXIT_CODE,
                )
                logging.shutdown()
                os._exit(STUCK_EXIT_CODE)

    def _start_watchdog(self) -> None:
        if self._watchdog is None and self.transactional:
            self._watchdog = threading.Thread(
                target=self._watch, name=f"{self.group}-watchdog", daemon=True
            )
            self._watchdog.start()

    # ------------------------------------------------------------------ health

    def _busy(self) -> str | None:
        return "restoring state from the changelog" if self._restoring else None

    def stop(self) -> None:
        self.stop_event.set()

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        """Poll, handle, commit until stopped (or, bounded, until every partition
        reached its end); raises when the worker cannot go on."""
        gc.set_threshold(self.config.gc_threshold, 20, 100)
        self._start_watchdog()
        super().run()

    def _finish(self) -> None:
        if self._in_txn:
            self._commit()

    def _abandon(self) -> None:
        """On the way out after a failure: abort what is open, quietly, so closing the
        consumer (which revokes) neither commits it nor restores anything."""
        self._advance.clear()
        self._partitions.clear()
        if self._in_txn and self._sender is not None:
            self._in_txn = False
            try:
                self._sender.producer.abort_transaction(10)
            except KafkaException:
                log.warning("%s: abort on the way out failed", self.group, exc_info=True)

    def start(self) -> None:
        settings, config = self.kafka_settings, self.config
        if self.transactional:
            self._start_producer()
        extra: dict[str, Any] = {
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": config.session_timeout_ms,
            "heartbeat.interval.ms": max(500, config.session_timeout_ms // 5),
            "max.poll.interval.ms": max(60_000, config.session_timeout_ms * 3),
            "fetch.wait.max.ms": 10,
            "auto.offset.reset": "error",  # a stored offset gone from the log stops us
        }
        if config.static_membership and self._subscribes:
            extra["group.instance.id"] = f"{self.group}.{config.instance}"
        self._consumer = kafka.consumer(
            settings, self.group, client_id=f"{self.group}.{config.instance}", extra=extra
        )
        self._subscribe(self._consumer)
        self._last_progress = time.monotonic()

    _subscribes = True
    """A live worker joins its group; a bounded job assigns its ranges itself."""

    def _subscribe(self, consumer: Consumer) -> None:
        consumer.subscribe(
            list(self.handlers),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _start_producer(self) -> None:
        settings, config = self.kafka_settings, self.config
        producer = kafka.producer(
            settings,
            f"{self.group}.{config.instance}",
            transactional_id=f"{self.group}.{config.instance}",
            extra={
                "partitioner": NATIVE,
                "transaction.timeout.ms": config.transaction_timeout_ms,
                "delivery.timeout.ms": config.transaction_timeout_ms,
                "linger.ms": 5,
            },
        )
        try:
            producer.init_transactions(settings.connect_timeout_s * 3)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.retriable():
                raise RestartNeededError(
                    f"{self.group}: the transactional producer did not start ({error})"
                ) from exc
            raise
        self._sender = Sender(
            producer,
            partitioners=self._partitioners,
            partition_counts=self._partition_counts,
            report=False,  # commit_transaction fails if any record of it failed
        )

    def close(self) -> None:
        if self.dependencies is not None:
            self.dependencies.stop()
        if self._consumer is not None:
            try:
                self._consumer.close()
            except (KafkaException, RuntimeError):
                log.warning("%s: consumer close failed", self.group, exc_info=True)
            self._consumer = None
        if self._sender is not None:
            self._sender.producer.flush(5)

    # ------------------------------------------------------------------ records

    def _process(self, messages: list[Message]) -> None:
        sender = self._sender
        partitions = self._partitions
        handled = 0
        for message in messages:  # admitted by the fence: at or past the stored offset
            where: TopicKey = (message.topic(), message.partition())  # type: ignore[assignment]
            partition = partitions.get(where)
            if partition is None:
                continue  # revoked while the batch was in flight
            if not self._in_txn:
                self._begin()
            self._advance[where] = message.offset() + 1  # type: ignore[operator]
            self._txn_records += 1
            handled += 1
            try:
                outputs = self.handlers[where[0]](message, partition.stores)
            except Exception as exc:  # any handler failure is a dead letter
                self._dead_letter(message, exc)
                continue
            # A send that fails here (not a full queue: an unknown topic, a record
            # too large) is no bad input record: the worker stops, nothing commits.
            if sender is not None:
                for out in outputs:
                    sender.send(out.topic, out.value, out.key, out.partition, out.headers)
            elif outputs:
                raise StreamError(f"{self.group}: a read-only run produced output")
        self._metrics.records.labels(**self._labels).inc(handled)

    def _after_poll(self, messages: list[Message]) -> None:
        if self._in_txn and (
            self._txn_records >= self.config.commit_every
            or time.monotonic() - self._txn_started >= self.config.commit_interval_s
        ):
            self._commit()

    def _dead_letter(self, message: Message, error: Exception) -> None:
        letter = DeadLetter.for_message(error, message, self.group)
        log.warning("%s: dead-lettered %s[%s]@%s: %s", self.group, letter.original_topic,
                    letter.original_partition, letter.original_offset, letter.reason)  # fmt: skip
        self._metrics.dead.labels(**self._labels).inc()
        if self._on_dead is not None:
            self._on_dead(letter)
        if self._sender is not None:
            value = self.codec.encode(letter, self.deadletter_topic)
            self._sender.send(self.deadletter_topic, value, message.key())

    # ------------------------------------------------------------- transactions

    def _begin(self) -> None:
        if self._sender is not None:
            self._sender.producer.begin_transaction()
        self._in_txn = True
        self._txn_records = 0
        self._txn_started = time.monotonic()

    def _commit(self) -> None:
        """Changelog of the keys changed since the last commit, offsets, commit. A
        failure raises: the checkpoint discards (aborts) and rewinds."""
        sender, consumer = self._sender, self._consumer
        assert consumer is not None
        if sender is None:  # read-only: nothing to commit, nothing to remember
            self._committed_offsets(self._advance)
            self._advance.clear()
            self._in_txn = False
            return
        started = time.perf_counter()
        for (topic, number), partition in self._partitions.items():
            if (topic, number) in self._rewinding:
                continue  # its changes were discarded; its state is restored on rewind
            for spec in self.store_specs:
                if spec.source != topic:
                    continue
                store = partition.stores[spec.name]
                for key, value in store.changes():
                    encoded = None if value is None else spec.encode(value)
                    sender.send(spec.changelog, encoded, key, number)
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._advance.items()]
        try:
            if offsets:
                with self._bounded("send_offsets_to_transaction", SEND_OFFSETS_TIMEOUT_S):
                    sender.producer.send_offsets_to_transaction(
                        offsets, consumer.consumer_group_metadata(), SEND_OFFSETS_TIMEOUT_S
                    )
            with self._bounded("commit_transaction", COMMIT_TIMEOUT_S):
                sender.producer.commit_transaction(COMMIT_TIMEOUT_S)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.fatal():
                raise StreamError(f"{self.group}: transaction failed: {error}") from exc
            raise
        for partition in self._partitions.values():
            for store in partition.stores.values():
                store.dirty.clear()
        self._committed_offsets(self._advance)
        self._advance.clear()
        self._in_txn = False
        self._metrics.commits.labels(**self._labels).inc()
        self._metrics.commit_seconds.labels(**self._labels).observe(time.perf_counter() - started)
        if self._on_commit is not None:
            self._on_commit()

    def _uncommitted(self) -> bool:
        return self._in_txn

    def _store_position(self, ahead: dict[TopicKey, int]) -> None:
        """An offsets-only transaction (it writes no marker to the input topics)."""
        ahead = {key: offset for key, offset in ahead.items() if key in self._partitions}
        if not ahead:
            return
        self._begin()
        self._advance.update(ahead)
        self._commit()

    def _discard(self) -> None:
        """Abort the open transaction (its outputs, changelog and offsets are gone);
        the partitions then rewind to their committed offsets with their state
        restored. A transaction that cannot be aborted within ``ABORT_TIMEOUT_S`` ends
        the process with :data:`STUCK_EXIT_CODE`: a new one fences it."""
        sender = self._sender
        self._advance.clear()
        for partition in self._partitions.values():  # their state is restored on rewind
            for store in partition.stores.values():
                store.dirty.clear()
        if not self._in_txn or sender is None:
            self._in_txn = False
            return
        try:
            with self._bounded("abort_transaction", ABORT_TIMEOUT_S):
                sender.producer.abort_transaction(ABORT_TIMEOUT_S)
        except KafkaException as exc:
            # a new process fences this one and the broker aborts the transaction: that
            # is quicker than waiting out a coordinator that may never answer this client
            raise RestartNeededError(f"{self.group}: cannot abort the transaction: {exc}") from exc
        self._metrics.aborts.labels(**self._labels).inc()
        self._in_txn = False

    def _stored_offsets(self, keys: Sequence[TopicKey]) -> dict[TopicKey, int | None]:
        """Kafka's committed offsets of the group (the transactions' ``send_offsets``)."""
        consumer = self._consumer
        assert consumer is not None
        stored: dict[TopicKey, int | None] = {}
        for tp in consumer.committed([TopicPartition(t, p) for t, p in keys], 10):
            if tp.error is not None:
                raise KafkaException(tp.error)
            stored[(tp.topic, tp.partition)] = None if tp.offset == OFFSET_INVALID else tp.offset
        return stored

    def _rewound(self, keys: Sequence[TopicKey]) -> None:
        """The partitions start again from their committed offsets: so does their
        state (what the aborted transaction changed is gone)."""
        self._restore(list(keys))

    # --------------------------------------------------------------- rebalances

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._in_txn:  # a restore may take long: do not hold the open transaction
            try:
                self._commit()
            except Exception as exc:
                if self._is_fatal(exc):
                    raise
                # the partitions we had rewind; the new ones are still taken below (if
                # this raised, the client would assign them from Kafka's offsets itself)
                log.warning("%s: commit before assignment failed (%s); rewinding",
                            self.group, exc)  # fmt: skip
                self._discard()
                self._begin_rewind(list(self._stored))
        for tp in partitions:
            self._partitions[(tp.topic, tp.partition)] = _Partition(
                {spec.name: Store() for spec in self.store_specs if spec.source == tp.topic}
            )
        self._take(partitions, consumer.incremental_assign)
        self._metrics.assigned.labels(**self._labels).set(len(self._partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit what was done for every partition before any is given away."""
        try:
            if self._in_txn:
                self._commit()
        except Exception as exc:
            self._drop(partitions)  # given away whatever happens
            if self._is_fatal(exc):
                raise
            log.exception("%s: commit on revoke failed; aborting", self.group)
            self._discard()
            self._begin_rewind(list(self._partitions))
            return
        self._drop(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions taken without a revoke: what this transaction did for them is
        no longer ours to commit, so the whole transaction is aborted."""
        self._drop(partitions)
        self._discard()
        self._begin_rewind(list(self._partitions))

    def _drop(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._partitions.pop((tp.topic, tp.partition), None)
        self._revoked_partitions(partitions)
        self._metrics.assigned.labels(**self._labels).set(len(self._partitions))
        if partitions:
            log.info(
                "%s: revoked %s",
                self.group,
                describe([(t.topic, t.partition) for t in partitions]),
            )

    # ------------------------------------------------------------------ restore

    def _restore(self, where: list[TopicKey]) -> None:
        """Read each store's changelog partition from the start up to the high
        watermark it has now, read_committed.

        Not just to the first end seen: read_committed stops at the last stable offset,
        and the previous owner's last transaction (committed on revoke, or a dead
        worker's, aborted by the broker) may still be settling. Its offsets are what
        this worker starts from once the callback returns, so its changelog records
        must be in the store first: the restore waits until the position passes the
        high watermark (``/readyz`` says "restoring" meanwhile).
        """
        wanted: dict[tuple[str, int], tuple[StoreSpec, Store]] = {}
        for topic, number in where:
            partition = self._partitions.get((topic, number))
            if partition is None:
                continue
            for spec in self.store_specs:
                if spec.source == topic:
                    store = Store()
                    partition.stores[spec.name] = store
                    wanted[(spec.changelog, number)] = (spec, store)
        if not wanted:
            return
        self._restoring = True
        started = time.perf_counter()
        try:
            count = self._read_to_end(wanted)
        finally:
            self._restoring = False
        self._metrics.restored.labels(**self._labels).inc(count)
        gc.freeze()  # long-lived from here on: keep them out of the collector's walks
        log.info("%s: restored %d changelog records for %s in %.2fs", self.group, count,
                 describe(where), time.perf_counter() - started)  # fmt: skip

    def _read_to_end(self, wanted: Mapping[TopicKey, tuple[StoreSpec, Store]]) -> int:
        """Load every record of the ``wanted`` changelog partitions into their stores,
        up to each one's current high watermark; returns how many were read."""
        count = 0
        deadline = time.monotonic() + self.config.transaction_timeout_ms / 1000 * 2 + 30
        restorer = kafka.consumer(
            self.kafka_settings,
            f"{self.group}.restore",
            client_id=f"{self.group}.{self.config.instance}.restore",
            extra={"fetch.wait.max.ms": 10},
        )
        try:
            ends: dict[tuple[str, int], int] = {}
            for key in wanted:
                _low, high = kafka.watermarks(restorer, *key)
                if high > 0:
                    ends[key] = high
            restorer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in ends])
            while ends:
                for message in restorer.consume(10_000, 0.2):
                    error = message.error()
                    if error is not None:
                        if error.fatal() or error.code() in _RESTORE_FATAL:
                            raise StreamError(f"{self.group}: restoring: {error}")
                        log.warning("%s: restoring: %s (retrying)", self.group, error)
                        continue
                    spec, store = wanted[(str(message.topic()), int(message.partition() or 0))]
                    value = message.value()
                    store.load(message.key() or b"", None if value is None else spec.decode(value))
                    count += 1
                for tp in restorer.position([TopicPartition(t, p) for t, p in ends]):
                    if tp.offset >= ends[(tp.topic, tp.partition)]:
                        del ends[(tp.topic, tp.partition)]
                self._last_progress = time.monotonic()
                if ends and time.monotonic() > deadline:
                    raise RestartNeededError(
                        f"{self.group}: restoring {describe(ends)} did not reach the end of "
                        "the changelog in time (a transaction that never settles?)"
                    )
        finally:
            restorer.close()
        return count


_RESTORE_FATAL = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
    }
)
"""Consumer errors during a restore that retrying will not fix; the others (a broker
restarting, a leader moving) librdkafka retries by itself."""


class BoundedStreamWorker(StreamWorker):
    """A bounded job (replay): given partitions from ``start`` to ``end``, no group
    membership; it ends when every partition reached its end. Its handlers keep
    state outside the stores (replay's members), which a rewind cannot restore, so a
    failure ends the run instead (command ids are deterministic: a second run
    credits nothing twice)."""

    _subscribes = False
    joins_group = False
    commits_position = False  # it drops the records past its end

    def __init__(
        self, *args: Any, bounds: Mapping[TopicKey, tuple[int, int]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._bounds = {key: (start, end) for key, (start, end) in bounds.items() if end > start}
        self._pending: set[TopicKey] = set(self._bounds)

    def _subscribe(self, consumer: Consumer) -> None:
        for key, (start, _end) in self._bounds.items():
            self._partitions[key] = _Partition(
                {spec.name: Store() for spec in self.store_specs if spec.source == key[0]}
            )
            self._stored[key] = start
        self._restore(list(self._bounds))
        consumer.assign(
            [TopicPartition(t, p, start) for (t, p), (start, _end) in self._bounds.items()]
        )
        self._assigned.set()

    def _admit(self, messages: list[Message]) -> list[Message]:
        admitted = []
        for message in super()._admit(messages):
            where: TopicKey = (message.topic(), message.partition())  # type: ignore[assignment]
            end = self._bounds[where][1]
            offset: int = message.offset()  # type: ignore[assignment]
            if offset + 1 >= end:
                self._pending.discard(where)
            if offset < end:
                admitted.append(message)
        return admitted

    def _fail(self, exc: BaseException) -> None:
        raise StreamError(
            f"{self.group}: {type(exc).__name__}: {exc}; nothing of this run past its last "
            "commit was written: run it again"
        ) from exc

    def _done(self) -> bool:
        """True once every partition was read to its end. read_committed positions skip
        transaction markers (the last offset of a transactional partition is one), so
        the consumer's positions are checked after every poll (a local call), and a
        partition that reached its end is paused: the live tail is not read."""
        consumer = self._consumer
        assert consumer is not None
        if self._pending:
            for tp in consumer.position([TopicPartition(t, p) for t, p in self._pending]):
                if tp.offset >= 0 and tp.offset >= self._bounds[(tp.topic, tp.partition)][1]:
                    self._pending.discard((tp.topic, tp.partition))
        done = [TopicPartition(t, p) for t, p in self._partitions if (t, p) not in self._pending]
        if done:
            consumer.pause(done)
        return not self._pending
