"""What the actions service decides, as pure functions of the commands and the rows
they touch: no database, no clock, no network.

Each handler loads the rows its batch needs (balances and budgets, subscriptions,
counter values), calls these, and stores what they return in the batch's transaction:
``bonus.py`` with :func:`reversal_credits`, ``ledger.apply_batch`` and
:func:`ledger_outcomes`; ``notify.py`` with :func:`decide_message`; ``mailing.py`` with
:func:`decide_mailing`; ``counters.py`` with :func:`decide_counters`. Which command ids
are new is the database's answer (``applied_commands``, ``entries``,
``deliveries``): it is what makes a redelivered command change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo

from services.actions.channels import Outgoing
from services.actions.delivery import may_receive, quiet_until
from services.actions.ledger import BonusCommand, Entry
from services.actions.templates import Rendered
from services.contracts.models import (
    BonusAccrue,
    BonusDeduct,
    CounterChanged,
    CounterIncrement,
    MailingSet,
    PointsCredited,
    PointsDeducted,
    SendMessage,
    SubscriptionChanged,
)

# ------------------------------------------------------------------ ledger


def reversal_credits(
    commands: Iterable[BonusCommand],
    credited: Mapping[str, tuple[str, int]],
    refused: Iterable[str],
) -> dict[str, tuple[str, int]]:
    """The budgeted credits the batch's deductions may reverse: ``credited`` (command id
    of a budgeted credit not yet refunded -> offer id, points it credited), plus every
    accrual the budget refused, as a credit of 0 points: undoing it takes nothing."""
    credits = dict(credited)
    refused = set(refused)
    for command in commands:
        if isinstance(command, BonusDeduct) and command.reverses in refused:
            credits[command.reverses] = (command.offer_id, 0)
    return credits


def budgeted_offers(
    commands: Iterable[BonusCommand], credits: Mapping[str, tuple[str, int]]
) -> list[str]:
    """The offers whose budget rows the batch must lock, in lock order (offer id)."""
    offers = {c.offer_id for c in commands if isinstance(c, BonusAccrue) and c.budget}
    offers |= {offer for offer, _ in credits.values()}
    return sorted(offers)


def latest_budgets(commands: Iterable[BonusCommand]) -> dict[str, int]:
    """The budget each offer's latest accrual of the batch carries (an offer's budget
    may change between versions; the newest one seen is kept)."""
    return {c.offer_id: c.budget for c in commands if isinstance(c, BonusAccrue) and c.budget}


def ledger_outcomes(
    entries: Iterable[Entry], now: datetime
) -> list[PointsCredited | PointsDeducted]:
    """One outcome per entry: a credit for an accrual, a deduction (positive points)
    for a deduction, each with the balance after it."""
    outcomes: list[PointsCredited | PointsDeducted] = []
    for entry in entries:
        command = entry.command
        kind = PointsCredited if isinstance(command, BonusAccrue) else PointsDeducted
        outcomes.append(
            kind(
                command_id=command.command_id,
                member_id=command.member_id,
                occurred_at=now,
                points=abs(entry.points),
                balance=entry.balance,
            )
        )
    return outcomes


# ---------------------------------------------------------------- messages


@dataclass(frozen=True)
class MessagePolicy:
    """The settings a message decision reads (``ACTIONS_*``)."""

    mailing_default_enabled: bool
    quiet_start: time | None
    quiet_end: time | None
    zone: ZoneInfo


@dataclass(frozen=True)
class MessageDecision:
    status: str  # sending | suppressed | scheduled | failed
    outgoing: Outgoing | None = None
    reason: str | None = None
    send_after: datetime | None = None


def decide_message(
    command: SendMessage,
    rendered: Rendered | str,
    subscribed: Mapping[tuple[str, str], bool],
    policy: MessagePolicy,
    now: datetime,
    *,
    due: bool = False,
) -> MessageDecision:
    """What to do with one message: ``rendered`` is the rendered template or why it
    cannot be rendered (-> failed); a channel the member switched off (or never on,
    for marketing) -> suppressed; marketing inside quiet hours -> scheduled for their
    end; else sending. ``due``: a message held for quiet hours whose time has come; it
    is checked again (template, subscription) but never held a second time."""
    if isinstance(rendered, str):
        return MessageDecision("failed", reason=rendered)
    outgoing = Outgoing(
        command.command_id,
        command.member_id,
        command.channel.value,
        command.template_id,
        dict(command.params),
        rendered,
    )
    sub = subscribed.get((command.member_id, command.channel.value))
    if not may_receive(command.marketing, sub, policy.mailing_default_enabled):
        why = "mailing disabled for this channel"
        return MessageDecision("suppressed", reason=f"{why} while held" if due else why)
    if command.marketing and not due:
        later = quiet_until(now, policy.quiet_start, policy.quiet_end, policy.zone)
        if later is not None:
            return MessageDecision("scheduled", outgoing, "quiet hours", later)
    return MessageDecision("sending", outgoing)


# ------------------------------------------------------- mailing, counters


@dataclass(frozen=True)
class MailingDecision:
    subscriptions: dict[tuple[str, str], MailingSet] = field(default_factory=dict)
    """(member, channel) -> the batch's last command for it: what is stored."""
    outcomes: list[SubscriptionChanged] = field(default_factory=list)


def decide_mailing(commands: Sequence[MailingSet], now: datetime) -> MailingDecision:
    """``commands``: the batch's live commands applied for the first time, in order.
    Each one is an outcome; per member and channel the last one is the subscription."""
    decision = MailingDecision()
    for command in commands:
        decision.subscriptions[(command.member_id, command.channel.value)] = command
        decision.outcomes.append(
            SubscriptionChanged(
                command_id=command.command_id,
                member_id=command.member_id,
                occurred_at=now,
                channel=command.channel,
                enabled=command.enabled,
            )
        )
    return decision


@dataclass(frozen=True)
class CounterDecision:
    values: dict[tuple[str, str], int] = field(default_factory=dict)
    """(member, counter) -> its new value, for every counter the batch touched."""
    outcomes: list[CounterChanged] = field(default_factory=list)


def decide_counters(
    commands: Sequence[CounterIncrement], values: Mapping[tuple[str, str], int], now: datetime
) -> CounterDecision:
    """``commands``: applied for the first time, in order; ``values``: the stored
    values of their members' counters (a counter not there starts at 0)."""
    decision = CounterDecision()
    for command in commands:
        where = (command.member_id, command.name)
        value = decision.values.get(where, values.get(where, 0)) + command.by
        decision.values[where] = value
        decision.outcomes.append(
            CounterChanged(
                command_id=command.command_id,
                member_id=command.member_id,
                occurred_at=now,
                name=command.name,
                by=command.by,
                value=value,
            )
        )
    return decision
