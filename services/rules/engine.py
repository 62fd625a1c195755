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
from dataclasses import dataclass, field, fields
from datetime import datetime, tzinfo
from enum import StrEnum
from json.encoder import encode_basestring  # what json.dumps(ensure_ascii=False) quotes with
from operator import attrgetter
from typing import Any

from services.contracts.ids import command_id
from services.rules.offers import (
    UNDO_OF,
    AccrueAction,
    CounterAction,
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
    "OfferOutcome",
    "OfferState",
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
    relinked: bool = False
    """The social profile was first linked to another member: a ``PROFILE_LINKED`` of it
    pays only offers whose ``filters.relinked`` allows it (default: it does not), so one
    profile cannot earn a link bonus for member after member."""

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


# ------------------------------------------------------------ compiled offers
#
# The hot path runs on plain tuples and locals worked out once per offer: no
# pydantic attribute access, no isinstance chains on actions, and the frozen
# dataclasses it returns are filled through their slot setters (what their
# ``__init__`` does, minus a generic ``object.__setattr__`` per field).

_COMMAND_ID_CHARS = 32

_new = object.__new__


def _setters(cls: type) -> tuple[Any, ...]:
    """The slot setters of a frozen slots dataclass, in field order."""
    return tuple(cls.__dict__[f.name].__set__ for f in fields(cls))


(_s_kind, _s_command_id, _s_member_id, _s_offer_id, _s_offer_version, _s_source_event_id,
 _s_occurred_at, _s_points, _s_reason, _s_reverses, _s_budget, _s_channel, _s_template_id,
 _s_params, _s_marketing, _s_counter_name, _s_counter_by, _s_mailing_channel,
 _s_mailing_enabled) = _setters(CommandSpec)  # fmt: skip
_s_rec_event_id, _s_rec_occurred_at, _s_rec_points, _s_rec_command_id, _s_rec_undone_by = _setters(
    ObjectRecord
)
_s_use_count, _s_use_points = _setters(PeriodUse)
_s_os_periods, _s_os_closed_before, _s_os_objects = _setters(OfferState)
_s_ms_counters, _s_ms_counter_changes, _s_ms_offers = _setters(MemberState)
_s_change_event_id, _s_change_before = _setters(CounterChange)


_Static = tuple[
    CommandKind, str | None, int | None, str | None, str | None, bool,
    str | None, int | None, str | None, bool | None,
]  # fmt: skip
"""What a command of one action of one offer always says: kind, reason, budget, channel,
template, marketing, counter name and step, mailing channel and switch."""


def _spec(  # noqa: PLR0917  (positional: it is on the hot path)
    c: _Compiled,
    static: _Static,
    command_id: str,
    event: RuleEvent,
    points: int | None,
    params: dict[str, str],
    reverses: str | None,
) -> CommandSpec:
    """``CommandSpec(...)`` with every field given (the same object, built faster)."""
    (kind, reason, budget, channel, template_id, marketing, counter_name, counter_by,
     mailing_channel, mailing_enabled) = static  # fmt: skip
    spec: CommandSpec = _new(CommandSpec)
    _s_kind(spec, kind)
    _s_command_id(spec, command_id)
    _s_member_id(spec, event.member_id)
    _s_offer_id(spec, c.offer_id)
    _s_offer_version(spec, c.version)
    _s_source_event_id(spec, event.event_id)
    _s_occurred_at(spec, event.occurred_at)
    _s_points(spec, points)
    _s_reason(spec, reason)
    _s_reverses(spec, reverses)
    _s_budget(spec, budget)
    _s_channel(spec, channel)
    _s_template_id(spec, template_id)
    _s_params(spec, params)
    _s_marketing(spec, marketing)
    _s_counter_name(spec, counter_name)
    _s_counter_by(spec, counter_by)
    _s_mailing_channel(spec, mailing_channel)
    _s_mailing_enabled(spec, mailing_enabled)
    return spec


def _record(
    event_id: str, occurred_at: datetime, points: int, command_id: str | None, undone_by: str | None
) -> ObjectRecord:
    record: ObjectRecord = _new(ObjectRecord)
    _s_rec_event_id(record, event_id)
    _s_rec_occurred_at(record, occurred_at)
    _s_rec_points(record, points)
    _s_rec_command_id(record, command_id)
    _s_rec_undone_by(record, undone_by)
    return record


def _offer_state_of(
    periods: Mapping[str, PeriodUse], closed: Mapping[str, str], objects: Mapping[str, ObjectRecord]
) -> OfferState:
    offer_state: OfferState = _new(OfferState)
    _s_os_periods(offer_state, periods)
    _s_os_closed_before(offer_state, closed)
    _s_os_objects(offer_state, objects)
    return offer_state


_USES: dict[tuple[int, int], PeriodUse] = {}
_CACHE_LIMIT = 512
_VALUE_CACHE_LIMIT = 8192


def _use(count: int, points: int) -> PeriodUse:
    """``PeriodUse(count, points)``, shared: they are immutable, and few members'
    buckets hold a pair that no other bucket holds (fewer objects for the GC too)."""
    key = (count, points)
    use = _USES.get(key)
    if use is None:
        use = _new(PeriodUse)
        _s_use_count(use, count)
        _s_use_points(use, points)
        if len(_USES) >= _VALUE_CACHE_LIMIT:
            _USES.clear()
        _USES[key] = use
    return use


_BUCKETS: dict[tuple[datetime, tzinfo, str], str] = {}


def _bucket(period: Period, at: datetime, tz: tzinfo) -> str:
    """``period_key``, remembered: events come in snapshot ticks, so times repeat.

    Equal aware datetimes are the same instant, so they fall in the same bucket.
    """
    key = (at, tz, period)
    bucket = _BUCKETS.get(key)
    if bucket is None:
        bucket = period_key(period, at, tz)
        if len(_BUCKETS) >= _VALUE_CACHE_LIMIT:
            _BUCKETS.clear()
        _BUCKETS[key] = bucket
    return bucket


def _params(
    items: tuple[tuple[str, str], ...], c: _Compiled, event: RuleEvent, points: int
) -> dict[str, str]:
    values = {
        "points": str(points),
        "offer_id": c.offer_id,
        "offer_name": c.name,
        "network": event.network,
        "group_id": event.group_id or "",
        "post_id": event.post_id or "",
        "comment_id": event.comment_id or "",
        "event_type": event.type.value,
        "member_id": event.member_id,
    }
    params = {key: value.format_map(values) for key, value in items}
    params.setdefault("points", str(points))
    return params


# Action kinds; a compiled action is (kind, command id suffix, static part, param items).
_ACCRUE = 0
_DEDUCT = 1
_MESSAGE = 2
_COUNTER = 3
_MAILING = 4

_Action = tuple[int, str, _Static, tuple[tuple[str, str], ...]]


def _compile_action(index: int, action: Any, offer: Offer) -> _Action:
    suffix = f",{index}]"
    if isinstance(action, AccrueAction | DeductAction):
        accrues = isinstance(action, AccrueAction)
        kind = CommandKind.BONUS_ACCRUE if accrues else CommandKind.BONUS_DEDUCT
        budget = offer.budget if accrues else None
        static: _Static = (kind, action.reason or offer.name, budget,
                           None, None, False, None, None, None, None)  # fmt: skip
        return (_ACCRUE if accrues else _DEDUCT, suffix, static, ())
    if isinstance(action, MessageAction):
        static = (CommandKind.SEND_MESSAGE, None, None, action.channel, action.template,
                  action.marketing, None, None, None, None)  # fmt: skip
        return (_MESSAGE, suffix, static, tuple(action.params.items()))
    if isinstance(action, CounterAction):
        static = (CommandKind.COUNTER_INCREMENT, None, None,
                  None, None, False, action.name, action.by, None, None)  # fmt: skip
        return (_COUNTER, suffix, static, ())
    assert isinstance(action, MailingAction)
    static = (CommandKind.MAILING_SET, None, None,
              None, None, False, None, None, action.channel, action.enabled)  # fmt: skip
    return (_MAILING, suffix, static, ())


class _Compiled:
    """What the engine needs of an offer, worked out once instead of per event.

    ``id_prefix`` is the start of the JSON array ``services.contracts.ids.command_id``
    hashes, so a command id costs one string join and one SHA-256
    (``tests/unit/rules/test_engine_ids.py`` checks the two always agree).
    """

    __slots__ = (
        "accrues",
        "actions",
        "budget",
        "closes",
        "ends_at",
        "filtered",
        "group_ids",
        "id_prefix",
        "max_count",
        "max_points",
        "name",
        "networks",
        "offer",
        "offer_id",
        "period",
        "post_ids",
        "registration",
        "relinked",
        "reward_points",
        "rewarded",
        "starts_at",
        "tiers",
        "triggers",
        "undo_fixed",
        "undo_index",
        "undo_points",
        "undo_reason",
        "undo_suffix",
        "undo_within",
        "undoes",
        "version",
        "when",
        "windowed",
    )

    def __init__(self, offer: Offer) -> None:
        f = offer.filters
        self.offer = offer  # keeps the offer alive, so its ``id()`` cannot be reused while cached
        self.offer_id = offer.id
        self.version = offer.version
        self.name = offer.name
        self.id_prefix = f'["command",{encode_basestring(offer.id)},'
        self.triggers = frozenset(offer.trigger)
        self.undoes = offer.undo.policy != "none"
        self.networks = None if f.networks is None else frozenset(f.networks)
        self.group_ids = None if f.group_ids is None else frozenset(f.group_ids)
        self.post_ids = None if f.post_ids is None else frozenset(f.post_ids)
        self.registration = f.registration
        # Only a link event can be a relink; other triggers ignore the filter.
        self.relinked = f.relinked if EventType.PROFILE_LINKED in self.triggers else None
        self.filtered = any(
            v is not None
            for v in (f.networks, f.group_ids, f.post_ids, f.registration, self.relinked)
        )
        self.starts_at = offer.starts_at
        self.ends_at = offer.ends_at
        self.windowed = offer.starts_at is not None or offer.ends_at is not None
        self.when = tuple((w.counter, w.at_least, w.equals, w.every) for w in offer.when)
        self.period: Period = offer.period
        self.closes = offer.period  # the kind of bucket ``closed_before`` is kept by
        self.max_count = offer.limits.max_count
        self.max_points = offer.limits.max_points
        reward = offer.reward
        self.rewarded = reward is not None
        self.reward_points = None if reward is None else reward.points
        self.tiers = (
            None
            if reward is None or reward.tiers is None
            else tuple((t.upto, t.points) for t in reward.tiers)
        )
        self.budget = offer.budget
        self.accrues = isinstance(offer.points_action, AccrueAction)
        self.actions = tuple(_compile_action(i, a, offer) for i, a in enumerate(offer.actions))
        self.undo_index = undo_action_index(offer) if self.accrues else None
        self.undo_suffix = None if self.undo_index is None else f",{self.undo_index}]"
        undo = offer.undo
        self.undo_fixed = undo.policy == "fixed"
        self.undo_points = undo.points or 0
        self.undo_within = undo.within
        self.undo_reason = undo.reason

    def command_id(self, event_id: str, index: int) -> str:
        raw = f"{self.id_prefix}{encode_basestring(event_id)},{index}]".encode()
        return hashlib.sha256(raw).hexdigest()[:_COMMAND_ID_CHARS]

    def points_for(self, ordinal: int) -> int:
        """``Reward.points_for``; only called on an offer with a reward."""
        if self.reward_points is not None:
            return self.reward_points
        for upto, points in self.tiers or ():
            if upto is None or ordinal <= upto:
                return points
        return 0


_COMPILED: dict[int, _Compiled] = {}


def _compiled(offer: Offer) -> _Compiled:
    found = _COMPILED.get(id(offer))
    if found is not None and found.offer is offer:
        return found
    compiled = _Compiled(offer)
    if len(_COMPILED) >= _CACHE_LIMIT:
        _COMPILED.clear()
    _COMPILED[id(offer)] = compiled
    return compiled


def _undoes(c: _Compiled, event_type: EventType) -> EventType | None:
    """The original ``event_type`` takes back for this offer, or ``None``.

    A trigger wins: an event type the offer is triggered by is a grant.
    """
    if event_type in c.triggers or not c.undoes:
        return None
    original = UNDO_OF.get(event_type)
    return original if original is not None and original in c.triggers else None


def _concerns(c: _Compiled, event_type: EventType) -> bool:
    """Whether the engine can do anything but ``ignored`` for this event type."""
    return event_type in c.triggers or _undoes(c, event_type) is not None


_Step = tuple[_Compiled, EventType | None]  # the offer, and the original an undo takes back


@dataclass(frozen=True, slots=True)
class _Plan:
    """An offer list in evaluation order, indexed by the event types each can act on."""

    offers: tuple[Offer, ...]  # keeps the offers alive (the cache key is their ids)
    ids: tuple[str, ...]
    by_type: Mapping[EventType, tuple[_Step, ...]]
    used: dict[str, int]  # copied for each result
    outcomes: dict[str, OfferOutcome]


_PLANS: dict[tuple[int, ...], _Plan] = {}


def _plan(offers: Iterable[Offer]) -> _Plan:
    """Sorted, checked and indexed once per offer list, not once per event."""
    given = offers if isinstance(offers, tuple | list) else tuple(offers)
    key = tuple(map(id, given))
    plan = _PLANS.get(key)
    if plan is not None:  # it holds these very offers, so their ids cannot have been reused
        return plan
    given = tuple(given)
    ordered = sorted(given, key=lambda o: (bool(o.when), o.id))
    ids = [o.id for o in ordered]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate offer ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    compiled = [_compiled(o) for o in ordered]
    by_type = {t: tuple((c, _undoes(c, t)) for c in compiled if _concerns(c, t)) for t in EventType}
    plan = _Plan(
        given,
        tuple(ids),
        by_type,
        dict.fromkeys(ids, 0),
        dict.fromkeys(ids, OfferOutcome.IGNORED),
    )
    if len(_PLANS) >= _CACHE_LIMIT:
        _PLANS.clear()
    _PLANS[key] = plan
    return plan


# ---------------------------------------------------------------------- evaluation


_KEY_PARTS = {
    t: (t.value, attrgetter("network", *_OBJECT_FIELDS[UNDO_OF.get(t, t)])) for t in EventType
}
"""Per event type, ``object_key``'s first part and a getter of the others (always a tuple)."""


class _Run:
    """One event applied to one member: the state so far, in mutable locals.

    Dicts of the input state are copied before the first write to them, so the
    caller's state is never touched; ``state()`` freezes the result (the input
    state itself when nothing changed).
    """

    __slots__ = (
        "changes",
        "commands",
        "counters",
        "event",
        "event_id",
        "keys",
        "linked",
        "offers",
        "own_counters",
        "own_offers",
        "quoted_id",
        "start",
        "tz",
    )

    def __init__(self, state: MemberState, event: RuleEvent, tz: tzinfo) -> None:
        self.start = state
        self.event = event
        self.event_id = event.event_id
        self.tz = tz
        self.counters: Mapping[str, int] = state.counters
        self.changes: Mapping[str, CounterChange] = state.counter_changes
        self.offers: Mapping[str, OfferState] = state.offers
        self.own_counters = False
        self.own_offers = False
        self.keys: dict[EventType, str] = {}
        self.quoted_id: str | None = None
        self.commands: list[CommandSpec] = []
        linked_at = event.linked_at
        self.linked = linked_at is not None and event.occurred_at >= linked_at

    def key(self, event_type: EventType) -> str:
        """``object_key(event_type, event)``, worked out once per event and type."""
        key = self.keys.get(event_type)
        if key is None:
            value, getter = _KEY_PARTS[event_type]
            parts = (value, *map(str, getter(self.event)))
            key = ":".join(parts)
            if "%" in key or key.count(":") != len(parts) - 1:
                key = ":".join(_escape(p) for p in parts)
            self.keys[event_type] = key
        return key

    def command_id(self, c: _Compiled, suffix: str) -> str:
        quoted = self.quoted_id
        if quoted is None:
            quoted = self.quoted_id = encode_basestring(self.event_id)
        raw = f"{c.id_prefix}{quoted}{suffix}".encode()
        return hashlib.sha256(raw).hexdigest()[:_COMMAND_ID_CHARS]

    def set_offer(self, offer_id: str, offer_state: OfferState) -> None:
        if not self.own_offers:
            self.offers = dict(self.offers)
            self.own_offers = True
        self.offers[offer_id] = offer_state  # type: ignore[index]

    def state(self) -> MemberState:
        if not (self.own_offers or self.own_counters):
            return self.start
        state: MemberState = _new(MemberState)
        _s_ms_counters(state, self.counters)
        _s_ms_counter_changes(state, self.changes)
        _s_ms_offers(state, self.offers)
        return state


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
    c = _compiled(offer)
    if not _concerns(c, event.type):
        return Evaluation(state)
    run = _Run(state, event, tz)
    outcome, used = _step(c, _undoes(c, event.type), run, remaining_budget)
    return Evaluation(run.state(), tuple(run.commands), used, outcome)


_NO_USE = PeriodUse()
_NOTHING = (OfferOutcome.IGNORED, 0)
_NOT_LINKED = (OfferOutcome.NOT_LINKED, 0)
_OUTSIDE_WINDOW = (OfferOutcome.OUTSIDE_WINDOW, 0)
_CONDITION_UNMET = (OfferOutcome.CONDITION_UNMET, 0)
_ALREADY_SEEN = (OfferOutcome.ALREADY_SEEN, 0)
_NOTHING_TO_UNDO = (OfferOutcome.NOTHING_TO_UNDO, 0)
_UNDONE = (OfferOutcome.UNDONE, 0)


def _step(
    c: _Compiled, original: EventType | None, run: _Run, remaining_budget: int | None
) -> tuple[OfferOutcome, int]:
    """One offer that concerns the event (an undo of ``original``, or a grant):
    its outcome and the budget it used."""
    if original is None:
        return _grant(c, run, remaining_budget)
    if not run.linked:
        return _NOT_LINKED
    return _undo(c, run, original)


def _conditions_hold(c: _Compiled, run: _Run) -> bool:
    counters, changes = run.counters, run.changes
    for counter, at_least, equals, every in c.when:
        value = counters.get(counter, 0)
        if at_least is not None:
            if value < at_least:
                return False
            continue
        change = changes.get(counter)
        if change is None or change.event_id != run.event_id:
            return False
        if equals is not None:
            if value != equals:
                return False
        elif value // every <= change.before // every:  # type: ignore[operator]  # every is set
            return False
    return True


def _payment(
    c: _Compiled, offer_state: OfferState, bucket: str, remaining_budget: int | None
) -> int | None:
    """Points a first-time grant pays in ``bucket``; ``None`` when a limit refuses it.

    A refused grant still uses up its object (once per object), but pays
    nothing and does not take a tier ordinal.
    """
    closed_before = offer_state.closed_before
    if closed_before:
        closed = closed_before.get(c.closes)
        if closed is not None and bucket < closed:
            return None
    use = offer_state.periods.get(bucket, _NO_USE)
    if c.max_count is not None and use.count >= c.max_count:
        return None
    if not c.rewarded:  # no points action either (checked at load)
        return 0
    points = c.points_for(use.count + 1)
    if c.max_points is not None:
        points = min(points, c.max_points - use.points)
    if remaining_budget is not None and c.accrues:
        points = min(points, remaining_budget)
    return points if points > 0 else None


def _grant(  # noqa: PLR0911  (one return per outcome)
    c: _Compiled, run: _Run, remaining_budget: int | None
) -> tuple[OfferOutcome, int]:
    event = run.event
    if c.filtered and (
        (c.networks is not None and event.network not in c.networks)
        or (c.group_ids is not None and event.group_id not in c.group_ids)
        or (c.post_ids is not None and event.post_id not in c.post_ids)
        or (c.registration is not None and event.registration != c.registration)
        or (
            c.relinked is not None
            and event.type is EventType.PROFILE_LINKED
            and event.relinked != c.relinked
        )
    ):
        return _NOTHING
    if not run.linked:
        return _NOT_LINKED
    at = event.occurred_at
    if c.windowed and not (
        (c.starts_at is None or at >= c.starts_at) and (c.ends_at is None or at < c.ends_at)
    ):
        return _OUTSIDE_WINDOW
    if c.when and not _conditions_hold(c, run):
        return _CONDITION_UNMET
    key = run.key(event.type)
    offer_id = c.offer_id
    offer_state = run.offers.get(offer_id, _EMPTY_OFFER)
    objects = offer_state.objects
    if key in objects:
        return _ALREADY_SEEN

    bucket = _bucket(c.period, at, run.tz)
    payment = _payment(c, offer_state, bucket, remaining_budget)
    paid = payment is not None
    points = payment or 0
    points_command = _grant_commands(c, run, paid, points)
    new_objects = dict(objects)
    new_objects[key] = _record(run.event_id, at, points, points_command, None)
    periods, closed = offer_state.periods, offer_state.closed_before
    if paid:
        use = periods.get(bucket, _NO_USE)
        new_use = _use(use.count + 1, use.points + points)
        if bucket in periods:  # an existing bucket: nothing new to close
            periods = dict(periods)
            periods[bucket] = new_use
        else:
            periods, closed = _open_bucket(periods, closed, c.period, bucket, new_use)
    run.set_offer(offer_id, _offer_state_of(periods, closed, new_objects))
    if paid:
        return OfferOutcome.GRANTED, points if c.accrues else 0
    return OfferOutcome.LIMITED, 0


def _grant_commands(c: _Compiled, run: _Run, paid: bool, points: int) -> str | None:
    """Run the actions of a first-time grant; the id of its points command, if any."""
    event, commands = run.event, run.commands
    points_command: str | None = None
    params: dict[str, str]
    for kind, suffix, static, items in c.actions:
        if kind == _COUNTER:
            _count(run, static[6], static[7])  # type: ignore[arg-type]  # set on counters
            params = {}
        elif kind == _MAILING:
            params = {}
        elif not paid:
            continue  # points and messages go only with a paid grant
        elif kind == _MESSAGE:
            params = _params(items, c, event, points)
        else:
            command_id = run.command_id(c, suffix)
            if points_command is None:
                points_command = command_id
            commands.append(_spec(c, static, command_id, event, points, {}, None))
            continue
        commands.append(_spec(c, static, run.command_id(c, suffix), event, None, params, None))
    return points_command


def _count(run: _Run, name: str, by: int) -> None:
    """A counter action: add ``by`` and remember the value before this event moved it."""
    if not run.own_counters:
        run.counters, run.changes = dict(run.counters), dict(run.changes)
        run.own_counters = True
    counters, changes = run.counters, run.changes
    before = counters.get(name, 0)
    previous = changes.get(name)
    if previous is None or previous.event_id != run.event_id:
        change: CounterChange = _new(CounterChange)
        _s_change_event_id(change, run.event_id)
        _s_change_before(change, before)
        changes[name] = change  # type: ignore[index]
    counters[name] = before + by  # type: ignore[index]


def _open_bucket(
    periods: Mapping[str, PeriodUse],
    closed: Mapping[str, str],
    kind: str,
    bucket: str,
    use: PeriodUse,
) -> tuple[dict[str, PeriodUse], Mapping[str, str]]:
    """A new bucket: the oldest of its kind beyond ``KEPT_PERIODS`` close."""
    new = dict(periods)
    new[bucket] = use
    if len(new) <= KEPT_PERIODS:  # no kind can have more than it keeps
        return new, closed
    prefix = f"{kind}:"  # ``k.split(":", 1)[0] == kind``, without the split
    same_kind = [k for k in new if k.startswith(prefix) or k == kind]
    if len(same_kind) > KEPT_PERIODS:
        same_kind.sort()
        for old in same_kind[:-KEPT_PERIODS]:
            del new[old]
        closed = {**closed, kind: same_kind[-KEPT_PERIODS]}
    return new, closed


def _undo(c: _Compiled, run: _Run, original: EventType) -> tuple[OfferOutcome, int]:
    event = run.event
    key = run.key(original)
    offer_id = c.offer_id
    offer_state = run.offers.get(offer_id, _EMPTY_OFFER)
    record = offer_state.objects.get(key)
    at = event.occurred_at
    if record is None or at < record.occurred_at:
        # Nothing earned, or what earned came after this undo: a batch redelivered
        # as [unlike, like] must not take back the like that followed it.
        return _NOTHING_TO_UNDO
    if record.undone_by is not None:
        return _ALREADY_SEEN
    amount = min(c.undo_points, record.points) if c.undo_fixed else record.points
    if c.undo_within is not None and at - record.occurred_at > c.undo_within:
        amount = 0
    if amount > 0:
        assert c.undo_suffix is not None  # an undo policy needs an accrue action (load check)
        reason = c.undo_reason or f"{c.name}: {event.type.value}"
        static: _Static = (CommandKind.BONUS_DEDUCT, reason, None,
                           None, None, False, None, None, None, None)  # fmt: skip
        run.commands.append(
            _spec(c, static, run.command_id(c, c.undo_suffix), event, amount, {},
                  record.command_id)
        )  # fmt: skip
    objects = dict(offer_state.objects)
    objects[key] = _record(
        record.event_id, record.occurred_at, record.points, record.command_id, run.event_id
    )
    run.set_offer(
        offer_id, _offer_state_of(offer_state.periods, offer_state.closed_before, objects)
    )
    return _UNDONE


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
    used = plan.used.copy()
    outcomes = plan.outcomes.copy()
    steps = plan.by_type[event.type]
    if not steps:
        return _batch(state, (), used, outcomes)
    run = _Run(state, event, tz)
    linked = run.linked
    for c, original in steps:  # ``_step``, inlined
        offer_id = c.offer_id
        if original is None:
            result = _grant(c, run, budgets.get(offer_id) if budgets else None)
        elif linked:
            result = _undo(c, run, original)
        else:
            result = _NOT_LINKED
        outcomes[offer_id], used[offer_id] = result
    return _batch(run.state(), tuple(run.commands), used, outcomes)


def _batch(
    state: MemberState,
    commands: tuple[CommandSpec, ...],
    used: dict[str, int],
    outcomes: dict[str, OfferOutcome],
) -> BatchEvaluation:
    result: BatchEvaluation = _new(BatchEvaluation)
    _s_batch_state(result, state)
    _s_batch_commands(result, commands)
    _s_batch_budget_used(result, used)
    _s_batch_outcomes(result, outcomes)
    return result


_s_batch_state, _s_batch_commands, _s_batch_budget_used, _s_batch_outcomes = _setters(
    BatchEvaluation
)
