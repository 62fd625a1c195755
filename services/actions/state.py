"""Mailing subscriptions and counters: small per-member state with the same
exactly-once pattern as the ledger (command ids in ``applied_commands``).

A replayed ``MailingSet`` (``replay=true``) is never applied: a replay re-runs old
events through an offer, and the subscription it would set is older than whatever the
member chose since (applying it could switch back on a subscription the member turned
off). It is recorded in ``skipped_commands`` and counted, and emits no outcome."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import psycopg

from services.actions import metrics
from services.actions.consumers import CommandHandler, CommandItem, emit_outcome
from services.contracts.models import (
    CounterChanged,
    CounterIncrement,
    MailingSet,
    SubscriptionChanged,
)
from services.contracts.topics import COMMANDS_COUNTER, COMMANDS_MAILING
from services.runtime.pgsink import Emit


def _first_time(conn: psycopg.Connection, items: list[CommandItem], kind: str) -> list[CommandItem]:
    """The items whose command id has never been applied, in order, each id once."""
    ids: list[str] = []
    for item in items:
        if item.record.command_id not in ids:
            ids.append(item.record.command_id)
    fresh = {
        row[0]
        for row in conn.execute(
            "INSERT INTO applied_commands (command_id, kind) "
            "SELECT id, %s FROM unnest(%s::text[]) AS u(id) "
            "ON CONFLICT (command_id) DO NOTHING RETURNING command_id",
            (kind, ids),
        )
    }
    chosen: list[CommandItem] = []
    for item in items:
        if item.record.command_id in fresh:
            fresh.discard(item.record.command_id)
            chosen.append(item)
    return chosen


class MailingHandler(CommandHandler):
    name: ClassVar[str] = "mailing"
    topic: ClassVar[str] = COMMANDS_MAILING
    expected: ClassVar[tuple[type, ...]] = (MailingSet,)

    def apply(
        self, conn: psycopg.Connection, items: list[CommandItem], performed: Any
    ) -> list[Emit]:
        live = [item for item in items if not item.record.replay]
        if len(live) < len(items):
            self._skip_replays(conn, [item for item in items if item.record.replay])
        chosen = _first_time(conn, live, self.name)
        if len(chosen) < len(live):
            metrics.DUPLICATES.labels(self.name).inc(len(live) - len(chosen))
        final: dict[tuple[str, str], MailingSet] = {}
        emits: list[Emit] = []
        now = datetime.now(UTC)
        for item in chosen:
            command = item.record
            assert isinstance(command, MailingSet)
            final[(command.member_id, command.channel.value)] = command
            metrics.COMMANDS_APPLIED.labels(self.name, "MailingSet").inc()
            emits.append(
                emit_outcome(
                    SubscriptionChanged(
                        command_id=command.command_id,
                        member_id=command.member_id,
                        occurred_at=now,
                        channel=command.channel,
                        enabled=command.enabled,
                    ),
                    command.member_id,
                )
            )
        if final:
            conn.execute(
                "INSERT INTO subscriptions (member_id, channel, enabled, command_id) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::boolean[], %s::text[]) "
                "ON CONFLICT (member_id, channel) DO UPDATE SET enabled = EXCLUDED.enabled, "
                "command_id = EXCLUDED.command_id, updated_at = now()",
                (
                    [member for member, _ in final],
                    [channel for _, channel in final],
                    [c.enabled for c in final.values()],
                    [c.command_id for c in final.values()],
                ),
            )
        return emits

    def _skip_replays(self, conn: psycopg.Connection, replays: list[CommandItem]) -> None:
        """Record replays as skipped, once per command id; ``applied_commands`` is left
        alone so a live command with the same id still applies."""
        first = list({item.record.command_id: item for item in reversed(replays)}.values())
        recorded = self.record_skipped(conn, first, "replay")
        metrics.SKIPPED.labels(self.name, "replay").inc(recorded)
        if recorded < len(replays):
            metrics.DUPLICATES.labels(self.name).inc(len(replays) - recorded)


class CounterHandler(CommandHandler):
    name: ClassVar[str] = "counter"
    topic: ClassVar[str] = COMMANDS_COUNTER
    expected: ClassVar[tuple[type, ...]] = (CounterIncrement,)

    def apply(
        self, conn: psycopg.Connection, items: list[CommandItem], performed: Any
    ) -> list[Emit]:
        chosen = _first_time(conn, items, self.name)
        if len(chosen) < len(items):
            metrics.DUPLICATES.labels(self.name).inc(len(items) - len(chosen))
        if not chosen:
            return []
        members = sorted({item.record.member_id for item in chosen})
        values: dict[tuple[str, str], int] = {
            (str(member), str(name)): int(value)
            for member, name, value in conn.execute(
                "SELECT member_id, name, value FROM counters WHERE member_id = ANY(%s) "
                "ORDER BY member_id, name FOR UPDATE",
                (members,),
            )
        }
        touched: set[tuple[str, str]] = set()
        emits: list[Emit] = []
        now = datetime.now(UTC)
        for item in chosen:
            command = item.record
            assert isinstance(command, CounterIncrement)
            where = (command.member_id, command.name)
            values[where] = values.get(where, 0) + command.by
            touched.add(where)
            metrics.COMMANDS_APPLIED.labels(self.name, "CounterIncrement").inc()
            emits.append(
                emit_outcome(
                    CounterChanged(
                        command_id=command.command_id,
                        member_id=command.member_id,
                        occurred_at=now,
                        name=command.name,
                        by=command.by,
                        value=values[where],
                    ),
                    command.member_id,
                )
            )
        ordered = sorted(touched)
        conn.execute(
            "INSERT INTO counters (member_id, name, value) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[]) "
            "ON CONFLICT (member_id, name) DO UPDATE SET value = EXCLUDED.value, "
            "updated_at = now()",
            ([m for m, _ in ordered], [n for _, n in ordered], [values[w] for w in ordered]),
        )
        return emits
