"""Replay one offer over the recorded history in ``social.events``.

``social-loyalty replay --offer ID --from TIME [--to TIME] (--dry-run | --apply) [--notify]``

* Runs on the stream runtime (``services/runtime/stream.py``) as a bounded job
  with its own consumer group ``<prefix>social-loyalty.replay.<offer>.<YYYYmmddTHHMMSSZ>``
  (the lag monitor labels any group containing ``.replay.`` as a replay) and
  its own in-memory state: it never touches the live worker's stores.
* Links come from the link events read from the start of the log (only
  activity after a member linked counts); other events are evaluated from
  ``offsets_for_times(--from)`` up to ``offsets_for_times(--to)`` (or the end
  offsets at start), so a replay is a bounded job.
* ``Replayer`` is the pure part: the same ``resolve`` and ``evaluate`` the live
  worker uses, one offer, a ``MemberState`` per member.
* ``--apply`` sends the commands with ``replay=true`` in Kafka transactions
  with the group's offsets; ``SendMessage`` is left out unless ``--notify``;
  ``--dry-run`` writes nothing (no commands, offsets or dead letters). Command
  ids are deterministic (offer, event, action), so a second ``--apply``
  credits nothing new: the ledger already has the ids.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, cast

import psycopg
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from psycopg import sql

from services.contracts import models as m
from services.contracts.codec import Codec, make_codec
from services.contracts.headers import contract_headers
from services.contracts.ids import epoch_millis
from services.contracts.topics import COMMANDS_BONUS, DEADLETTER, EVENTS, catalog
from services.rules.engine import MemberState, OfferOutcome, evaluate
from services.rules.offer_store import LivePeriod
from services.rules.offers import Offer
from services.rules.processing import MemberLink, command_topic, link_key, resolve, to_command
from services.rules.settings import RulesSettings
from services.runtime import kafka
from services.runtime.db import connect
from services.runtime.sender import catalog_partitioners
from services.runtime.stream import BoundedStreamWorker, Output, Stores, StreamConfig

LINK_TYPES = (m.ProfileLinked, m.ProfileUnlinked)


def replay_group(offer_id: str, started_at: datetime) -> str:
    """The replay's consumer group; ``.replay.`` is what the lag monitor looks for."""
    return f"social-loyalty.replay.{offer_id}.{started_at.astimezone(UTC):%Y%m%dT%H%M%SZ}"


@dataclass
class MemberTotals:
    """What one member would get (dry-run) or got (apply) from the replay."""

    events: int = 0
    accrued: int = 0
    deducted: int = 0
    messages: int = 0
    commands: int = 0


@dataclass
class ReplayReport:
    """Who gets what, plus how much of the log was read."""

    offer_id: str
    offer_version: int
    messages_read: int = 0
    events_in_window: int = 0
    events_matched: int = 0
    unlinked: int = 0
    undecodable: int = 0
    suppressed_messages: int = 0
    members: dict[str, MemberTotals] = field(default_factory=lambda: defaultdict(MemberTotals))
    commands: int = 0
    """Commands sent (apply) or that would be sent (dry-run). A count, not the
    commands: a full-history ``--apply`` must run in memory bounded by the
    members, not by the events."""
    commands_by_type: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    outcomes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    seconds: float = 0.0
    group: str = ""
    """The consumer group the replay read with (deleted at the end unless kept)."""
    issued_at: datetime | None = None
    """The ``issued_at`` of every command it produced: how the ledger tells its entries."""

    @property
    def total_accrued(self) -> int:
        return sum(t.accrued for t in self.members.values())

    @property
    def total_deducted(self) -> int:
        return sum(t.deducted for t in self.members.values())


_MATCHED = frozenset(
    {
        OfferOutcome.GRANTED,
        OfferOutcome.UNDONE,
        OfferOutcome.LIMITED,
        OfferOutcome.ALREADY_SEEN,
        OfferOutcome.CONDITION_UNMET,
    }
)


