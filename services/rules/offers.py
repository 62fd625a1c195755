"""The offer format: what a loyalty program can promise for social activity.

An offer is data, not code, so marketing can write one in YAML, the lead can
store it in PostgreSQL as JSON, and replay can load an old version and get the
same answers. Every model is frozen and rejects unknown keys: a typo such as
``max_point`` must fail loudly at load time, not silently pay without a cap.

The semantics (once per object, undo, periods, counters) live in
``services.rules.engine``; ``docs/offers.md`` is the reference for authors.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from services.contracts.bounds import (
    INT64_MAX,
    MAX_BUDGET,
    MAX_COUNTER_STEP,
    MAX_IDENT,
    MAX_MEMBER_ID,
    MAX_NAME,
    MAX_PARAM_NAME,
    MAX_PARAMS,
    MAX_POINTS,
    MAX_TEXT,
    NO_NUL_PATTERN,
    Text,
    in_time_range,
)

_LONGEST_WITHIN = timedelta(days=36_525)

OfferTime = Annotated[AwareDatetime, AfterValidator(in_time_range)]
"""An offer's start or end: aware, and within the contract's time range."""


class EventType(StrEnum):
    """The domain events an offer can react to (DESIGN.md section 1, decided)."""

    PROFILE_LINKED = "PROFILE_LINKED"
    PROFILE_UNLINKED = "PROFILE_UNLINKED"
    GROUP_JOINED = "GROUP_JOINED"
    GROUP_LEFT = "GROUP_LEFT"
    POST_LIKED = "POST_LIKED"
    POST_UNLIKED = "POST_UNLIKED"
    COMMENT_POSTED = "COMMENT_POSTED"
    COMMENT_DELETED = "COMMENT_DELETED"
    POST_REPOSTED = "POST_REPOSTED"
    REPOST_DELETED = "REPOST_DELETED"


UNDO_OF: Mapping[EventType, EventType] = {
    EventType.PROFILE_UNLINKED: EventType.PROFILE_LINKED,
    EventType.GROUP_LEFT: EventType.GROUP_JOINED,
    EventType.POST_UNLIKED: EventType.POST_LIKED,
    EventType.COMMENT_DELETED: EventType.COMMENT_POSTED,
    EventType.REPOST_DELETED: EventType.POST_REPOSTED,
}
"""Each undo event and the original it takes back."""

FORWARD_TYPES = frozenset(UNDO_OF.values())
UNDO_TYPES = frozenset(UNDO_OF)

GROUP_TYPES = frozenset(
    t for t in EventType if t not in {EventType.PROFILE_LINKED, EventType.PROFILE_UNLINKED}
)
POST_TYPES = GROUP_TYPES - {EventType.GROUP_JOINED, EventType.GROUP_LEFT}

Network = Literal["vk", "ok", "apple"]
Channel = Literal["sms", "email", "push", "viber"]
Period = Literal["day", "week", "month", "year", "campaign"]

MAX_OFFER_ID: Final = 64
_NAME = rf"^[a-z0-9][a-z0-9._-]{{0,{MAX_OFFER_ID - 1}}}$"

PLACEHOLDER_LENGTHS: Final[Mapping[str, int]] = {
    "points": len(str(MAX_POINTS)),
    "offer_id": MAX_OFFER_ID,
    "offer_name": MAX_NAME,
    "network": max(len(network) for network in get_args(Network)),
    "group_id": len(str(INT64_MAX)),
    "post_id": len(str(INT64_MAX)),
    "comment_id": MAX_IDENT,
    "event_type": max(len(kind.value) for kind in EventType),
    "member_id": MAX_MEMBER_ID,
}
"""Placeholders a message parameter may use, e.g. ``"You got {points} points"``, and the
most characters each can put in (from the contract's bounds): a parameter is refused
unless its longest rendering fits ``SendMessage.params`` (``MAX_TEXT``)."""
PARAM_FIELDS = frozenset(PLACEHOLDER_LENGTHS)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Tier(_Model):
    """Points for grants up to an ordinal in the period; the last tier may be open."""

    upto: int | None = Field(
        default=None,
        ge=1,
        le=INT64_MAX,
        description="Last ordinal (1-based) this tier pays; omit = no end.",
    )
    points: int = Field(ge=1, le=MAX_POINTS)


class Reward(_Model):
    """How many points a grant is worth: a fixed amount, or tiers by ordinal."""

    points: int | None = Field(default=None, ge=1, le=MAX_POINTS)
    tiers: tuple[Tier, ...] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> Reward:
        if (self.points is None) == (self.tiers is None):
            raise ValueError("reward needs exactly one of `points` or `tiers`")
        if self.tiers is not None:
            previous = 0
            for index, tier in enumerate(self.tiers):
                last = index == len(self.tiers) - 1
                if tier.upto is None and not last:
                    raise ValueError(f"tier {index}: only the last tier may omit `upto`")
                if tier.upto is not None and tier.upto <= previous:
                    raise ValueError(
                        f"tier {index}: `upto` must grow (got {tier.upto} after {previous})"
                    )
                previous = tier.upto or previous
        return self

    def points_for(self, ordinal: int) -> int:
        """Points for the ``ordinal``-th grant in the period (1-based); 0 past the last tier."""
        if self.points is not None:
            return self.points
        for tier in self.tiers or ():
            if tier.upto is None or ordinal <= tier.upto:
                return tier.points
        return 0


class Limits(_Model):
    """Caps per member per period (the offer's ``period``)."""

    max_count: int | None = Field(
        default=None, ge=1, le=INT64_MAX, description="Paid grants per period."
    )
    max_points: int | None = Field(
        default=None, ge=1, le=MAX_BUDGET, description="Points per period."
    )


class Filters(_Model):
    """Which events the offer looks at; an omitted filter matches everything."""

    networks: tuple[Network, ...] | None = Field(default=None, min_length=1)
    group_ids: tuple[str, ...] | None = Field(default=None, min_length=1)
    post_ids: tuple[str, ...] | None = Field(default=None, min_length=1)
    registration: bool | None = Field(
        default=None, description="Profile links only: true = made at registration."
    )
    relinked: bool | None = Field(
        default=False,
        description="Profile links only: whether the profile was first linked to another "
        "member. The default false pays a profile's link for the first member it was linked "
        "to only, so one social account cannot earn a link bonus for member after member; "
        "null pays every link, true only links of such a profile.",
    )

    @field_validator("group_ids", "post_ids", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        """Contract ids are numbers; YAML authors may write ``[1001]`` or ``["1001"]``."""
        if isinstance(value, list | tuple):
            return tuple(
                str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value
            )
        return value


class Undo(_Model):
    """What the reverse event (unlike, comment deleted, ...) takes back."""

    policy: Literal["none", "deduct_earned", "fixed"] = "none"
    points: int | None = Field(
        default=None,
        ge=1,
        le=MAX_POINTS,
        description="`fixed` only: deduct this, never more than earned.",
    )
    within: timedelta | None = Field(
        default=None,
        description="Only an undo this soon after the original deducts (ISO 8601, e.g. P30D).",
    )
    reason: Text | None = None

    @model_validator(mode="after")
    def _points_iff_fixed(self) -> Undo:
        if self.policy == "fixed" and self.points is None:
            raise ValueError("undo policy `fixed` needs `points`")
        if self.policy != "fixed" and self.points is not None:
            raise ValueError("undo `points` only goes with policy `fixed`")
        if self.within is not None and not timedelta(0) < self.within <= _LONGEST_WITHIN:
            raise ValueError("undo `within` must be positive and at most 100 years")
        return self


class CounterCondition(_Model):
    """A gate on one of the member's counters, e.g. ``{counter: likes, equals: 10}``.

    ``equals`` and ``every`` hold only for the event that moved the counter
    there ("on the 10th like"), so the bonus cannot fire again on a later
    event while the counter happens to stay at 10. ``at_least`` is a level:
    it holds for every event once the counter is high enough.
    """

    counter: str = Field(pattern=_NAME)
    equals: int | None = Field(default=None, ge=1, le=INT64_MAX)
    at_least: int | None = Field(default=None, ge=1, le=INT64_MAX)
    every: int | None = Field(default=None, ge=1, le=INT64_MAX)

    @model_validator(mode="after")
    def _one_test(self) -> CounterCondition:
        given = [v for v in (self.equals, self.at_least, self.every) if v is not None]
        if len(given) != 1:
            raise ValueError("a counter condition needs exactly one of equals, at_least, every")
        return self


class AccrueAction(_Model):
    """Credit the offer's reward."""

    type: Literal["accrue"]
    reason: Text | None = None


class DeductAction(_Model):
    """Debit the offer's reward, for penalties such as "minus 20 when you leave"."""

    type: Literal["deduct"]
    reason: Text | None = None


class MessageAction(_Model):
    """Send the member a message; on an offer with points, only when points moved."""

    type: Literal["message"]
    channel: Channel
    template: str = Field(min_length=1, description="Template id at the notification service.")
    params: dict[str, str] = Field(
        default_factory=dict,
        description=f"At most {MAX_PARAMS} with the `points` every message gets; a name "
        f"at most {MAX_PARAM_NAME} characters; a value at most {MAX_TEXT} characters "
        "with each placeholder at its longest.",
    )
    marketing: bool = Field(
        default=False, description="Marketing messages are not sent to opted-out members."
    )

    @field_validator("params")
    @classmethod
    def _params_fit_a_message(cls, params: dict[str, str]) -> dict[str, str]:
        """What ``SendMessage.params`` takes (``bounds.Params``), checked here so an offer
        whose messages the contract would refuse is refused when it is saved."""
        if len(params.keys() | {"points"}) > MAX_PARAMS:
            raise ValueError(
                f"{len(params)} params; a message has at most {MAX_PARAMS}, "
                "`points` included (every message gets it)"
            )
        for key, value in params.items():
            if len(key) > MAX_PARAM_NAME or "\x00" in key:
                raise ValueError(
                    f"a param name of {len(key)} characters; at most {MAX_PARAM_NAME}, no NUL"
                )
            longest = _longest_rendering(key, value)
            if longest > MAX_TEXT or "\x00" in value:
                raise ValueError(
                    f"param {key!r} renders up to {longest} characters (each placeholder at "
                    f"its longest); a message parameter is at most {MAX_TEXT}, no NUL"
                )
        return params


def _longest_rendering(key: str, value: str) -> int:
    """Characters of ``value`` rendered with every placeholder at its longest; a
    ``ValueError`` for a placeholder the engine does not fill."""
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise ValueError(f"param {key!r}: {exc}") from exc
    longest = 0
    for literal, field, spec, conversion in parsed:
        longest += len(literal)
        if field is None:
            continue
        if field not in PLACEHOLDER_LENGTHS:
            raise ValueError(
                f"param {key!r} uses unknown placeholder {{{field}}}; known: {sorted(PARAM_FIELDS)}"
            )
        if spec or conversion:
            raise ValueError(f"param {key!r}: placeholders take no format spec")
        longest += PLACEHOLDER_LENGTHS[field]
    return longest


class CounterAction(_Model):
    """Add to a named per-member counter (which ``when`` conditions read)."""

    type: Literal["counter"]
    name: str = Field(pattern=_NAME)
    by: int = Field(default=1, ge=1, le=MAX_COUNTER_STEP)


class MailingAction(_Model):
    """Switch a member's mailing subscription on a channel."""

    type: Literal["mailing"]
    channel: Channel
    enabled: bool


Action = Annotated[
    AccrueAction | DeductAction | MessageAction | CounterAction | MailingAction,
    Field(discriminator="type"),
]
PointsAction = AccrueAction | DeductAction


class Offer(_Model):
    """One versioned offer: trigger, filters, window, reward, limits, undo, actions."""

    id: str = Field(pattern=_NAME)
    version: int = Field(ge=1, le=INT64_MAX)
    name: str = Field(min_length=1, max_length=MAX_NAME, pattern=NO_NUL_PATTERN)
    description: str | None = None
    trigger: tuple[EventType, ...] = Field(min_length=1)
    filters: Filters = Filters()
    starts_at: OfferTime | None = None
    ends_at: OfferTime | None = None
    when: tuple[CounterCondition, ...] = ()
    reward: Reward | None = None
    period: Period = Field(
        default="campaign", description="The bucket tier ordinals and limits count in."
    )
    limits: Limits = Limits()
    budget: int | None = Field(
        default=None, ge=1, le=MAX_BUDGET, description="Total points for all members."
    )
    undo: Undo = Undo()
    actions: tuple[Action, ...] = Field(min_length=1)

    @field_validator("trigger", "when", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, str | Mapping):
            return (value,)
        return value

    @field_validator("trigger")
    @classmethod
    def _distinct(cls, value: tuple[EventType, ...]) -> tuple[EventType, ...]:
        if len(set(value)) != len(value):
            raise ValueError("trigger lists an event type twice")
        return value

    @model_validator(mode="after")
    def _points_consistent(self) -> Offer:
        points_actions = [a for a in self.actions if isinstance(a, AccrueAction | DeductAction)]
        if len(points_actions) > 1:
            raise ValueError("an offer has at most one accrue or deduct action")
        has_points = bool(points_actions)
        accrues = has_points and isinstance(points_actions[0], AccrueAction)
        if has_points and self.reward is None:
            raise ValueError(f"action `{points_actions[0].type}` needs a `reward`")
        if self.reward is not None and not has_points:
            raise ValueError("`reward` needs an accrue or deduct action")
        if self.limits.max_points is not None and not has_points:
            raise ValueError("limits.max_points needs an accrue or deduct action")
        if self.budget is not None and not accrues:
            raise ValueError("`budget` needs an accrue action")
        if self.undo.policy != "none":
            if not accrues:
                raise ValueError(f"undo policy `{self.undo.policy}` needs an accrue action")
            backward = sorted(t.value for t in self.trigger if t not in FORWARD_TYPES)
            if backward:
                raise ValueError(
                    f"undo applies to original events; {backward} are undo events themselves "
                    "(use a deduct action with undo policy `none` for a penalty offer)"
                )
        return self

    @model_validator(mode="after")
    def _filters_can_match(self) -> Offer:
        needs = [
            (self.filters.group_ids, GROUP_TYPES, "filters.group_ids"),
            (self.filters.post_ids, POST_TYPES, "filters.post_ids"),
        ]
        for value, types, name in needs:
            if value is not None:
                without = sorted(t.value for t in self.trigger if t not in types)
                if without:
                    raise ValueError(f"{name} can never match {without}: they carry no such id")
        if self.filters.registration is not None and set(self.trigger) - {EventType.PROFILE_LINKED}:
            raise ValueError("filters.registration only applies to trigger PROFILE_LINKED")
        if self.filters.relinked is not False and EventType.PROFILE_LINKED not in self.trigger:
            raise ValueError("filters.relinked only applies to trigger PROFILE_LINKED")
        if self.starts_at and self.ends_at and self.starts_at >= self.ends_at:
            raise ValueError("starts_at must be before ends_at")
        return self

    @property
    def points_action(self) -> PointsAction | None:
        """The accrue or deduct action, if the offer moves points at all."""
        for action in self.actions:
            if isinstance(action, AccrueAction | DeductAction):
                return action
        return None


class OfferError(ValueError):
    """An offer that does not load: where it came from and every problem in it.

    ``errors`` lists ``{"field": "limits.max_points", "message": ...}`` per
    problem, so the HTTP API can answer 422 naming the offending field.
    """

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or [{"field": "(offer)", "message": message}]


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {
            "field": ".".join(str(part) for part in error["loc"]) or "(offer)",
            "message": error["msg"],
        }
        for error in exc.errors()
    ]


def _explain(exc: ValidationError) -> str:
    return "\n".join(f"  {e['field']}: {e['message']}" for e in _field_errors(exc))


def parse_offer(data: Any, *, source: str = "<offer>") -> Offer:
    """Validate already-decoded data (a dict from YAML, JSON or a database row)."""
    if not isinstance(data, Mapping):
        raise OfferError(f"{source}: an offer must be a mapping, got {type(data).__name__}")
    try:
        return Offer.model_validate(data)
    except ValidationError as exc:
        raise OfferError(f"{source}: invalid offer\n{_explain(exc)}", _field_errors(exc)) from exc


def load_offer_text(text: str | bytes, *, source: str = "<offer>") -> Offer:
    """Parse YAML (of which JSON is a subset) and validate it as one offer."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise OfferError(f"{source}: not YAML/JSON: {exc}") from exc
    return parse_offer(data, source=source)


def load_offer(path: str | Path) -> Offer:
    """Load one offer from a ``.yaml``, ``.yml`` or ``.json`` file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            return parse_offer(json.loads(text), source=str(path))
        except json.JSONDecodeError as exc:
            raise OfferError(f"{path}: not JSON: {exc}") from exc
    return load_offer_text(text, source=str(path))


def load_offers(paths: Iterable[str | Path]) -> list[Offer]:
    """Load several offers, refusing two with the same id (their state would collide)."""
    offers: list[Offer] = []
    seen: dict[str, str] = {}
    for path in paths:
        offer = load_offer(path)
        if offer.id in seen:
            raise OfferError(f"{path}: offer id {offer.id!r} already loaded from {seen[offer.id]}")
        seen[offer.id] = str(path)
        offers.append(offer)
    return offers


def load_offer_dir(directory: str | Path) -> list[Offer]:
    """Every ``*.yaml``/``*.yml``/``*.json`` offer in a directory, in name order."""
    directory = Path(directory)
    files = sorted(p for p in directory.iterdir() if p.suffix in {".yaml", ".yml", ".json"})
    return load_offers(files)
