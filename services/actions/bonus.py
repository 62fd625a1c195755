"""The ledger consumer: bonus commands become entries and balances, once per command id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import psycopg

from services.actions import metrics
from services.actions.engine import Emit, Handler, Item
from services.actions.ledger import BonusCommand, apply_batch
from services.actions.settings import DeductPolicy
from services.contracts.models import BonusAccrue, BonusDeduct, PointsCredited, PointsDeducted
from services.contracts.topics import COMMANDS_BONUS


class LedgerRaceError(RuntimeError):
    """An entry we were about to write already existed: another writer got there first."""


class BonusHandler(Handler):
    name: ClassVar[str] = "bonus"
    topic: ClassVar[str] = COMMANDS_BONUS
    expected: ClassVar[tuple[type, ...]] = (BonusAccrue, BonusDeduct)

    def __init__(self, policy: DeductPolicy) -> None:
        self.policy = policy

    def apply(self, conn: psycopg.Connection, items: list[Item], performed: Any) -> list[Emit]:
        commands: list[BonusCommand] = [item.command for item in items]  # type: ignore[misc]
        ids = list({command.command_id for command in commands})
        existing = {
            row[0]
            for row in conn.execute(
                "SELECT command_id FROM entries WHERE command_id = ANY(%s)", (ids,)
            )
        }
        members = sorted({command.member_id for command in commands})
        balances = {
            str(member): int(balance)
            for member, balance in conn.execute(
                "SELECT member_id, balance FROM accounts WHERE member_id = ANY(%s) "
                "ORDER BY member_id FOR UPDATE",
                (members,),
            )
        }
        entries, new_balances = apply_batch(balances, commands, self.policy, existing)
        duplicates = len(commands) - len(entries)
        if duplicates:
            metrics.DUPLICATES.labels(self.name).inc(duplicates)
        if not entries:
            return []
        c = [entry.command for entry in entries]
        inserted = conn.execute(
            "INSERT INTO entries (command_id, member_id, points, requested, shortfall, "
            "balance_after, offer_id, source_event_id, reverses, reason, replay, issued_at) "
            "SELECT id, m, p, r, s, b, o, e, v, why, rp, at FROM unnest("
            "%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], "
            "%s::text[], %s::text[], %s::text[], %s::text[], %s::boolean[], %s::timestamptz[]) "
            "WITH ORDINALITY AS u(id, m, p, r, s, b, o, e, v, why, rp, at, n) ORDER BY n "
            "ON CONFLICT (command_id) DO NOTHING RETURNING command_id",
            (
                [x.command_id for x in c],
                [x.member_id for x in c],
                [entry.points for entry in entries],
                [entry.requested for entry in entries],
                [entry.shortfall for entry in entries],
                [entry.balance for entry in entries],
                [x.offer_id for x in c],
                [x.source_event_id for x in c],
                [x.reverses for x in c],
                [x.reason for x in c],
                [x.replay for x in c],
                [x.issued_at for x in c],
            ),
        ).fetchall()
        if len(inserted) != len(entries):
            raise LedgerRaceError("ledger entries appeared during the batch; retrying it")
        conn.execute(
            "INSERT INTO accounts (member_id, balance) "
            "SELECT * FROM unnest(%s::text[], %s::bigint[]) "
            "ON CONFLICT (member_id) DO UPDATE SET balance = EXCLUDED.balance, updated_at = now()",
            (list(new_balances), list(new_balances.values())),
        )
        now = datetime.now(UTC)
        emits: list[Emit] = []
        for entry in entries:
            command = entry.command
            kind = type(command).__name__
            metrics.COMMANDS_APPLIED.labels(self.name, kind).inc()
            if isinstance(command, BonusAccrue):
                metrics.LEDGER_POINTS.labels("credited").inc(entry.points)
                outcome: PointsCredited | PointsDeducted = PointsCredited(
                    command_id=command.command_id,
                    member_id=command.member_id,
                    occurred_at=now,
                    points=entry.points,
                    balance=entry.balance,
                )
            else:
                metrics.LEDGER_POINTS.labels("deducted").inc(-entry.points)
                metrics.LEDGER_POINTS.labels("shortfall").inc(entry.shortfall)
                outcome = PointsDeducted(
                    command_id=command.command_id,
                    member_id=command.member_id,
                    occurred_at=now,
                    points=-entry.points,
                    balance=entry.balance,
                )
            emits.append(Emit.outcome(outcome, command.member_id))
        return emits