class Replayer:
    """The pure replay core: feed events in log order, collect commands and totals."""

    def __init__(self, offer: Offer, *, tz: tzinfo, notify: bool, issued_at: datetime) -> None:
        self.offer = offer
        self.tz = tz
        self.notify = notify
        self.issued_at = issued_at
        self.links: dict[str, MemberLink] = {}
        self.states: dict[str, MemberState] = {}
        self.report = ReplayReport(offer.id, offer.version)

    def feed(self, event: m.DomainEvent, *, in_window: bool) -> list[m.Command]:
        """One event; before the window only link events matter (they build the links)."""
        if not in_window and not isinstance(event, LINK_TYPES):
            return []
        key = link_key(event)
        new_link, rule_event = resolve(self.links.get(key), event)
        if new_link is None:
            self.links.pop(key, None)
        else:
            self.links[key] = new_link
        if not in_window:
            return []
        self.report.events_in_window += 1
        if rule_event is None:
            self.report.unlinked += 1
            return []
        member = rule_event.member_id
        result = evaluate(
            self.offer, self.states.get(member, MemberState()), rule_event, tz=self.tz
        )
        self.states[member] = result.state
        self.report.outcomes[result.outcome.value] += 1
        if result.outcome in _MATCHED:
            self.report.events_matched += 1
            self.report.members[member].events += 1
        sent: list[m.Command] = []
        for spec in result.commands:
            command = to_command(spec, issued_at=self.issued_at, replay=True)
            totals = self.report.members[member]
            if isinstance(command, m.SendMessage):
                if not self.notify:
                    self.report.suppressed_messages += 1
                    continue
                totals.messages += 1
            elif isinstance(command, m.BonusAccrue):
                totals.accrued += command.points
            elif isinstance(command, m.BonusDeduct):
                totals.deducted += command.points
            totals.commands += 1
            self.report.commands += 1
            self.report.commands_by_type[type(command).__name__] += 1
            sent.append(command)
        return sent


def live_overlap(
    periods: Iterable[LivePeriod], start: datetime, end: datetime | None, now: datetime
) -> LivePeriod | None:
    """The first live period the replay window ``[start, end or now)`` overlaps.

    The live worker and a replay keep separate member state, so a replay
    ``--apply`` over time the worker already evaluated can break once per
    object, undo and caps (a like credited by both paths under different
    event ids, an undo one side never saw). ``None``: the window is safe.
    """
    stop = end or now
    for period in periods:
        if start < (period.until or now) and period.since < stop:
            return period
    return None


@dataclass(frozen=True)
class _Range:
    partition: int
    low: int
    window_start: int
    end: int


def _ranges(consumer: Any, topic: str, start_ms: int, end_ms: int | None) -> list[_Range]:
    metadata = consumer.list_topics(topic, timeout=30)
    if topic not in metadata.topics or metadata.topics[topic].error is not None:
        raise RuntimeError(f"topic {topic!r} does not exist")
    ranges = []
    for partition in sorted(metadata.topics[topic].partitions):
        low, high = kafka.watermarks(consumer, topic, partition)

        def offset_at(ms: int, partition: int = partition, high: int = high) -> int:
            found = consumer.offsets_for_times([TopicPartition(topic, partition, ms)], timeout=30)
            return high if found[0].offset < 0 else int(found[0].offset)

        window_start = offset_at(start_ms)
        end = high if end_ms is None else min(high, offset_at(end_ms))
        ranges.append(_Range(partition, low, max(low, window_start), end))
    return ranges


