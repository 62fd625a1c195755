"""Bonus arithmetic, pure: which entries a batch of bonus commands writes and what the
balances become. The Postgres adapter only loads balances, calls :func:`apply_batch`
and writes the result, so every policy is unit-tested without a database."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from services.actions.settings import DeductPolicy
from services.contracts.models import BonusAccrue, BonusDeduct

BonusCommand = BonusAccrue | BonusDeduct


@dataclass(frozen=True)
class Entry:
    """One append-only ledger row: ``points`` is signed (negative for a deduction).

    ``shortfall`` is what was asked but not moved: on a deduction, what the balance
    could not cover (``clamp``); on an accrual, what the offer's budget could not.
    ``budget`` is the budget a credit was counted against (``None``: unbudgeted);
    ``refund`` is what a deduction gave back to the budget of the credit it reverses.
    """

    command: BonusCommand
    points: int
    shortfall: int
    balance: int
    budget: int | None = None
    refund: int = 0

    @property
    def requested(self) -> int:
        return self.command.points


@dataclass
class Budgets:
    """Offer budgets as the adapter loaded them under lock, updated as a batch applies.

    ``spent`` maps offer id to the points credited against its budget (net of
    refunds); ``credits`` maps the command id of a budgeted credit to (offer id,
    points it credited), for the deductions that may reverse it. ``skipped``
    collects accruals that found the budget exhausted: no entry, no outcome.
    """

    spent: dict[str, int] = field(default_factory=dict)
    credits: dict[str, tuple[str, int]] = field(default_factory=dict)
    skipped: list[BonusAccrue] = field(default_factory=list)


def _accrue(balance: int, command: BonusAccrue, budgets: Budgets | None) -> Entry | None:
    if command.budget is None or budgets is None:
        return Entry(command, command.points, 0, balance + command.points)
    spent = budgets.spent.get(command.offer_id, 0)
    fits = max(0, min(command.points, command.budget - spent))
    if fits == 0:
        budgets.skipped.append(command)
        return None
    budgets.spent[command.offer_id] = spent + fits
    budgets.credits[command.command_id] = (command.offer_id, fits)
    return Entry(command, fits, command.points - fits, balance + fits, budget=command.budget)


def apply_one(
    balance: int, command: BonusCommand, policy: DeductPolicy, budgets: Budgets | None = None
) -> Entry | None:
    """The entry ``command`` makes on an account holding ``balance`` (``None``: none).

    ``clamp`` never takes a balance below zero: it deducts what there is and records
    the rest as the shortfall, so support can see what a member "owes". A balance that
    is already negative (written under ``allow_negative``) is left where it is.

    With ``budgets``, an accrual that carries a budget credits only what fits
    (``spent + points <= budget``), records the rest as its shortfall, and makes no
    entry at all when nothing fits. A deduction that reverses a budgeted credit gives
    back what it took, up to what that credit counted, so undone points can be
    earned again by someone else but the budget is never exceeded; it never deducts
    more than that credit gave, and nothing (no entry) for a credit the budget refused."""
    if isinstance(command, BonusAccrue):
        return _accrue(balance, command, budgets)
    credit = budgets.credits.pop(command.reverses, None) if budgets and command.reverses else None
    # Undo never takes more than the reversed credit actually gave: a budget may have cut
    # it (the rules' member state records the full reward) or refused it altogether.
    wanted = command.points if credit is None else min(command.points, credit[1])
    if wanted == 0:
        return None
    if policy is DeductPolicy.ALLOW_NEGATIVE:
        taken, entry_shortfall = wanted, 0
    else:
        taken = min(wanted, max(balance, 0))
        entry_shortfall = wanted - taken
    refund = 0
    if budgets is not None and credit is not None:
        offer_id, credited = credit
        refund = min(taken, credited)
        budgets.spent[offer_id] = budgets.spent.get(offer_id, 0) - refund
    return Entry(command, -taken, entry_shortfall, balance - taken, refund=refund)


def apply_batch(
    balances: Mapping[str, int],
    commands: Iterable[BonusCommand],
    policy: DeductPolicy,
    already_applied: frozenset[str] | set[str] = frozenset(),
    budgets: Budgets | None = None,
) -> tuple[list[Entry], dict[str, int]]:
    """Entries in command order and the new balance of every member touched.

    A command id seen before (in ``already_applied`` or earlier in this batch) makes
    no entry: that is what makes a replayed or redelivered command change nothing.
    ``budgets`` (updated in place) enforces offer budgets; see ``apply_one``."""
    current = dict(balances)
    seen = set(already_applied)
    entries: list[Entry] = []
    for command in commands:
        if command.command_id in seen:
            continue
        seen.add(command.command_id)
        entry = apply_one(current.get(command.member_id, 0), command, policy, budgets)
        if entry is None:
            continue
        current[command.member_id] = entry.balance
        entries.append(entry)
    touched = {entry.command.member_id for entry in entries}
    return entries, {member: current[member] for member in touched}
