"""The one producer helper: enqueue, survive a full queue, collect delivery errors, flush.

Every producer of the downstream services sends through a :class:`Sender`, so a full
librdkafka queue, a failed delivery and the partition a key lands in are handled the
same way everywhere.

**One partitioner per topic.** The topic catalog says which partitioner each topic
is written with (``TopicSpec.partitioner``). A producer has one native partitioner
(librdkafka's ``partitioner`` setting); for a topic whose catalog partitioner differs,
the sender computes the partition itself: ``consistent_random`` is CRC-32 of the key
modulo the partition count (what librdkafka does natively, and cheap from Python via
``zlib``). A topic the sender has no entry for is written with the native one.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Producer

from services.contracts.topics import TopicSpec

log = logging.getLogger(__name__)

NATIVE = "murmur2_random"
"""The partitioner downstream producers are built with (Java's and aiokafka's)."""

POLL_EVERY = 500
"""Sends between two ``poll(0)`` calls: delivery reports are served now and then."""


def catalog_partitioners(specs: Iterable[TopicSpec], counts: Mapping[str, int]) -> dict[str, str]:
    """The catalog partitioner of every topic of ``specs`` that exists (is in ``counts``),
    for :class:`Sender`'s ``partitioners``."""
    return {spec.name: spec.partitioner for spec in specs if spec.name in counts}


class DeliveryError(RuntimeError):
    """Some records were not acknowledged by the cluster."""


class Sender:
    """Sends through one producer; ``flush`` raises if anything was not delivered.

    ``partitioners`` maps a real topic name to its catalog partitioner and
    ``partition_counts`` to its partition count (needed only for the topics whose
    partitioner is not the producer's native one). ``report=False`` asks for no
    delivery report per record: for a transactional producer, whose
    ``commit_transaction`` fails when any record of the transaction failed.
    """

    def __init__(
        self,
        producer: Producer,
        *,
        native: str = NATIVE,
        partitioners: Mapping[str, str] | None = None,
        partition_counts: Mapping[str, int] | None = None,
        report: bool = True,
    ) -> None:
        self.producer = producer
        self._on_delivery = self._delivered if report else None
        self.failures: list[str] = []
        self._unpolled = 0
        self._computed: dict[str, int] = {}
        for topic, partitioner in (partitioners or {}).items():
            if partitioner == native:
                continue
            if partitioner not in ("consistent_random", "consistent"):
                raise ValueError(f"{topic}: partitioner {partitioner!r} is not supported")
            count = (partition_counts or {}).get(topic)
            if not count:
                raise ValueError(f"{topic}: partition count needed for {partitioner}")
            self._computed[topic] = count

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failures.append(str(err))

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        partition: int = -1,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        """Enqueue one record (waits while librdkafka's queue is full)."""
        if partition < 0 and key is not None:
            count = self._computed.get(topic)
            if count is not None:
                partition = zlib.crc32(key) % count
        while True:
            try:
                self.producer.produce(
                    topic,
                    value,
                    key,
                    partition=partition,
                    on_delivery=self._on_delivery,
                    headers=headers,
                )
                break
            except BufferError:
                self.producer.poll(0.05)
        self._unpolled += 1
        if self._unpolled >= POLL_EVERY:
            self._unpolled = 0
            self.producer.poll(0)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait for every acknowledgement; raise :class:`DeliveryError` on any failure."""
        remaining = self.producer.flush(timeout)
        if remaining or self.failures:
            failures, self.failures = self.failures, []
            raise DeliveryError(f"{remaining} records undelivered; failures: {failures[:3]}")