ProgressHook = Callable[[int], None]


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay will read, decided before it reads anything: the window, the
    offsets of each partition and its consumer group (under the topic prefix)."""

    offer_id: str
    topic: str
    group: str
    start: datetime
    end: datetime | None
    started_at: datetime
    ranges: dict[int, _Range]
    partition_counts: dict[str, int]

    @property
    def records(self) -> int:
        return sum(r.end - r.low for r in self.ranges.values())

    def lines(self) -> list[str]:
        """The plan as the CLI prints it before doing anything."""
        until = self.end.isoformat() if self.end else f"now ({self.started_at.isoformat()})"
        lines = [
            f"replay {self.offer_id}: window {self.start.isoformat()} .. {until}",
            f"  topic {self.topic}, consumer group {self.group}",
            f"  {self.records:,} records to read: links from each partition's start, "
            "other events from the window's first offset",
        ]
        lines += [
            f"  partition {r.partition}: links from {r.low}, window {r.window_start} .. {r.end}"
            for r in sorted(self.ranges.values(), key=lambda r: r.partition)
        ]
        if not self.ranges:
            lines.append("  nothing to read: the topic has no record before the window's end")
        return lines


def plan_replay(
    settings: RulesSettings, offer: Offer, *, start: datetime, end: datetime | None
) -> ReplayPlan:
    """Find the offsets the window maps to (``offsets_for_times``) and name the group."""
    topic = settings.topics.name(EVENTS)
    started_at = datetime.now(UTC)
    group = settings.topics.name(replay_group(offer.id, started_at))
    planner = kafka.consumer(settings.kafka, group)
    try:
        end_ms = epoch_millis(end) if end else None
        ranges = {
            r.partition: r
            for r in _ranges(planner, topic, epoch_millis(start), end_ms)
            if r.end > r.low
        }
        counts = kafka.partition_counts(planner)
    finally:
        planner.close()
    return ReplayPlan(offer.id, topic, group, start, end, started_at, ranges, counts)


def delete_group(settings: RulesSettings, group: str) -> None:
    """Remove the replay's consumer group: a replay is a bounded job, its group would
    otherwise stay listed (and counted by lag dashboards) for good."""
    admin = kafka.admin(settings.kafka)
    for future in admin.delete_consumer_groups([group], request_timeout=30).values():
        try:
            future.result(30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:  # a dry-run never joined
                raise


def run_replay(
    settings: RulesSettings,
    offer: Offer,
    *,
    start: datetime,
    end: datetime | None,
    apply: bool,
    notify: bool,
    codec: Codec | None = None,
    plan: ReplayPlan | None = None,
    keep_group: bool = False,
    on_total: Callable[[int], None] | None = None,
    on_progress: ProgressHook | None = None,
    on_command: Callable[[m.Command], None] | None = None,
) -> ReplayReport:
    """Read the bounded history, evaluate ``offer``, send the commands if ``apply``.

    Runs on the stream runtime as a bounded job with its own group (``plan``, or
    one planned now), deleted at the end unless ``keep_group``: with ``apply`` the
    commands and the replay group's offsets commit in Kafka transactions, a record
    that cannot be read is dead-lettered; a dry-run writes nothing at all. The
    report counts commands; ``on_command`` sees each one as it is produced (sent or
    not).
    """
    codec = codec or make_codec(settings.kafka)
    plan = plan or plan_replay(settings, offer, start=start, end=end)
    topic, ranges = plan.topic, plan.ranges
    clock = time.monotonic()
    if on_total:
        on_total(plan.records)
    replayer = Replayer(offer, tz=settings.tz, notify=notify, issued_at=plan.started_at)
    expected = tuple(m.EVENT_TYPES.values())

    def handle(message: Message, _stores: Stores) -> list[Output]:
        replayer.report.messages_read += 1
        if on_progress:
            on_progress(1)
        offset: int = message.offset()  # type: ignore[assignment]
        record = cast(m.DomainEvent, codec.decode(message.value(), topic, expected))
        window_start = ranges[message.partition()].window_start  # type: ignore[index]
        outputs = []
        for command in replayer.feed(record, in_window=offset >= window_start):
            if on_command is not None:
                on_command(command)
            if apply:
                name = settings.topics.name(command_topic(command))
                value = codec.encode(command, name)
                headers = contract_headers(command, "replay")
                outputs.append(Output(name, command.member_id.encode(), value, headers=headers))
        return outputs

    def dead(_letter: m.DeadLetter) -> None:
        replayer.report.undecodable += 1

    stream = BoundedStreamWorker(
        settings.kafka,
        StreamConfig(group=plan.group, instance="replay", commit_interval_s=1.0),
        handlers={topic: handle},
        codec=codec,
        deadletter_topic=settings.topics.name(DEADLETTER),
        partitioners=catalog_partitioners(
            catalog(settings.topics, rules_app_id=settings.app_id), plan.partition_counts
        ),
        partition_counts=plan.partition_counts,
        bounds={(topic, r.partition): (r.low, r.end) for r in ranges.values()},
        transactional=apply,
        on_dead=dead,
    )
    try:
        stream.run()
    finally:
        if not keep_group:
            delete_group(settings, plan.group)
    replayer.report.seconds = time.monotonic() - clock
    replayer.report.group = plan.group
    replayer.report.issued_at = plan.started_at
    return replayer.report


@dataclass(frozen=True)
class LedgerOutcome:
    """What the ledger made of a replay's bonus commands."""

    caught_up: bool
    problem: str | None = None
    """Why nothing can be said, when not ``caught_up``."""
    new_entries: int = 0
    credited: int = 0
    deducted: int = 0
    already_applied: int = 0


