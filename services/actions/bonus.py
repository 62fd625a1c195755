"""The ledger consumer: bonus commands become entries and balances, once per command id.

Offer budgets are enforced here, in the same transaction as the entries: the
``offer_budgets`` rows of the batch's budgeted offers are locked (after the
accounts, always in offer-id order), the pure ``apply_batch`` credits only what
fits, and an accrual that finds its budget exhausted is recorded in
``skipped_commands`` (reason ``budget``) with no entry and no outcome."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import psycopg

from services.actions.consumers import CommandHandler, CommandItem, emit_outcome
from services.actions.decisions import (
    budgeted_offers,
    latest_budgets,
    ledger_outcomes,
    reversal_credits,
)
from services.actions.ledger import BonusCommand, Budgets, apply_batch
from services.actions.settings import DeductPolicy
from services.contracts.models import BonusAccrue, BonusDeduct
from services.contracts.topics import COMMANDS_BONUS
from services.runtime.pgsink import Emit


class LedgerRaceError(RuntimeError):
    """An entry we were about to write already existed: another writer got there first."""


class BonusHandler(CommandHandler):
    name: ClassVar[str] = "bonus"
    topic: ClassVar[str] = COMMANDS_BONUS
    expected: ClassVar[tuple[type, ...]] = (BonusAccrue, BonusDeduct)
    transient: ClassVar[tuple[type[BaseException], ...]] = (LedgerRaceError,)

    def __init__(self, policy: DeductPolicy) -> None:
        self.policy = policy

    def apply(
        self, conn: psycopg.Connection, items: list[CommandItem], performed: Any
    ) -> list[Emit]:
        commands: list[BonusCommand] = [item.record for item in items]  # type: ignore[misc]
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
        budgets = self._lock_budgets(conn, commands, existing)
        entries, new_balances = apply_batch(balances, commands, self.policy, existing, budgets)
        skipped = budgets.skipped if budgets else []
        duplicates = len(commands) - len(entries) - len(skipped)
        if duplicates:
            self.metrics.duplicates.labels(self.name).inc(duplicates)
        if budgets is not None:
            self._save_budgets(conn, commands, budgets, items)
        if not entries:
            return []
        c = [entry.command for entry in entries]
        inserted = conn.execute(
            "INSERT INTO entries (command_id, member_id, points, requested, shortfall, "
            "balance_after, offer_id, source_event_id, reverses, reason, replay, issued_at, "
            "budget, budget_refund) "
            "SELECT id, m, p, r, s, b, o, e, v, why, rp, at, bu, rf FROM unnest("
            "%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], "
            "%s::text[], %s::text[], %s::text[], %s::text[], %s::boolean[], %s::timestamptz[], "
            "%s::bigint[], %s::bigint[]) "
            "WITH ORDINALITY AS u(id, m, p, r, s, b, o, e, v, why, rp, at, bu, rf, n) ORDER BY n "
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
                [entry.budget for entry in entries],
                [entry.refund for entry in entries],
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
        for entry in entries:
            kind = type(entry.command).__name__
            self.metrics.commands_applied.labels(self.name, kind).inc()
            if isinstance(entry.command, BonusAccrue):
                self.metrics.ledger_points.labels("credited").inc(entry.points)
            else:
                self.metrics.ledger_points.labels("deducted").inc(-entry.points)
                self.metrics.ledger_points.labels("shortfall").inc(entry.shortfall)
        return [
            emit_outcome(outcome, outcome.member_id)
            for outcome in ledger_outcomes(entries, datetime.now(UTC))
        ]

    def _lock_budgets(
        self, conn: psycopg.Connection, commands: list[BonusCommand], existing: set[str]
    ) -> Budgets | None:
        """Lock and load the budgets this batch touches; ``None`` when it touches none.

        Also adds the ids of accruals skipped earlier for an exhausted budget to
        ``existing``: a redelivered skipped accrual stays skipped, even if refunds
        made room since (the answer for a command id never changes)."""
        reversed_ids = list(
            {c.reverses for c in commands if isinstance(c, BonusDeduct) and c.reverses}
        )
        credited: dict[str, tuple[str, int]] = {}
        refused: set[str] = set()
        if reversed_ids:
            credited = {
                str(cid): (str(offer), int(points))
                for cid, offer, points in conn.execute(
                    "SELECT e.command_id, e.offer_id, e.points FROM entries e "
                    "WHERE e.command_id = ANY(%s) AND e.budget IS NOT NULL AND NOT EXISTS ("
                    "SELECT 1 FROM entries d WHERE d.reverses = e.command_id "
                    "AND d.budget_refund > 0)",
                    (reversed_ids,),
                )
            }
            refused = {
                str(row[0])
                for row in conn.execute(
                    "SELECT command_id FROM skipped_commands WHERE command_id = ANY(%s) "
                    "AND kind = %s AND reason = 'budget'",
                    (reversed_ids, self.name),
                )
            }
        credits = reversal_credits(commands, credited, refused)
        ordered = budgeted_offers(commands, credits)
        if not ordered:
            return None
        ids = list({c.command_id for c in commands if isinstance(c, BonusAccrue)})
        existing |= {
            str(row[0])
            for row in conn.execute(
                "SELECT command_id FROM skipped_commands WHERE command_id = ANY(%s) AND kind = %s",
                (ids, self.name),
            )
        }
        conn.execute(
            "INSERT INTO offer_budgets (offer_id) SELECT o FROM unnest(%s::text[]) AS u(o) "
            "ORDER BY o ON CONFLICT (offer_id) DO NOTHING",
            (ordered,),
        )
        spent = {
            str(offer): int(points)
            for offer, points in conn.execute(
                "SELECT offer_id, spent FROM offer_budgets WHERE offer_id = ANY(%s) "
                "ORDER BY offer_id FOR UPDATE",
                (ordered,),
            )
        }
        return Budgets(spent=spent, credits=credits)

    def _save_budgets(
        self,
        conn: psycopg.Connection,
        commands: list[BonusCommand],
        budgets: Budgets,
        items: list[CommandItem],
    ) -> None:
        """Write the new ``spent`` (with the latest budget seen) and the skipped accruals."""
        latest = latest_budgets(commands)
        offers = sorted(budgets.spent)
        conn.execute(
            "UPDATE offer_budgets b SET spent = u.s, budget = coalesce(u.t, b.budget), "
            "updated_at = now() FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS u(o, s, t) "
            "WHERE b.offer_id = u.o",
            (offers, [budgets.spent[o] for o in offers], [latest.get(o) for o in offers]),
        )
        if not budgets.skipped:
            return
        where = {item.record.command_id: item for item in reversed(items)}
        skipped = [where[c.command_id] for c in budgets.skipped]
        self.record_skipped(conn, skipped, "budget")
        self.metrics.skipped.labels(self.name, "budget").inc(len(skipped))
