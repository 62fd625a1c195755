"""The mailing consumer: subscriptions per member and channel, once per command id
(``applied_commands``), the decision in ``decisions.decide_mailing``.

A replayed ``MailingSet`` (``replay=true``) is never applied: a replay re-runs old
events through an offer, and the subscription it would set is older than whatever the
member chose since (applying it could switch back on a subscription the member turned
off). It is recorded in ``skipped_commands`` and counted, and emits no outcome."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import psycopg

from services.actions.consumers import CommandHandler, CommandItem, emit_outcome
from services.actions.decisions import decide_mailing
from services.contracts.models import MailingSet
from services.contracts.topics import COMMANDS_MAILING
from services.runtime.pgsink import Emit


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
        chosen = self.first_time(conn, live)
        commands: list[MailingSet] = [item.record for item in chosen]  # type: ignore[misc]
        decision = decide_mailing(commands, datetime.now(UTC))
        if commands:
            self.metrics.commands_applied.labels(self.name, "MailingSet").inc(len(commands))
        final = decision.subscriptions
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
        return [emit_outcome(o, o.member_id) for o in decision.outcomes]

    def _skip_replays(self, conn: psycopg.Connection, replays: list[CommandItem]) -> None:
        """Record replays as skipped, once per command id; ``applied_commands`` is left
        alone so a live command with the same id still applies."""
        first = list({item.record.command_id: item for item in reversed(replays)}.values())
        recorded = self.record_skipped(conn, first, "replay")
        self.metrics.skipped.labels(self.name, "replay").inc(recorded)
        if recorded < len(replays):
            self.metrics.duplicates.labels(self.name).inc(len(replays) - recorded)
