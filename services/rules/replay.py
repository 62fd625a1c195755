"""Replay one offer over the recorded history in ``social.events``.

``social-loyalty replay --offer ID --from TIME [--to TIME] (--dry-run | --apply) [--notify]``

* Its own consumer group ``social-loyalty.replay.<offer>.<YYYYmmddTHHMMSSZ>``
  (the lag monitor labels any group containing ``.replay.`` as a replay) and
  its own in-memory state: it never touches the live worker's tables.
* Links come from the link events read from the start of the log (only
  activity after a member linked counts); other events are evaluated from
  ``offsets_for_times(--from)`` up to ``offsets_for_times(--to)`` (or the end
  offsets at start), so a replay is a bounded job.
* ``Replayer`` is the pure part: the same ``resolve`` and ``evaluate`` the live
  worker uses, one offer, a ``MemberState`` per member.
* ``--apply`` sends the commands with ``replay=true``; ``SendMessage`` is left
  out unless ``--notify``. Command ids are deterministic (offer, event, action),
  so a second ``--apply`` credits nothing new: the ledger already has the ids.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, cast

from confluent_kafka import KafkaError, TopicPartition

from services.contracts import models as m
from services.contracts.codec import Codec, DecodeError, make_codec
from services.contracts.ids import epoch_millis
from services.contracts.topics import EVENTS
from services.rules.engine import MemberState, Outcome, evaluate
from services.rules.offers import Offer
from services.rules.processing import Link, command_topic, link_key, resolve, to_command
from services.rules.settings import RulesSettings
from services.rules.store import LivePeriod
from services.runtime import kafka

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

    @property
    def total_accrued(self) -> int:
        return sum(t.accrued for t in self.members.values())

    @property
    def total_deducted(self) -> int:
        return sum(t.deducted for t in self.members.values())


_MATCHED = frozenset(
    {
        Outcome.GRANTED,
        Outcome.UNDONE,
        Outcome.LIMITED,
        Outcome.ALREADY_SEEN,
        Outcome.CONDITION_UNMET,
    }
)


class Replayer:
    """The pure replay core: feed events in log order, collect commands and totals."""

    def __init__(self, offer: Offer, *, tz: tzinfo, notify: bool, issued_at: datetime) -> None:
        self.offer = offer
        self.tz = tz
        self.notify = notify
        self.issued_at = issued_at
        self.links: dict[str, Link] = {}
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
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)

        def offset_at(ms: int, partition: int = partition, high: int = high) -> int:
            found = consumer.offsets_for_times([TopicPartition(topic, partition, ms)], timeout=30)
            return high if found[0].offset < 0 else int(found[0].offset)

        window_start = offset_at(start_ms)
        end = high if end_ms is None else min(high, offset_at(end_ms))
        ranges.append(_Range(partition, low, max(low, window_start), end))
    return ranges


ProgressHook = Callable[[int], None]


class _Sender:
    """Sends commands with delivery reports; ``close`` fails loudly on any loss."""

    def __init__(self, settings: RulesSettings, codec: Codec, client_id: str) -> None:
        self._producer = kafka.producer(settings.kafka, client_id)
        self._topics = settings.topics
        self._codec = codec
        self.failures: list[str] = []

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failures.append(str(err))

    def send(self, command: m.Command) -> None:
        topic = self._topics.name(command_topic(command))
        self._producer.produce(
            topic,
            key=command.member_id.encode(),
            value=self._codec.encode(command, topic),
            on_delivery=self._delivered,
        )
        self._producer.poll(0)

    def close(self) -> None:
        remaining = self._producer.flush(60)
        if remaining or self.failures:
            raise RuntimeError(
                f"replay apply: {remaining} commands undelivered, failures: {self.failures[:3]}"
            )


def run_replay(
    settings: RulesSettings,
    offer: Offer,
    *,
    start: datetime,
    end: datetime | None,
    apply: bool,
    notify: bool,
    codec: Codec | None = None,
    on_total: Callable[[int], None] | None = None,
    on_progress: ProgressHook | None = None,
    on_command: Callable[[m.Command], None] | None = None,
) -> ReplayReport:
    """Read the bounded history, evaluate ``offer``, send the commands if ``apply``.

    The report counts commands; ``on_command`` sees each one as it is produced
    (sent or not), for a caller that wants them without the replay keeping them.
    """
    codec = codec or make_codec(settings.kafka)
    topic = settings.topics.name(EVENTS)
    started_at = datetime.now(UTC)
    clock = time.monotonic()
    consumer = kafka.consumer(
        settings.kafka,
        replay_group(offer.id, started_at),
        extra={"enable.partition.eof": True},
        read_committed=True,
    )
    sender = _Sender(settings, codec, f"replay.{offer.id}") if apply else None
    replayer = Replayer(offer, tz=settings.tz, notify=notify, issued_at=started_at)
    try:
        end_ms = epoch_millis(end) if end else None
        ranges = [r for r in _ranges(consumer, topic, epoch_millis(start), end_ms) if r.end > r.low]
        if on_total:
            on_total(sum(r.end - r.low for r in ranges))
        if ranges:
            consumer.assign([TopicPartition(topic, r.partition, r.low) for r in ranges])
        expected = tuple(m.EVENT_TYPES.values())
        done: dict[int, int] = {}
        for msg, r in _bounded(consumer, topic, {r.partition: r for r in ranges}):
            replayer.report.messages_read += 1
            if on_progress:
                on_progress(1)
            done[r.partition] = msg.offset() + 1
            try:
                record = cast(m.DomainEvent, codec.decode(msg.value(), topic, expected))
            except DecodeError:
                replayer.report.undecodable += 1
                continue
            for command in replayer.feed(record, in_window=msg.offset() >= r.window_start):
                if sender is not None:
                    sender.send(command)
                if on_command is not None:
                    on_command(command)
        if sender is not None:
            sender.close()
        if done:
            # After the commands are acknowledged, so lag tools see the replay's progress.
            consumer.commit(
                offsets=[TopicPartition(topic, p, o) for p, o in done.items()], asynchronous=False
            )
    finally:
        consumer.close()
    replayer.report.seconds = time.monotonic() - clock
    return replayer.report


def _bounded(consumer: Any, topic: str, window: dict[int, _Range]) -> Iterator[tuple[Any, _Range]]:
    """Messages of the assigned partitions up to each one's ``end``, then stop."""
    pending = set(window)
    while pending:
        msg = consumer.poll(1.0)
        if msg is None:
            _finish_by_position(consumer, topic, window, pending)
            continue
        partition = msg.partition()
        error = msg.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                pending.discard(partition)
                continue
            raise RuntimeError(f"reading {topic}: {error}")
        r = window.get(partition)
        if partition not in pending or r is None or msg.offset() >= r.end:
            pending.discard(partition)
            continue
        yield msg, r
        if msg.offset() + 1 >= r.end:
            pending.discard(partition)


def _finish_by_position(
    consumer: Any, topic: str, window: dict[int, _Range], pending: set[int]
) -> None:
    """read_committed positions skip transaction markers: done once past ``end``."""
    positions = consumer.position([TopicPartition(topic, p) for p in pending])
    for tp in positions:
        if tp.offset >= 0 and tp.offset >= window[tp.partition].end:
            pending.discard(tp.partition)
