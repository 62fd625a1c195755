"""The ledger against the commands that should have produced it.

:func:`compare` is the invariant "every committed bonus command applied to the ledger
exactly once, with its amount", as a pure function over plain data: the fault matrix
checks it after every fault (``services/ops/fault_drill.py``), and the ledger's
reconciliation builds on it. The loaders read what they compare: the bonus command
topic as a ``read_committed`` consumer sees it (aborted transactions are not
commands), and the ledger's entries and skipped commands.

What the ledger legitimately does otherwise is no difference: a command it recorded
as skipped (a budget exhausted, a record it dead-lettered is *not* legitimate and
shows as missing), a clamp's shortfall (the entry's ``requested`` is the command's
amount; ``points`` what moved).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import psycopg
from confluent_kafka import TopicPartition

from services.contracts.codec import Codec, DecodeError
from services.contracts.models import BonusAccrue, BonusDeduct
from services.runtime import kafka
from services.runtime.settings import KafkaSettings


@dataclass(frozen=True)
class Command:
    """A bonus command as the ledger must apply it: ``points`` signed."""

    command_id: str
    member_id: str
    points: int


@dataclass(frozen=True)
class Entry:
    """A ledger entry: ``requested`` signed like ``points`` (what the command asked)."""

    command_id: str
    member_id: str
    points: int
    requested: int


DifferenceKind = Literal["missing", "extra", "amount", "member"]


@dataclass(frozen=True)
class Difference:
    kind: DifferenceKind
    command_id: str
    member_id: str
    expected: int | None
    found: int | None


@dataclass(frozen=True)
class Reconciliation:
    commands: int
    entries: int
    skipped: int
    differences: tuple[Difference, ...]
    duplicated_commands: int
    """Command ids the topic holds more than once (a redelivery: applied once)."""

    @property
    def missing(self) -> int:
        return sum(1 for d in self.differences if d.kind == "missing")

    @property
    def extra(self) -> int:
        return sum(1 for d in self.differences if d.kind == "extra")

    @property
    def ok(self) -> bool:
        return not self.differences


def compare(
    commands: Iterable[Command], entries: Iterable[Entry], skipped: Iterable[str] = ()
) -> Reconciliation:
    """What is missing from the ledger, extra in it, or of another amount or member."""
    by_id: dict[str, Command] = {}
    seen = 0
    for command in commands:
        seen += 1
        by_id.setdefault(command.command_id, command)
    ledger = {entry.command_id: entry for entry in entries}
    skipped_ids = set(skipped)
    differences: list[Difference] = []
    for command_id, command in sorted(by_id.items()):
        entry = ledger.get(command_id)
        if entry is None:
            if command_id not in skipped_ids:
                differences.append(
                    Difference("missing", command_id, command.member_id, command.points, None)
                )
        elif entry.member_id != command.member_id:
            differences.append(Difference("member", command_id, entry.member_id, None, None))
        elif entry.requested != command.points:
            differences.append(
                Difference("amount", command_id, command.member_id, command.points, entry.requested)
            )
    for command_id in sorted(ledger.keys() - by_id.keys()):
        entry = ledger[command_id]
        differences.append(Difference("extra", command_id, entry.member_id, None, entry.points))
    return Reconciliation(
        commands=len(by_id),
        entries=len(ledger),
        skipped=len(skipped_ids & by_id.keys()),
        differences=tuple(differences),
        duplicated_commands=seen - len(by_id),
    )


def committed_commands(settings: KafkaSettings, topic: str, codec: Codec) -> list[Command]:
    """Every bonus command on ``topic`` up to its end now, read_committed."""
    consumer = kafka.consumer(settings, f"reconcile-{topic}", read_committed=True)
    commands: list[Command] = []
    try:
        metadata = consumer.list_topics(topic, timeout=30)
        partitions = sorted(metadata.topics[topic].partitions)
        ends = {p: kafka.watermarks(consumer, topic, p)[1] for p in partitions}
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in pending])
        while pending:
            for message in consumer.consume(1000, 1.0):
                if message.error() is not None:
                    continue
                try:
                    record = codec.decode(message.value(), topic, (BonusAccrue, BonusDeduct))
                except DecodeError:
                    continue
                assert isinstance(record, BonusAccrue | BonusDeduct)
                sign = 1 if isinstance(record, BonusAccrue) else -1
                commands.append(
                    Command(record.command_id, record.member_id, sign * int(record.points))
                )
            for tp in consumer.position([TopicPartition(topic, p) for p in pending]):
                if tp.offset >= ends[tp.partition]:
                    pending.discard(tp.partition)
    finally:
        consumer.close()
    return commands


def ledger_entries(conn: psycopg.Connection, schema: str) -> tuple[list[Entry], list[str]]:
    """The ledger's entries and the command ids it recorded as skipped."""
    entries = [
        Entry(str(cid), str(member), int(points), int(requested) * (1 if points >= 0 else -1))
        for cid, member, points, requested in conn.execute(
            psycopg.sql.SQL(
                "SELECT command_id, member_id, points, requested FROM {}.entries"
            ).format(psycopg.sql.Identifier(schema))
        )
    ]
    skipped = [
        str(row[0])
        for row in conn.execute(
            psycopg.sql.SQL("SELECT command_id FROM {}.skipped_commands").format(
                psycopg.sql.Identifier(schema)
            )
        )
    ]
    return entries, skipped


def balances(entries: Iterable[Entry]) -> Mapping[str, int]:
    totals: dict[str, int] = {}
    for entry in entries:
        totals[entry.member_id] = totals.get(entry.member_id, 0) + entry.points
    return totals
