"""The in-order guard against the real broker: holes filled, repeats dropped, aborts invisible."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]
from faust.types import TP

from services.detector.faust_app import ReadCommittedApp
from services.detector.inorder import InOrder, SourceRecord
from services.runtime import kafka
from services.runtime.settings import KafkaSettings


@dataclass(frozen=True)
class Delivered:
    """What the guard reads of a Faust message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    generation_id: int = 1


@dataclass
class Log:
    settings: KafkaSettings
    topic: str
    group: str

    def committed_records(self) -> list[SourceRecord]:
        """Every record a read_committed reader sees, in offset order."""
        consumer = kafka.consumer(
            self.settings, f"all-{uuid.uuid4().hex}", extra={"enable.partition.eof": True}
        )
        consumer.assign([TopicPartition(self.topic, 0, 0)])
        found: list[SourceRecord] = []
        try:
            while True:
                msg = consumer.poll(10)
                assert msg is not None
                if msg.error() is not None:
                    return found
                offset = msg.offset()
                assert offset is not None
                found.append(SourceRecord(self.topic, 0, offset, msg.key(), msg.value()))
        finally:
            consumer.close()

    def end_offset(self) -> int:
        consumer = kafka.consumer(self.settings, f"end-{uuid.uuid4().hex}")
        try:
            return kafka.watermarks(consumer, self.topic, 0)[1]
        finally:
            consumer.close()

    def commit(self, offset: int) -> None:
        consumer = kafka.consumer(self.settings, self.group)
        try:
            consumer.commit(offsets=[TopicPartition(self.topic, 0, offset)], asynchronous=False)
        finally:
            consumer.close()


@pytest.fixture
def log(kafka_bootstrap: str) -> Iterator[Log]:
    """One partition: 3 committed transactions of 3 records, one aborted between them."""
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    topic = f"t.inorder.{uuid.uuid4().hex[:8]}"
    admin = kafka.admin(settings)
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(30)
    producer = kafka.producer(settings, "inorder-test", transactional_id=f"tx-{topic}")
    producer.init_transactions(30)
    for run in range(4):
        producer.begin_transaction()
        for n in range(3):
            producer.produce(topic, f"{run}-{n}".encode(), f"k{n}".encode())
        if run == 2:
            producer.flush(30)
            producer.abort_transaction(30)
        else:
            producer.commit_transaction(30)
    yield Log(settings, topic, f"t.inorder-group.{topic}")
    admin.delete_topics([topic])


def _guard(log: Log, skipped: list[int]) -> tuple[InOrder, ReadCommittedApp]:
    app = ReadCommittedApp(f"t-inorder-{uuid.uuid4().hex[:8]}", broker="kafka://127.0.0.1:1")
    guard = InOrder(
        app,
        log.settings,
        log.group,
        client_id="inorder-test",
        timeout_s=30,
        on_skipped=skipped.append,
    )
    return guard, app


def _deliver(
    guard: InOrder, records: list[SourceRecord], generation: int = 1
) -> tuple[list[int], list[bool]]:
    handled: list[int] = []

    async def handle(record: SourceRecord) -> None:
        handled.append(record.offset)

    async def run() -> list[bool]:
        return [
            await guard.run(
                Delivered(r.topic, r.partition, r.offset, r.key, r.value, generation), handle
            )
            for r in records
        ]

    return handled, asyncio.run(run())


def test_in_order_delivery_reads_nothing_and_aborted_records_are_no_hole(log: Log) -> None:
    records = log.committed_records()
    expected = [f"{run}-{n}".encode() for run in (0, 1, 3) for n in range(3)]
    assert [r.value for r in records] == expected
    skipped: list[int] = []
    guard, app = _guard(log, skipped)
    try:
        handled, fresh = _deliver(guard, records)
    finally:
        guard.close()
    # The gaps between transactions (markers, the aborted run) are not holes.
    assert handled == [r.offset for r in records]
    assert all(fresh)
    assert skipped == []
    # Commits may go up to the record after the last one handled, no further.
    assert app.commit_limits == {TP(log.topic, 0): records[-1].offset + 1}


def test_a_hole_is_filled_in_order_with_commits_held_and_repeats_are_dropped(log: Log) -> None:
    records = log.committed_records()
    skipped: list[int] = []
    guard, app = _guard(log, skipped)
    limits: list[int | None] = []
    tp = TP(log.topic, 0)
    handled: list[int] = []

    async def handle(record: SourceRecord) -> None:
        limits.append((app.commit_limits or {}).get(tp))
        handled.append(record.offset)

    async def run() -> list[bool]:
        # Faust hands over the first record, then the sixth: four are missing.
        order = [records[0], records[5], records[3], records[6], records[7], records[8]]
        return [
            await guard.run(Delivered(r.topic, 0, r.offset, r.key, r.value), handle) for r in order
        ]

    try:
        fresh = asyncio.run(run())
    finally:
        guard.close()
    assert handled == [r.offset for r in records]
    assert skipped == [4]
    # Each record is handled with commits limited to it: never past what is unhandled.
    assert limits == [records[0].offset] + [r.offset + 1 for r in records[:-1]]
    assert app.commit_limits == {tp: records[-1].offset + 1}
    # records[3] came again after the hole was filled: handled once only.
    assert fresh == [True, True, False, True, True, True]


