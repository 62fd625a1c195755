"""Watch the demo's topics from the outside, as another company service would.

One background thread reads ``social.snapshots`` (manifests only: "a run of this
group completed"), ``social.events`` and ``loyalty.outcomes`` with
``read_committed``, decodes them with the contract codec, and keeps what the demo
prints and the e2e tests assert: the events seen, the latest balance per member,
the messages sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import KafkaError

from services.contracts import (
    DecodeError,
    DomainEvent,
    MessageFailed,
    MessageSent,
    PointsCredited,
    PointsDeducted,
    RunManifest,
    make_codec,
)
from services.contracts.topics import EVENTS, OUTCOMES, SNAPSHOTS, TopicSettings
from services.runtime import kafka
from services.runtime.settings import KafkaSettings


@dataclass
class Seen:
    """What the watcher has observed so far (read under ``Watcher.lock``)."""

    runs: dict[tuple[str, int], datetime] = field(default_factory=dict)
    run_counts: dict[tuple[str, int], int] = field(default_factory=dict)
    """Complete collection runs per group: the demo prints a count per step, not a
    line per run (a group is collected every few seconds)."""
    events: dict[str, DomainEvent] = field(default_factory=dict)
    event_deliveries: int = 0
    balances: dict[str, int] = field(default_factory=dict)
    credited: dict[str, int] = field(default_factory=dict)
    outcome_ids: set[tuple[str, str]] = field(default_factory=set)
    messages: list[MessageSent] = field(default_factory=list)
    failed_messages: list[MessageFailed] = field(default_factory=list)
    timeline: list[tuple[datetime, str]] = field(default_factory=list)
    """Every line the watcher said, with the wall-clock time it saw the record: when
    a step fails, this tells a late event from a late credit."""


class Watcher:
    """Consumes the three topics on a daemon thread until ``stop()``."""

    def __init__(
        self,
        kafka_settings: KafkaSettings,
        topics: TopicSettings,
        group_id: str,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self.seen = Seen()
        self._codec = make_codec(kafka_settings)
        self._names = {
            topics.name(SNAPSHOTS): "snapshot",
            topics.name(EVENTS): "event",
            topics.name(OUTCOMES): "outcome",
        }
        self._consumer = kafka.consumer(kafka_settings, group_id)
        self._say = on_line or (lambda _line: None)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-watch", daemon=True)

    def start(self) -> None:
        self._consumer.subscribe(list(self._names))
        self._thread.start()

    def stop(self) -> None:
        """Stop and close; safe to call whether or not ``start`` was called."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._consumer.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            for message in self._consumer.consume(500, 0.5):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        self._say(f"[red]watch: {error}[/]")
                    continue
                kind = self._names.get(message.topic() or "")
                key = (message.key() or b"").decode()
                if kind == "snapshot" and not key.endswith(":manifest:0"):
                    continue  # only manifests matter here; chunks can be megabytes
                try:
                    record = self._codec.decode(message.value() or b"", message.topic() or "")
                except DecodeError as exc:
                    self._say(f"[red]watch: undecodable record on {message.topic()}: {exc}[/]")
                    continue
                self._record(record)

    def _record(self, record: object) -> None:
        with self.lock:
            seen = self.seen
            if isinstance(record, RunManifest):
                group = (record.network.value, record.group_id)
                if seen.runs.get(group) == record.snapshot_at:
                    return  # the same run's manifest in another partition
                seen.runs[group] = record.snapshot_at
                seen.run_counts[group] = seen.run_counts.get(group, 0) + 1
                return
            if isinstance(record, PointsCredited | PointsDeducted):
                if (type(record).__name__, record.command_id) in seen.outcome_ids:
                    return  # an outcome re-published after a restart: already counted
                seen.outcome_ids.add((type(record).__name__, record.command_id))
                seen.balances[record.member_id] = record.balance
                sign = "+" if isinstance(record, PointsCredited) else "-"
                if isinstance(record, PointsCredited):
                    seen.credited[record.member_id] = (
                        seen.credited.get(record.member_id, 0) + record.points
                    )
                line = (
                    f"[green]ledger: {record.member_id} {sign}{record.points} points, "
                    f"balance {record.balance}[/]"
                )
            elif isinstance(record, MessageSent):
                seen.messages.append(record)
                line = (
                    f"[cyan]message: {record.channel.value} '{record.template_id}' "
                    f"sent to {record.member_id}[/]"
                )
            elif isinstance(record, MessageFailed):
                seen.failed_messages.append(record)
                line = f"[red]message: failed for {record.member_id}: {record.reason}[/]"
            elif isinstance(record, DomainEvent):
                seen.event_deliveries += 1
                if record.event_id in seen.events:
                    return
                seen.events[record.event_id] = record
                line = f"[yellow]event: {describe(record)}[/]"
            else:
                return
            seen.timeline.append((datetime.now(UTC), line))
        self._say(line)

    def mute(self) -> None:
        """Keep watching (the e2e tests read ``seen``) but print nothing more."""
        self._say = lambda _line: None

    def run_counts(self) -> dict[tuple[str, int], int]:
        with self.lock:
            return dict(self.seen.run_counts)

    def latest_run(self, network: str, group_id: int) -> datetime | None:
        with self.lock:
            return self.seen.runs.get((network, group_id))

    def wait_for_run_after(
        self, network: str, group_id: int, moment: datetime, timeout_s: float
    ) -> bool:
        """Wait until a run of the group dated after ``moment`` has been published."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            latest = self.latest_run(network, group_id)
            if latest is not None and latest > moment:
                return True
            time.sleep(0.2)
        return False

    def wait_for_run_started_after(
        self, network: str, group_id: int, moment: datetime, timeout_s: float
    ) -> bool:
        """Wait until a run of the group that *started* after ``moment`` has been published.

        A run is dated when its reads were done, so the first run dated after ``moment``
        may have read what changed before ``moment``; a group's runs never overlap, so
        the run after that one began after it, and saw every change made before."""
        deadline = time.monotonic() + timeout_s
        first: datetime | None = None
        while time.monotonic() < deadline:
            latest = self.latest_run(network, group_id)
            if latest is not None and latest > moment:
                if first is None:
                    first = latest
                elif latest > first:
                    return True
            time.sleep(0.2)
        return False


def describe(event: DomainEvent) -> str:
    fields = event.model_dump()
    what = type(event).__name__
    who = f"{event.network.value}:{event.social_user_id}"
    detail = [
        f"{name} {fields[name]}"
        for name in ("group_id", "post_id", "comment_id", "member_id")
        if fields.get(name) is not None
    ]
    return f"{what} {who} " + ", ".join(detail)
