"""Bonus arithmetic, pure: which entries a batch of bonus commands writes and what the
balances become. The Postgres adapter only loads balances, calls :func:`apply_batch`
and writes the result, so every policy is unit-tested without a database."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.actions.settings import DeductPolicy
from services.contracts.models import BonusAccrue, BonusDeduct

BonusCommand = BonusAccrue | BonusDeduct


@dataclass(frozen=True)
class Entry:
    """One append-only ledger row: ``points`` is signed (negative for a deduction)."""

    command: BonusCommand
    points: int
    shortfall: int
    balance: int

    @property
    def requested(self) -> int:
        return self.command.points


def apply_one(balance: int, command: BonusCommand, policy: DeductPolicy) -> Entry:
    """The entry ``command`` makes on an account holding ``balance``.

    ``clamp`` never takes a balance below zero: it deducts what there is and records
    the rest as the shortfall, so support can see what a member "owes". A balance that
    is already negative (written under ``allow_negative``) is left where it is."""
    if isinstance(command, BonusAccrue):
        return Entry(command, command.points, 0, balance + command.points)
    wanted = command.points
    if policy is DeductPolicy.ALLOW_NEGATIVE:
        return Entry(command, -wanted, 0, balance - wanted)
    taken = min(wanted, max(balance, 0))
    return Entry(command, -taken, wanted - taken, balance - taken)


def apply_batch(
    balances: Mapping[str, int],
    commands: Iterable[BonusCommand],
    policy: DeductPolicy,
    already_applied: frozenset[str] | set[str] = frozenset(),
) -> tuple[list[Entry], dict[str, int]]:
    """Entries in command order and the new balance of every member touched.

    A command id seen before (in ``already_applied`` or earlier in this batch) makes
    no entry: that is what makes a replayed or redelivered command change nothing."""
    current = dict(balances)
    seen = set(already_applied)
    entries: list[Entry] = []
    for command in commands:
        if command.command_id in seen:
            continue
        seen.add(command.command_id)
        entry = apply_one(current.get(command.member_id, 0), command, policy)
        current[command.member_id] = entry.balance
        entries.append(entry)
    touched = {entry.command.member_id for entry in entries}
    return entries, {member: current[member] for member in touched}