def ledger_outcome(
    settings: RulesSettings, report: ReplayReport, *, timeout_s: float = 60.0
) -> LedgerOutcome:
    """Wait until the actions service's ledger has consumed the bonus command topic
    up to its end (its PostgreSQL-sink offsets in ``RULES_LEDGER_SCHEMA``), then count
    the entries this replay created: they carry its ``issued_at``. Every other bonus
    command it sent was a command id the ledger already had (an earlier replay).
    ``caught_up`` is false when the ledger did not get there within ``timeout_s``
    (the actions service not running): nothing can be said then."""
    bonus = settings.topics.name(COMMANDS_BONUS)
    sent = sum(report.commands_by_type.get(t, 0) for t in ("BonusAccrue", "BonusDeduct"))
    consumer = kafka.consumer(settings.kafka, f"{report.group}.ledger-check")
    try:
        metadata = consumer.list_topics(bonus, timeout=30)
        ends = {
            p: kafka.watermarks(consumer, bonus, p)[1] for p in metadata.topics[bonus].partitions
        }
    finally:
        consumer.close()
    # A transactional write ends with a commit marker at high - 1; the sink stores the
    # next offset after the last record it applied, which is then high - 1.
    needed = {p: high - 1 for p, high in ends.items() if high > 0}
    schema = sql.Identifier(settings.ledger_schema)
    deadline = time.monotonic() + timeout_s
    with connect(settings.database, autocommit=True) as conn:
        while True:
            try:
                rows = conn.execute(
                    sql.SQL(
                        "SELECT partition, max(next_offset) FROM {}.consumer_offsets "
                        "WHERE topic = %s GROUP BY partition"
                    ).format(schema),
                    (bonus,),
                ).fetchall()
            except psycopg.errors.UndefinedTable:
                return LedgerOutcome(
                    False, f"schema {settings.ledger_schema!r} has no ledger (RULES_LEDGER_SCHEMA)"
                )
            at = {int(p): int(o) for p, o in rows}
            if all(at.get(p, -1) >= n for p, n in needed.items()):
                break
            if time.monotonic() > deadline:
                return LedgerOutcome(
                    False,
                    f"the ledger ({settings.ledger_schema}) did not apply the commands within "
                    f"{timeout_s:.0f}s (is the actions service running?)",
                )
            time.sleep(0.5)
        count, credited, deducted = conn.execute(
            sql.SQL(
                "SELECT count(*), coalesce(sum(points) FILTER (WHERE points > 0), 0), "
                "coalesce(-sum(points) FILTER (WHERE points < 0), 0) FROM {}.entries "
                "WHERE offer_id = %s AND replay AND issued_at = %s"
            ).format(schema),
            (report.offer_id, _millis(report.issued_at)),
        ).fetchone() or (0, 0, 0)
    return LedgerOutcome(True, None, int(count), int(credited), int(deducted), sent - int(count))


def _millis(moment: datetime | None) -> datetime | None:
    """Commands carry ``issued_at`` at millisecond precision (``UtcMillis``)."""
    if moment is None:
        return None
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)
