# ruff: noqa
# mypy: ignore-errors
# A frozen copy of services/rules/engine.py as of commit df2e6ac, before the issue 14
# speed-up: test_engine_reference.py checks that the engine still gives exactly what
# this gave (commands, states, outcomes, budget use). Do not edit it to follow changes
# of the engine: a behaviour change must show up as a test failure.
"""The offer engine: ``evaluate(offer, member state, event) -> (state, commands)``.

One pure function shared by the Faust agent, replay, a CLI dry-run and the
tests, so all of them agree on who earns what. It imports no Kafka, Faust or
SQL: callers decode an event into a ``RuleEvent``, load the member's
``MemberState`` (``MemberState.from_json``), call ``evaluate``/``evaluate_all``,
store ``Evaluation.state.to_json()`` and send ``Evaluation.commands``.

The rules it enforces (DESIGN.md section 3) are spelled out in
``docs/offers.md``. In short: only activity at or after the link counts; each
object (profile, group, post, comment, repost) earns once per member and offer;
an undo takes back exactly what its original earned, once; tiers and limits
count in periods of the program's time zone; command ids are a hash of
(offer, event, action index) -- not the offer version, so neither a replay
nor a redelivery, even after the offer was edited, can credit twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from enum import StrEnum
from json.encoder import encode_basestring  # what json.dumps(ensure_ascii=False) quotes with
from typing import Any

from services.contracts.ids import command_id
from services.rules.offers import (
    UNDO_OF,
    AccrueAction,
    CounterAction,
    CounterCondition,
    DeductAction,
    EventType,
    MailingAction,
    MessageAction,
    Offer,
    Period,
)

__all__ = [
    "STATE_VERSION",
    "BatchEvaluation",
    "CommandKind",
    "CommandSpec",
    "CounterChange",
    "Evaluation",
    "EventType",
    "MemberState",
    "ObjectRecord",
    "OfferState",
    "Outcome",
    "PeriodUse",
    "RuleEvent",
    "StateFormatError",
    "command_id",
    "evaluate",
    "evaluate_all",
    "object_key",
    "period_key",
    "undo_action_index",
]

NETWORKS = frozenset({"vk", "ok", "apple"})

KEPT_PERIODS = 3
"""Period buckets kept per offer and kind; older ones close (they earn nothing more)."""

_OBJECT_FIELDS: Mapping[EventType, tuple[str, ...]] = {
    EventType.PROFILE_LINKED: ("social_user_id",),
    EventType.GROUP_JOINED: ("group_id",),
    EventType.POST_LIKED: ("group_id", "post_id"),
    EventType.COMMENT_POSTED: ("group_id", "post_id", "comment_id"),
    EventType.POST_REPOSTED: ("group_id", "post_id"),
}
"""What identifies the object of each event (the undo event uses its original's)."""


# --------------------------------------------------------------------------- input


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleEvent:
    """A domain event as the engine needs it, with the member already resolved.

    ``linked_at`` is when this member linked this social profile (``None``: not
    linked, so it earns nothing). For ``PROFILE_LINKED`` pass ``occurred_at``;
    for ``PROFILE_UNLINKED`` pass the time of the link it ends. An undo event
    of a social user whose link has ended carries the former link's member and
    time (``processing.resolve`` keeps a tombstone), so it deducts what the
    original earned while linked; grants after the unlink never get here.
    """

    event_id: str
    type: EventType
    network: str
    social_user_id: str
    member_id: str
    occurred_at: datetime
    group_id: str | None = None
    post_id: str | None = None
    comment_id: str | None = None
    registration: bool = False
    linked_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.event_id:
            raise ValueError("event_id is empty")
        if not isinstance(self.type, EventType):
            object.__setattr__(self, "type", EventType(self.type))
        if self.network not in NETWORKS:
            raise ValueError(f"network {self.network!r} is not one of {sorted(NETWORKS)}")
        for name in ("occurred_at", "linked_at"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware, got {value!r}")
        original = UNDO_OF.get(self.type, self.type)
        missing = [f for f in _OBJECT_FIELDS[original] if not getattr(self, f)]
        if missing:
            raise ValueError(f"{self.type.value} event {self.event_id} lacks {missing}")


# -------------------------------------------------------------------------- output


class CommandKind(StrEnum):
    """What an action asks the actions service to do."""

    BONUS_ACCRUE = "BONUS_ACCRUE"
    BONUS_DEDUCT = "BONUS_DEDUCT"
    SEND_MESSAGE = "SEND_MESSAGE"
    COUNTER_INCREMENT = "COUNTER_INCREMENT"
    MAILING_SET = "MAILING_SET"


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandSpec:
    """One command for the actions service; fields not used by its kind stay ``None``.

    ``command_id`` is unique per (offer, event, action index): the ledger
    and the notifier keep it unique, which is what makes redelivery harmless.
    ``points`` is always positive; the kind says whether it is credited or debited.
    """

    kind: CommandKind
    command_id: str
    member_id: str
    offer_id: str
    offer_version: int
    source_event_id: str
    occurred_at: datetime
    points: int | None = None
    reason: str | None = None
    reverses: str | None = None
    budget: int | None = None  # the offer's budget, on accruals: the ledger enforces it
    channel: str | None = None
    template_id: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    marketing: bool = False
    counter_name: str | None = None
    counter_by: int | None = None
    mailing_channel: str | None = None
    mailing_enabled: bool | None = None


def undo_action_index(offer: Offer) -> int:
    """The action index an undo's deduction is named by: the offer's accrue action.

    An undo event never triggers a grant of the same offer (undo policies only
    go with forward triggers), so ``(offer, undo event, this index)`` cannot
    collide with a grant's command id.
    """
    return next(i for i, a in enumerate(offer.actions) if isinstance(a, AccrueAction))


class OfferOutcome(StrEnum):
    """Why an evaluation produced what it did (for dry-runs, logs and tests)."""

    IGNORED = "ignored"  # not this offer's trigger, or filtered out
    NOT_LINKED = "not_linked"  # unlinked profile, or activity before the link
    OUTSIDE_WINDOW = "outside_window"
    CONDITION_UNMET = "condition_unmet"
    ALREADY_SEEN = "already_seen"  # this object already earned (or this undo already ran)
    LIMITED = "limited"  # first time for the object, but a limit or the budget paid 0
    GRANTED = "granted"
    UNDONE = "undone"
    NOTHING_TO_UNDO = "nothing_to_undo"


# --------------------------------------------------------------------------- state

STATE_VERSION = 1


class StateFormatError(ValueError):
    """Stored member state that this code cannot read."""


@dataclass(frozen=True, slots=True)
class PeriodUse:
    """Paid grants and points of one offer in one period bucket."""

    count: int = 0
    points: int = 0


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """The first grant an offer made for one object, and whether it was undone."""

    event_id: str
    occurred_at: datetime
    points: int
    command_id: str | None
    undone_by: str | None = None


@dataclass(frozen=True, slots=True)
class OfferState:
    """One member's history with one offer (by id: versions share it)."""

    periods: Mapping[str, PeriodUse] = field(default_factory=dict)
    closed_before: Mapping[str, str] = field(default_factory=dict)
    objects: Mapping[str, ObjectRecord] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CounterChange:
    """The last event that moved a counter and the value before it did."""

    event_id: str
    before: int


@dataclass(frozen=True, slots=True)
class MemberState:
    """Everything the engine remembers about one member. Treat it as immutable.

    Plain data so it can live in a Faust table, a Postgres ``bytea`` or a
    replay's dict; ``to_json``/``from_json`` are the one wire form. Budgets
    are global and are not here (see ``evaluate``).
    """

    counters: Mapping[str, int] = field(default_factory=dict)
    counter_changes: Mapping[str, CounterChange] = field(default_factory=dict)
    offers: Mapping[str, OfferState] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """Compact, key-sorted UTF-8 JSON: equal states give equal bytes."""
        doc = {
            "v": STATE_VERSION,
            "counters": dict(self.counters),
            "changes": {k: [c.event_id, c.before] for k, c in self.counter_changes.items()},
            "offers": {
                offer_id: {
                    "periods": {k: [u.count, u.points] for k, u in o.periods.items()},
                    "closed": dict(o.closed_before),
                    "objects": {
                        k: [
                            r.event_id,
                            r.occurred_at.isoformat(),
                            r.points,
                            r.command_id,
                            r.undone_by,
                        ]
                        for k, r in o.objects.items()
                    },
                }
                for offer_id, o in self.offers.items()
            },
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str | None) -> MemberState:
        """Read ``to_json`` output; ``None`` or empty is a new member."""
        if not data:
            return cls()
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise StateFormatError(f"member state is not JSON: {exc}") from exc
        version = doc.get("v") if isinstance(doc, dict) else None
        if version != STATE_VERSION:
            raise StateFormatError(
                f"member state version {version!r}; this code reads {STATE_VERSION}"
            )
        try:
            return cls(
                counters={k: int(v) for k, v in doc["counters"].items()},
                counter_changes={
                    k: CounterChange(str(e), int(b)) for k, (e, b) in doc["changes"].items()
                },
                offers={offer_id: _offer_state(o) for offer_id, o in doc["offers"].items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateFormatError(f"member state is malformed: {exc!r}") from exc


def _offer_state(doc: dict[str, Any]) -> OfferState:
    return OfferState(
        periods={k: PeriodUse(int(c), int(p)) for k, (c, p) in doc["periods"].items()},
        closed_before={k: str(v) for k, v in doc["closed"].items()},
        objects={
            k: ObjectRecord(str(e), _aware(t), int(p), c, u)
            for k, (e, t, p, c, u) in doc["objects"].items()
        },
    )


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.utcoffset() is None:
        raise ValueError(f"naive timestamp {text!r}")
    return value


_EMPTY_OFFER = OfferState()


# ------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The new state, the commands to send, and the budget points this used."""

    state: MemberState
    commands: tuple[CommandSpec, ...] = ()
    budget_used: int = 0
    outcome: OfferOutcome = OfferOutcome.IGNORED


@dataclass(frozen=True, slots=True)
class BatchEvaluation:
    """``evaluate_all``'s result: per-offer budget use and outcomes by offer id."""

    state: MemberState
    commands: tuple[CommandSpec, ...]
    budget_used: Mapping[str, int]
    outcomes: Mapping[str, OfferOutcome]


# ------------------------------------------------------------------------- helpers


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace(":", "%3A")


def object_key(event_type: EventType, event: RuleEvent) -> str:
    """The once-per-object key of ``event`` seen as an ``event_type`` event.

    The network is part of it; the social user id is not (except for the
    profile itself), so a member with two linked accounts cannot like the same
    post twice for points.
    """
    fields = _OBJECT_FIELDS[UNDO_OF.get(event_type, event_type)]
    parts = [event_type.value, event.network, *[str(getattr(event, f)) for f in fields]]
    key = ":".join(parts)
    if "%" not in key and key.count(":") == len(parts) - 1:
        return key  # nothing to escape (the usual case: numeric ids)
    return ":".join(_escape(p) for p in parts)


def period_key(period: Period, at: datetime, tz: tzinfo) -> str:
    """The bucket ``at`` falls in, in the program's time zone (ISO weeks start Monday)."""
    if period == "campaign":
        return "campaign"
    local = at.astimezone(tz)
    if period == "day":
        return f"day:{local.date().isoformat()}"
    if period == "week":
        year, week, _ = local.isocalendar()
        return f"week:{year:04d}-W{week:02d}"
    if period == "month":
        return f"month:{local.year:04d}-{local.month:02d}"
    return f"year:{local.year:04d}"


def _linked(event: RuleEvent) -> bool:
    return event.linked_at is not None and event.occurred_at >= event.linked_at


def _matches(c: _Compiled, event: RuleEvent) -> bool:
    return (
        (c.networks is None or event.network in c.networks)
        and (c.group_ids is None or event.group_id in c.group_ids)
        and (c.post_ids is None or event.post_id in c.post_ids)
        and (c.offer.filters.registration is None
             or event.registration == c.offer.filters.registration)
    )  # fmt: skip


def _in_window(offer: Offer, at: datetime) -> bool:
    return (offer.starts_at is None or at >= offer.starts_at) and (
        offer.ends_at is None or at < offer.ends_at
    )


def _condition_holds(condition: CounterCondition, state: MemberState, event: RuleEvent) -> bool:
    value = state.counters.get(condition.counter, 0)
    if condition.at_least is not None:
        return value >= condition.at_least
    change = state.counter_changes.get(condition.counter)
    if change is None or change.event_id != event.event_id:
        return False
    if condition.equals is not None:
        return value == condition.equals
    assert condition.every is not None
    return value // condition.every > change.before // condition.every


def _with_offer(state: MemberState, offer_id: str, offer_state: OfferState) -> MemberState:
    offers = dict(state.offers)
    offers[offer_id] = offer_state
    return MemberState(state.counters, state.counter_changes, offers)


def _with_object(offer_state: OfferState, key: str, record: ObjectRecord) -> OfferState:
    objects = dict(offer_state.objects)
    objects[key] = record
    return OfferState(offer_state.periods, offer_state.closed_before, objects)


def _with_use(offer_state: OfferState, kind: str, bucket: str, use: PeriodUse) -> OfferState:
    periods = dict(offer_state.periods)
    known = bucket in periods
    periods[bucket] = use
    if known:  # an existing bucket: nothing new to close
        return OfferState(periods, offer_state.closed_before, offer_state.objects)
    closed = offer_state.closed_before
    same_kind = sorted(k for k in periods if k.split(":", 1)[0] == kind)
    if len(same_kind) > KEPT_PERIODS:
        for old in same_kind[:-KEPT_PERIODS]:
            del periods[old]
        closed = {**closed, kind: same_kind[-KEPT_PERIODS]}
    return OfferState(periods, closed, offer_state.objects)


def _params(action: MessageAction, offer: Offer, event: RuleEvent, points: int) -> dict[str, str]:
    values = {
        "points": str(points),
        "offer_id": offer.id,
        "offer_name": offer.name,
        "network": event.network,
        "group_id": event.group_id or "",
        "post_id": event.post_id or "",
        "comment_id": event.comment_id or "",
        "event_type": event.type.value,
        "member_id": event.member_id,
    }
    params = {key: value.format_map(values) for key, value in action.params.items()}
    params.setdefault("points", str(points))
    return params


# ------------------------------------------------------------ compiled offers

_COMMAND_ID_CHARS = 32


@dataclass(frozen=True, slots=True)
class _Compiled:
    """What ``evaluate`` needs of an offer, worked out once instead of per event.

    ``id_prefix`` is the start of the JSON array ``services.contracts.ids.command_id``
    hashes, so a command id costs one string join and one SHA-256
    (``tests/unit/rules/test_engine_rules.py`` checks the two always agree).
    """

    offer: Offer  # keeps the offer alive, so its ``id()`` cannot be reused while cached
    id_prefix: str
    accrues: bool
    undo_index: int | None
    has_counters: bool
    networks: frozenset[str] | None
    group_ids: frozenset[str] | None
    post_ids: frozenset[str] | None

    def command_id(self, event_id: str, index: int) -> str:
        raw = f"{self.id_prefix}{encode_basestring(event_id)},{index}]".encode()
        return hashlib.sha256(raw).hexdigest()[:_COMMAND_ID_CHARS]


_COMPILED: dict[int, _Compiled] = {}
_CACHE_LIMIT = 512


def _compiled(offer: Offer) -> _Compiled:
    found = _COMPILED.get(id(offer))
    if found is not None and found.offer is offer:
        return found
    f = offer.filters
    accrues = isinstance(offer.points_action, AccrueAction)
    compiled = _Compiled(
        offer=offer,
        id_prefix=f'["command",{encode_basestring(offer.id)},',
        accrues=accrues,
        undo_index=undo_action_index(offer) if accrues else None,
        has_counters=any(isinstance(a, CounterAction) for a in offer.actions),
        networks=None if f.networks is None else frozenset(f.networks),
        group_ids=None if f.group_ids is None else frozenset(f.group_ids),
        post_ids=None if f.post_ids is None else frozenset(f.post_ids),
    )
    if len(_COMPILED) >= _CACHE_LIMIT:
        _COMPILED.clear()
    _COMPILED[id(offer)] = compiled
    return compiled


def _concerns(offer: Offer, event_type: EventType) -> bool:
    """Whether ``evaluate`` can do anything but ``ignored`` for this event type."""
    if event_type in offer.trigger:
        return True
    original = UNDO_OF.get(event_type)
    return offer.undo.policy != "none" and original is not None and original in offer.trigger


@dataclass(frozen=True, slots=True)
class _Plan:
    """An offer list in evaluation order, indexed by the event types each can act on."""

    offers: tuple[Offer, ...]  # keeps the offers alive (the cache key is their ids)
    ids: tuple[str, ...]
    by_type: Mapping[EventType, tuple[_Compiled, ...]]


_PLANS: dict[tuple[int, ...], _Plan] = {}


def _plan(offers: Iterable[Offer]) -> _Plan:
    """Sorted, checked and indexed once per offer list, not once per event."""
    given = offers if isinstance(offers, tuple) else tuple(offers)
    key = tuple(map(id, given))
    plan = _PLANS.get(key)
    if plan is not None:  # it holds these very offers, so their ids cannot have been reused
        return plan
    ordered = sorted(given, key=lambda o: (bool(o.when), o.id))
    ids = [o.id for o in ordered]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate offer ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    by_type = {t: tuple(_compiled(o) for o in ordered if _concerns(o, t)) for t in EventType}
    plan = _Plan(given, tuple(ids), by_type)
    if len(_PLANS) >= _CACHE_LIMIT:
        _PLANS.clear()
    _PLANS[key] = plan
    return plan


# ---------------------------------------------------------------------- evaluation


def evaluate(
    offer: Offer,
    state: MemberState,
    event: RuleEvent,
    *,
    tz: tzinfo,
    remaining_budget: int | None = None,
) -> Evaluation:
    """Apply one offer to one event of one member; never mutates ``state``.

    ``tz`` is the program's time zone (``ZoneInfo("Europe/Moscow")``): periods
    are cut there. ``remaining_budget`` is the offer's global budget left as
    the caller knows it (``None``: no budget, or the ledger enforces it); an
    accrual is cut to it and ``Evaluation.budget_used`` says how much was
    taken, so the caller can subtract it. See docs/offers.md, "Budgets".
    """
    return _evaluate(_compiled(offer), state, event, tz, remaining_budget)


def _evaluate(
    c: _Compiled, state: MemberState, event: RuleEvent, tz: tzinfo, remaining_budget: int | None
) -> Evaluation:
    offer = c.offer
    if event.type in offer.trigger:
        if not _matches(c, event):
            return Evaluation(state)
        if not _linked(event):
            return Evaluation(state, outcome=OfferOutcome.NOT_LINKED)
        return _grant(c, state, event, tz, remaining_budget)
    original = UNDO_OF.get(event.type)
    if offer.undo.policy != "none" and original is not None and original in offer.trigger:
        if not _linked(event):
            return Evaluation(state, outcome=OfferOutcome.NOT_LINKED)
        return _undo(c, state, event, original)
    return Evaluation(state)


_NO_USE = PeriodUse()


def _payment(
    c: _Compiled, offer_state: OfferState, bucket: str, remaining_budget: int | None
) -> int | None:
    """Points a first-time grant pays in ``bucket``; ``None`` when a limit refuses it.

    A refused grant still uses up its object (once per object), but pays
    nothing and does not take a tier ordinal.
    """
    offer = c.offer
    closed = offer_state.closed_before.get(offer.period)
    if closed is not None and bucket < closed:
        return None
    use = offer_state.periods.get(bucket, _NO_USE)
    limits = offer.limits
    if limits.max_count is not None and use.count >= limits.max_count:
        return None
    if offer.reward is None:  # no points action either (checked at load)
        return 0
    points = offer.reward.points_for(use.count + 1)
    if limits.max_points is not None:
        points = min(points, limits.max_points - use.points)
    if remaining_budget is not None and c.accrues:
        points = min(points, remaining_budget)
    return points if points > 0 else None


def _grant(
    c: _Compiled,
    state: MemberState,
    event: RuleEvent,
    tz: tzinfo,
    remaining_budget: int | None,
) -> Evaluation:
    offer = c.offer
    if not _in_window(offer, event.occurred_at):
        return Evaluation(state, outcome=OfferOutcome.OUTSIDE_WINDOW)
    if offer.when and not all(_condition_holds(w, state, event) for w in offer.when):
        return Evaluation(state, outcome=OfferOutcome.CONDITION_UNMET)
    key = object_key(event.type, event)
    offer_state = state.offers.get(offer.id, _EMPTY_OFFER)
    if key in offer_state.objects:
        return Evaluation(state, outcome=OfferOutcome.ALREADY_SEEN)

    bucket = period_key(offer.period, event.occurred_at, tz)
    payment = _payment(c, offer_state, bucket, remaining_budget)
    paid = payment is not None
    points = payment or 0
    commands: list[CommandSpec] = []
    counters, changes = state.counters, state.counter_changes
    if c.has_counters:
        counters, changes = dict(counters), dict(changes)
    points_command: str | None = None
    for index, action in enumerate(offer.actions):
        if isinstance(action, CounterAction):
            before = counters.get(action.name, 0)
            previous = changes.get(action.name)
            if previous is None or previous.event_id != event.event_id:
                changes[action.name] = CounterChange(event.event_id, before)  # type: ignore[index]
            counters[action.name] = before + action.by  # type: ignore[index]
        elif not paid and not isinstance(action, MailingAction):
            continue  # points and messages go only with a paid grant
        command = _command(c, event, index, points)
        if points_command is None and command.kind in _POINTS_KINDS:
            points_command = command.command_id
        commands.append(command)

    offer_state = _with_object(
        offer_state, key, ObjectRecord(event.event_id, event.occurred_at, points, points_command)
    )
    if paid:
        use = offer_state.periods.get(bucket, _NO_USE)
        offer_state = _with_use(
            offer_state, offer.period, bucket, PeriodUse(use.count + 1, use.points + points)
        )
    offers = dict(state.offers)
    offers[offer.id] = offer_state
    new_state = MemberState(counters, changes, offers)
    budget_used = points if c.accrues else 0
    return Evaluation(
        new_state,
        tuple(commands),
        budget_used,
        OfferOutcome.GRANTED if paid else OfferOutcome.LIMITED,
    )


_POINTS_KINDS = frozenset({CommandKind.BONUS_ACCRUE, CommandKind.BONUS_DEDUCT})


def _command(c: _Compiled, event: RuleEvent, index: int, points: int) -> CommandSpec:
    """The command ``offer.actions[index]`` asks for on a grant that paid ``points``."""
    offer = c.offer
    action = offer.actions[index]
    event_id = event.event_id
    common: _Common = (c.command_id(event_id, index), event.member_id, offer.id, offer.version,
                       event_id, event.occurred_at)  # fmt: skip
    if isinstance(action, AccrueAction | DeductAction):
        kind = (
            CommandKind.BONUS_ACCRUE
            if isinstance(action, AccrueAction)
            else CommandKind.BONUS_DEDUCT
        )
        budget = offer.budget if kind is CommandKind.BONUS_ACCRUE else None
        return _spec(kind, common, points=points, reason=action.reason or offer.name, budget=budget)
    if isinstance(action, MessageAction):
        return _spec(
            CommandKind.SEND_MESSAGE,
            common,
            channel=action.channel,
            template_id=action.template,
            params=_params(action, offer, event, points),
            marketing=action.marketing,
        )
    if isinstance(action, CounterAction):
        return _spec(
            CommandKind.COUNTER_INCREMENT, common, counter_name=action.name, counter_by=action.by
        )
    return _spec(
        CommandKind.MAILING_SET,
        common,
        mailing_channel=action.channel,
        mailing_enabled=action.enabled,
    )


_Common = tuple[str, str, str, int, str, datetime]


def _spec(kind: CommandKind, common: _Common, **fields: Any) -> CommandSpec:
    command_id, member_id, offer_id, offer_version, source_event_id, occurred_at = common
    return CommandSpec(
        kind=kind,
        command_id=command_id,
        member_id=member_id,
        offer_id=offer_id,
        offer_version=offer_version,
        source_event_id=source_event_id,
        occurred_at=occurred_at,
        **fields,
    )


def _undo(c: _Compiled, state: MemberState, event: RuleEvent, original: EventType) -> Evaluation:
    offer = c.offer
    key = object_key(original, event)
    offer_state = state.offers.get(offer.id, _EMPTY_OFFER)
    record = offer_state.objects.get(key)
    if record is None or event.occurred_at < record.occurred_at:
        # Nothing earned, or what earned came after this undo: a batch redelivered
        # as [unlike, like] must not take back the like that followed it.
        return Evaluation(state, outcome=OfferOutcome.NOTHING_TO_UNDO)
    if record.undone_by is not None:
        return Evaluation(state, outcome=OfferOutcome.ALREADY_SEEN)
    undo = offer.undo
    amount = (
        record.points if undo.policy == "deduct_earned" else min(undo.points or 0, record.points)
    )
    if undo.within is not None and event.occurred_at - record.occurred_at > undo.within:
        amount = 0
    commands: tuple[CommandSpec, ...] = ()
    if amount > 0:
        assert c.undo_index is not None  # an undo policy needs an accrue action (load check)
        commands = (
            CommandSpec(
                kind=CommandKind.BONUS_DEDUCT,
                command_id=c.command_id(event.event_id, c.undo_index),
                member_id=event.member_id,
                offer_id=offer.id,
                offer_version=offer.version,
                source_event_id=event.event_id,
                occurred_at=event.occurred_at,
                points=amount,
                reason=undo.reason or f"{offer.name}: {event.type.value}",
                reverses=record.command_id,
            ),
        )
    offer_state = _with_object(offer_state, key, replace(record, undone_by=event.event_id))
    return Evaluation(_with_offer(state, offer.id, offer_state), commands, 0, OfferOutcome.UNDONE)


def evaluate_all(
    offers: Iterable[Offer],
    state: MemberState,
    event: RuleEvent,
    *,
    tz: tzinfo,
    budgets: Mapping[str, int | None] | None = None,
) -> BatchEvaluation:
    """Apply every offer to one event, threading the member state through them.

    Offers without counter conditions run first, then those with, each group
    by id: so a condition such as "on the 10th like" sees the count including
    this very like, whichever offer counts it, and the order never depends on
    how the caller listed the offers. ``budgets`` maps offer id to its
    remaining budget (missing: ``None``).

    The order, the duplicate-id check and which offers can act on which event
    type are worked out once per offer list (cached by the offers' identity;
    offers are frozen), so an event only visits the offers it concerns; the
    others are ``ignored`` with no budget used, as ``evaluate`` would say.
    """
    plan = _plan(offers)
    budgets = budgets or {}
    commands: list[CommandSpec] = []
    used = dict.fromkeys(plan.ids, 0)
    outcomes = dict.fromkeys(plan.ids, OfferOutcome.IGNORED)
    for c in plan.by_type[event.type]:
        offer_id = c.offer.id
        result = _evaluate(c, state, event, tz, budgets.get(offer_id))
        state = result.state
        commands.extend(result.commands)
        used[offer_id] = result.budget_used
        outcomes[offer_id] = result.outcome
    return BatchEvaluation(state, tuple(commands), used, outcomes)
