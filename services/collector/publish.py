"""Publishing a run: one Kafka transaction, all or nothing.

The collector reads the whole group first and opens the transaction only to
publish, so a slow collection never holds a transaction open (an open
transaction stalls every ``read_committed`` reader of its partitions, other
groups' snapshots included). Any error between ``begin`` and ``commit`` (an
oversize snapshot, an encode error, a failed delivery) aborts the transaction,
so readers see the whole run or nothing.

The ``transactional.id`` is stable per group: a restarted collector's
``init_transactions`` fences the zombie of its previous incarnation, whose
late commit the broker then refuses.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from confluent_kafka import KafkaException, Producer

from services.collector.chunks import check_size
from services.contracts.codec import Codec
from services.contracts.models import RunManifest, SnapshotChunk
from services.runtime import kafka
from services.runtime.sender import DeliveryError, Sender
from services.runtime.settings import KafkaSettings

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """The run's transaction was aborted; nothing of it is visible to read_committed readers."""


class SnapshotPublisher:
    """Transactional producers, one per group, reused across that group's runs."""

    def __init__(
        self,
        kafka_settings: KafkaSettings,
        codec: Codec,
        topic: str,
        *,
        transactional_id_prefix: str,
        max_message_bytes: int,
        transaction_timeout_s: float = 60.0,
        before_commit: Callable[[int], None] | None = None,
    ) -> None:
        self._kafka = kafka_settings
        self._codec = codec
        self.topic = topic
        self._prefix = transactional_id_prefix
        self._max = max_message_bytes
        self._timeout_s = transaction_timeout_s
        self._producers: dict[str, Producer] = {}
        self._lock = threading.Lock()
        self.before_commit = before_commit
        """Test hook: called with the number of messages produced, before the commit."""

    def transactional_id(self, network: str, group_id: int) -> str:
        return f"{self._prefix}.{self.topic}.{network}.{group_id}"

    def _producer(self, tid: str, client_id: str) -> Producer:
        with self._lock:
            producer = self._producers.get(tid)
            if producer is None:
                producer = kafka.producer(
                    self._kafka,
                    client_id,
                    transactional_id=tid,
                    extra={
                        # librdkafka refuses messages above its own limit (1 MB by default)
                        # before the broker sees them; the size guard keeps us under both.
                        "message.max.bytes": self._max + 64 * 1024,
                        "transaction.timeout.ms": int(self._timeout_s * 1000),
                    },
                )
                producer.init_transactions(self._kafka.connect_timeout_s * 3)
                self._producers[tid] = producer
            return producer

    def _discard(self, tid: str) -> None:
        with self._lock:
            producer = self._producers.pop(tid, None)
        if producer is not None:
            producer.flush(0)

    def publish(self, network: str, group_id: int, chunks: Iterable[SnapshotChunk]) -> int:
        """Produce every chunk in one transaction and commit it; returns the message count.

        Blocking (run it in a thread from asyncio). On any error the transaction is
        aborted and ``PublishError`` (or the original error) is raised.
        """
        tid = self.transactional_id(network, group_id)
        producer = self._producer(tid, f"collector.{network}.{group_id}")
        # librdkafka's default partitioner, the one the catalog names for snapshots.
        sender = Sender(producer, native="consistent_random")
        partitions = self._partitions(producer)
        producer.begin_transaction()
        sent = 0
        try:
            for chunk in chunks:
                key = chunk.key().to_bytes()
                value = self._codec.encode(chunk, self.topic)
                check_size(key, value, self._max, topic=self.topic)
                # The manifest goes to every partition: each one's detector learns there,
                # after this run's chunks, which of its posts left the window.
                for partition in partitions if isinstance(chunk, RunManifest) else (-1,):
                    sender.send(self.topic, value, key, partition)
                    sent += 1
            if self.before_commit is not None:
                self.before_commit(sent)
            try:
                sender.flush(self._timeout_s)
            except DeliveryError as exc:
                raise PublishError(f"delivery failed: {exc}") from exc
            producer.commit_transaction(self._timeout_s)
        except BaseException as exc:
            self._abort(tid, producer, exc)
            if isinstance(exc, KafkaException):
                raise PublishError(f"Kafka refused the run: {exc.args[0]}") from exc
            raise
        return sent

    def _partitions(self, producer: Producer) -> range:
        metadata = producer.list_topics(self.topic, timeout=self._kafka.connect_timeout_s)
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise PublishError(f"topic {self.topic!r} is not in the cluster's metadata")
        return range(len(topic.partitions))

    def _abort(self, tid: str, producer: Producer, cause: BaseException) -> None:
        log.warning("aborting the transaction of %s: %s", tid, cause)
        try:
            producer.abort_transaction(self._timeout_s)
        except KafkaException as exc:
            # Fenced or fatal: this producer is done; the next run builds a new one, whose
            # init_transactions aborts whatever this one left open.
            log.error("abort of %s failed (%s); the producer is replaced", tid, exc)
            self._discard(tid)

    def close(self) -> None:
        with self._lock:
            producers, self._producers = list(self._producers.values()), {}
        for producer in producers:
            producer.flush(5)
