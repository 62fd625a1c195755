"""What every stream benchmark measures the same way: a timed read of a topic, a peak RSS.

The raw confluent-kafka read is the yardstick every ratio is taken against, so it
must be the same read everywhere: a fresh group, the catalog's consumer settings,
timed from the first message to the last.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from confluent_kafka import KafkaError, Message

from services.runtime import kafka
from services.runtime.settings import KafkaSettings


def timed_read(
    settings: KafkaSettings,
    topic: str,
    total: int,
    work: Callable[[Message], object] | None = None,
    *,
    group: str | None = None,
    batch: int = 1000,
    deadline_s: float = 180.0,
) -> float:
    """Seconds a fresh consumer takes to read ``total`` messages of ``topic``, first to last,
    calling ``work`` on each (``None``: the raw read, the ceiling)."""
    consumer = kafka.consumer(settings, group or f"bench-read-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    seen = 0
    started: float | None = None
    deadline = time.monotonic() + deadline_s
    try:
        while seen < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read of {topic}: {seen} of {total} after {deadline_s:.0f}s")
            for message in consumer.consume(batch, 0.5):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(str(error))
                    continue
                if started is None:
                    started = time.perf_counter()
                if work is not None:
                    work(message)
                seen += 1
    finally:
        consumer.close()
    return time.perf_counter() - (started or time.perf_counter())


def peak_rss_mib(pid: int) -> float | None:
    """The process's peak resident memory (``VmHWM``) in MiB; ``None`` once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds the process has used so far; ``None`` once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)


def produce_all(
    settings: KafkaSettings, topic: str, records: Iterable[tuple[bytes, bytes]], name: str
) -> None:
    """Produce every ``(key, value)`` as fast as the client takes them, then flush."""
    producer = kafka.producer(settings, name, extra={"linger.ms": 20})
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError(f"records for {topic} not delivered")