def test_a_new_assignment_resumes_from_the_committed_offset(log: Log) -> None:
    records = log.committed_records()
    log.commit(records[4].offset)  # as if another worker had handled the first four
    skipped: list[int] = []
    guard, _ = _guard(log, skipped)
    try:
        first, _ = _deliver(guard, records[:2], generation=1)
        # A rebalance: the guard asks the broker again, and Faust's first record of
        # the new generation comes after the committed offset.
        second, fresh = _deliver(guard, [records[6], records[7]], generation=2)
    finally:
        guard.close()
    assert first == []  # below the committed offset: handled before, by someone
    assert second == [records[4].offset, records[5].offset, records[6].offset, records[7].offset]
    assert fresh == [True, True]
    assert skipped == [2]


def test_a_failing_handler_keeps_commits_held_and_the_next_record_retries(log: Log) -> None:
    records = log.committed_records()
    guard, app = _guard(log, [])
    tp = TP(log.topic, 0)
    handled: list[int] = []
    failed: list[int] = []

    async def handle(record: SourceRecord) -> None:
        if record.offset == records[2].offset and not failed:
            failed.append(record.offset)
            raise RuntimeError("the broker went away")
        handled.append(record.offset)

    async def run() -> None:
        await guard.run(Delivered(log.topic, 0, records[0].offset, None, None), handle)
        with pytest.raises(RuntimeError):
            await guard.run(Delivered(log.topic, 0, records[4].offset, None, None), handle)
        # Faust acked records[4] on the way out; no commit may pass records[2].
        assert (app.commit_limits or {})[tp] == records[1].offset + 1
        await guard.run(Delivered(log.topic, 0, records[5].offset, None, None), handle)

    try:
        asyncio.run(run())
    finally:
        guard.close()
    assert failed == [records[2].offset]
    assert handled == [r.offset for r in records[:6]]
    assert app.commit_limits == {tp: records[5].offset + 1}


def _step_over(guard: InOrder, positions: dict[TP, int]) -> list[dict[TP, int]]:
    """Two rounds, as the worker's loop runs them: a partition moves only once it has
    been idle (nothing handled) for a whole round."""

    async def run() -> list[dict[TP, int]]:
        return [await guard.step_over(positions), await guard.step_over(positions)]

    return asyncio.run(run())


def test_idle_the_limit_steps_over_markers_and_aborted_records_never_over_a_record(
    log: Log,
) -> None:
    """KAFKA-6607: after the last record of a transaction comes its commit marker, which
    no consumer is given, so a group that commits "last record + 1" stays one behind the
    end. Idle, the guard moves the commit limit over markers and aborted records, up to
    the consumer's position, but never over a committed record it has not handled, even
    when the position says the consumer handed it over (Faust may still buffer it, or
    have dropped it)."""
    records = log.committed_records()
    end = log.end_offset()
    tp = TP(log.topic, 0)
    guard, app = _guard(log, [])
    app.consumer_generation_id = 1  # the generation of the delivered records
    try:
        _deliver(guard, records[:3])
        assert app.commit_limits == {tp: records[2].offset + 1}
        # Past the first run's marker, and no further: records[3] is not handled.
        assert _step_over(guard, {tp: end}) == [{}, {tp: records[3].offset}]
        assert records[3].offset == records[2].offset + 2
        assert _step_over(guard, {tp: end}) == [{}, {}]
        assert app.commit_limits == {tp: records[3].offset}
        # Past the second run's marker, the aborted run and its abort marker.
        _deliver(guard, records[3:6])
        assert _step_over(guard, {tp: end}) == [{}, {tp: records[6].offset}]
        assert records[6].offset > records[5].offset + 2
        # A position behind the guard moves nothing.
        _deliver(guard, records[6:])
        assert _step_over(guard, {tp: records[-1].offset}) == [{}, {}]
        # At the end: the last marker too, so the group can commit the end offset.
        assert _step_over(guard, {tp: end}) == [{}, {tp: end}]
        assert end == records[-1].offset + 2
        assert app.commit_limits == {tp: end}
        # A record Faust delivers again after the move is not handled twice.
        handled, fresh = _deliver(guard, records[-1:])
        assert (handled, fresh) == ([], [False])
    finally:
        guard.close()


def test_idle_a_partition_with_nothing_handled_steps_from_the_committed_offset(log: Log) -> None:
    """After a restart or a rebalance while idle, no record of the assignment has been
    handled: the guard starts from the group's committed offset, as for a record."""
    records = log.committed_records()
    end = log.end_offset()
    tp = TP(log.topic, 0)
    log.commit(records[4].offset)  # another worker handled the first four
    guard, app = _guard(log, [])
    try:
        assert _step_over(guard, {tp: end}) == [{}, {}]  # records[4] is not handled
        assert app.commit_limits == {}
    finally:
        guard.close()
    log.commit(records[-1].offset + 1)  # and then every record
    guard, app = _guard(log, [])
    try:
        assert _step_over(guard, {tp: end}) == [{}, {tp: end}]
        assert app.commit_limits == {tp: end}
    finally:
        guard.close()
