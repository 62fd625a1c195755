"""The counter consumer: named counters per member, once per command id
(``applied_commands``), the decision in ``decisions.decide_counters``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import psycopg

from services.actions.consumers import CommandHandler, CommandItem, emit_outcome
from services.actions.decisions import decide_counters
from services.contracts.models import CounterIncrement
from services.contracts.topics import COMMANDS_COUNTER
from services.runtime.pgsink import Emit


class CounterHandler(CommandHandler):
    name: ClassVar[str] = "counter"
    topic: ClassVar[str] = COMMANDS_COUNTER
    expected: ClassVar[tuple[type, ...]] = (CounterIncrement,)

    def apply(
        self, conn: psycopg.Connection, items: list[CommandItem], performed: Any
    ) -> list[Emit]:
        chosen = self.first_time(conn, items)
        if not chosen:
            return []
        commands: list[CounterIncrement] = [item.record for item in chosen]  # type: ignore[misc]
        members = sorted({command.member_id for command in commands})
        values: dict[tuple[str, str], int] = {
            (str(member), str(name)): int(value)
            for member, name, value in conn.execute(
                "SELECT member_id, name, value FROM counters WHERE member_id = ANY(%s) "
                "ORDER BY member_id, name FOR UPDATE",
                (members,),
            )
        }
        decision = decide_counters(commands, values, datetime.now(UTC))
        if commands:
            self.metrics.commands_applied.labels(self.name, "CounterIncrement").inc(len(commands))
        ordered = sorted(decision.values)
        conn.execute(
            "INSERT INTO counters (member_id, name, value) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[]) "
            "ON CONFLICT (member_id, name) DO UPDATE SET value = EXCLUDED.value, "
            "updated_at = now()",
            (
                [m for m, _ in ordered],
                [n for _, n in ordered],
                [decision.values[w] for w in ordered],
            ),
        )
        return [emit_outcome(o, o.member_id) for o in decision.outcomes]
