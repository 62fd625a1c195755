"""From contract events to contract commands, around the pure engine.

Still pure (no Kafka or SQL): the rules worker (``services/rules/worker.py``),
replay and the tests call these functions and only decode, call and send. Three
jobs live here:

* **links**: which member a social user is (``resolve``), so only linked
  users' activity reaches the engine, with the time of the link;
* **the wire form of a resolved event** on the member-keyed repartition topic
  (``encode_rule_event`` / ``decode_rule_event``);
* **idempotent processing** (``process``): a member's record carries the ids of
  the events it last processed (at most ``SEEN_EVENTS``), so an event delivered
  again by the at-least-once detector (it re-emits the same ids for a redelivered
  snapshot) produces nothing new. The worker's own crashes need no such record:
  its commands, state and input offsets commit in one Kafka transaction.

The hot path works on plain values (the codec's ``decode_plain`` dicts, commands
as dicts for ``encode_plain``); ``resolve`` and ``to_command`` keep the model
forms for replay, the APIs and the tests, and share the same code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from typing import Any

from services.contracts import models as m
from services.contracts.topics import (
    COMMANDS_BONUS,
    COMMANDS_COUNTER,
    COMMANDS_MAILING,
    COMMANDS_NOTIFY,
)
from services.rules.engine import (
    CommandKind,
    CommandSpec,
    EventType,
    MemberState,
    RuleEvent,
    StateFormatError,
    evaluate_all,
)
from services.rules.offers import UNDO_TYPES, Offer

SEEN_EVENTS = 64
"""Event ids remembered per member to drop upstream duplicates. The detector
re-emits a redelivered snapshot's events within one commit interval of its own
(seconds of traffic); one member rarely has more than a handful of events in that
window, so 64 ids (about 2 KB) cover it with a wide margin."""

EVENT_TYPE_OF_NAME: Mapping[str, EventType] = {
    "ProfileLinked": EventType.PROFILE_LINKED,
    "ProfileUnlinked": EventType.PROFILE_UNLINKED,
    "GroupJoined": EventType.GROUP_JOINED,
    "GroupLeft": EventType.GROUP_LEFT,
    "PostLiked": EventType.POST_LIKED,
    "PostUnliked": EventType.POST_UNLIKED,
    "CommentPosted": EventType.COMMENT_POSTED,
    "CommentDeleted": EventType.COMMENT_DELETED,
    "PostReposted": EventType.POST_REPOSTED,
    "RepostDeleted": EventType.REPOST_DELETED,
}
"""Avro short name of each domain event -> the engine's event type."""

EVENT_NAMES = frozenset(EVENT_TYPE_OF_NAME)

COMMAND_TOPIC: Mapping[type[m.ContractModel], str] = {
    m.BonusAccrue: COMMANDS_BONUS,
    m.BonusDeduct: COMMANDS_BONUS,
    m.SendMessage: COMMANDS_NOTIFY,
    m.MailingSet: COMMANDS_MAILING,
    m.CounterIncrement: COMMANDS_COUNTER,
}
"""Catalog (unprefixed) topic of each command type; ``TopicSettings.name`` prefixes it."""

KIND_NAME: Mapping[CommandKind, tuple[str, str]] = {
    CommandKind.BONUS_ACCRUE: ("BonusAccrue", COMMANDS_BONUS),
    CommandKind.BONUS_DEDUCT: ("BonusDeduct", COMMANDS_BONUS),
    CommandKind.SEND_MESSAGE: ("SendMessage", COMMANDS_NOTIFY),
    CommandKind.COUNTER_INCREMENT: ("CounterIncrement", COMMANDS_COUNTER),
    CommandKind.MAILING_SET: ("MailingSet", COMMANDS_MAILING),
}
"""Each engine command kind: its Avro short name and its catalog topic."""


# ---------------------------------------------------------------------- links


@dataclass(frozen=True, slots=True)
class MemberLink:
    """Who a social user is (or was) in the loyalty program, and since when.

    ``unlinked_at`` set makes it a tombstone: the link ended, but undo events
    of that social user still resolve to the former member, so an unlike
    after the unlink takes back what the like earned while linked. Grants of
    a tombstoned user earn nothing.

    ``first_member_id`` is the member the profile was linked to first when that is
    not ``member_id`` (``None``: this member was the first); it survives unlinks and
    relinks, so a link to anyone else is known as a relink.
    """

    member_id: str
    linked_at: datetime
    registration: bool = False
    unlinked_at: datetime | None = None
    first_member_id: str | None = None

    @property
    def active(self) -> bool:
        return self.unlinked_at is None

    @property
    def relinked(self) -> bool:
        """The profile was first linked to another member."""
        return self.first_member_id is not None

    def to_json(self) -> bytes:
        unlinked = None if self.unlinked_at is None else self.unlinked_at.isoformat()
        doc = [self.member_id, self.linked_at.isoformat(), self.registration, unlinked]
        if self.relinked:
            doc.append(self.first_member_id)
        return json.dumps(doc).encode()

    @classmethod
    def from_json(cls, data: bytes | None) -> MemberLink | None:
        if not data:
            return None
        try:
            member_id, linked_at, registration, unlinked, *first = json.loads(data)
            return cls(
                str(member_id),
                datetime.fromisoformat(linked_at),
                bool(registration),
                None if unlinked is None else datetime.fromisoformat(unlinked),
                str(first[0]) if first else None,
            )
        except (TypeError, ValueError, IndexError) as exc:
            raise StateFormatError(f"link record is malformed: {exc!r}") from exc


def _text(value: Any) -> str:
    """An enum's value or the string itself (model dumps carry enums, plain dicts str)."""
    return str(getattr(value, "value", value))


def plain_event(event: m.DomainEvent) -> tuple[str, dict[str, Any]]:
    """A model as the codec's plain path gives it: (short name, field values)."""
    return event.avro_name.rsplit(".", 1)[1], event.model_dump()


def link_key_of(value: Mapping[str, Any]) -> bytes:
    """``network:social_user_id``: the key of ``social.events`` and of the links store."""
    return f"{_text(value['network'])}:{value['social_user_id']}".encode()


def link_key(event: m.DomainEvent) -> str:
    return link_key_of(event.model_dump()).decode()


def resolve_plain(
    link: MemberLink | None, name: str, event: Mapping[str, Any]
) -> tuple[MemberLink | None, RuleEvent | None]:
    """The user's link after ``event`` and the event as the engine sees it.

    ``None`` for the event means it earns nothing: the social user is not
    linked (an unlink of an unknown or already ended link included). A link
    event is resolved before it changes the link, so an unlink still carries
    the link it ends. An unlink leaves a tombstone of the link, not nothing:
    later undo events (never grants) of the user resolve to the former
    member, so what the user earned while linked is deducted when undone.
    A new link replaces the tombstone.
    """
    kind = EVENT_TYPE_OF_NAME[name]
    new, resolved = link_after(link, kind, event)
    return new, None if resolved is None else to_rule_event(kind, event, resolved)


def link_after(
    link: MemberLink | None, kind: EventType, event: Mapping[str, Any]
) -> tuple[MemberLink | None, MemberLink | None]:
    """``(the user's link after the event, the link the event resolves to or None)``:
    the decision of ``resolve_plain`` without building the engine's event (the worker
    writes the resolved event straight to the wire with ``encode_resolved``)."""
    if kind is EventType.PROFILE_LINKED:
        member = event["member_id"]
        first = None if link is None else (link.first_member_id or link.member_id)
        new = MemberLink(
            member,
            event["snapshot_at"],
            bool(event["registration"]),
            first_member_id=None if first == member else first,
        )
        return new, new
    if link is None:
        return None, None
    if link.active:
        if kind is EventType.PROFILE_UNLINKED:
            return replace(link, unlinked_at=event["snapshot_at"]), link
        return link, link
    if kind in UNDO_TYPES and kind is not EventType.PROFILE_UNLINKED:
        return link, link
    return link, None


def resolve(
    link: MemberLink | None, event: m.DomainEvent
) -> tuple[MemberLink | None, RuleEvent | None]:
    """``resolve_plain`` for a model (replay, tests)."""
    return resolve_plain(link, *plain_event(event))


_RESOLVED_FIELDS = (
    "event_id",
    "type",
    "network",
    "social_user_id",
    "member_id",
    "occurred_at",
    "group_id",
    "post_id",
    "comment_id",
    "registration",
    "linked_at",
    "relinked",
)
"""A resolved event's fields in the order of its wire form (``encode_rule_event``)."""


def _resolved(kind: EventType, event: Mapping[str, Any], link: MemberLink) -> tuple[Any, ...]:
    """The values of ``_RESOLVED_FIELDS`` for a plain contract event of a linked user
    (``occurred_at``: snapshot time): the one place a plain event becomes a resolved one."""
    group_id = event.get("group_id")
    post_id = event.get("post_id")
    return (
        event["event_id"],
        kind,
        _text(event["network"]),
        event["social_user_id"],
        link.member_id,
        event["snapshot_at"],
        None if group_id is None else str(group_id),
        None if post_id is None else str(post_id),
        event.get("comment_id"),
        bool(event.get("registration", False)),
        link.linked_at,
        link.relinked,
    )


def to_rule_event(kind: EventType, event: Mapping[str, Any], link: MemberLink) -> RuleEvent:
    """The engine's view of a contract event of a linked user."""
    return RuleEvent(**dict(zip(_RESOLVED_FIELDS, _resolved(kind, event, link), strict=True)))


def _ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _encode_resolved_values(values: tuple[Any, ...]) -> bytes:
    (event_id, kind, network, user, member, occurred, group, post, comment, registration,
     linked, relinked) = values  # fmt: skip
    doc = [event_id, kind.value, network, user, member, _ms(occurred), group, post, comment,
           registration, None if linked is None else _ms(linked)]  # fmt: skip
    if relinked:
        doc.append(True)
    return _dumps(doc).encode()


def encode_rule_event(event: RuleEvent) -> bytes:
    """The repartition topic's value: a resolved event as a compact JSON array
    (an internal topic; times as epoch milliseconds, the contract's precision)."""
    return _encode_resolved_values(tuple(getattr(event, name) for name in _RESOLVED_FIELDS))


def encode_resolved(kind: EventType, event: Mapping[str, Any], link: MemberLink) -> bytes:
    """``encode_rule_event(to_rule_event(kind, event, link))`` without building the
    engine's event (the worker's hot path)."""
    return _encode_resolved_values(_resolved(kind, event, link))


def decode_rule_event(data: bytes) -> RuleEvent:
    """Read ``encode_rule_event`` output; raises ``ValueError`` on anything else."""
    try:
        (event_id, kind, network, user, member, occurred, group, post, comment, registration,
         linked, *relinked) = json.loads(data)  # fmt: skip
        return RuleEvent(
            event_id=event_id,
            type=EventType(kind),
            network=network,
            social_user_id=user,
            member_id=member,
            occurred_at=_at(occurred),
            group_id=group,
            post_id=post,
            comment_id=comment,
            registration=bool(registration),
            linked_at=None if linked is None else _at(linked),
            relinked=bool(relinked and relinked[0]),
        )
    except (TypeError, OverflowError, OSError) as exc:
        raise ValueError(f"not a resolved event: {exc!r}") from exc


# ------------------------------------------------------------------- commands


def command_value(
    spec: CommandSpec, *, issued_at: datetime, replay: bool = False
) -> tuple[str, str, dict[str, Any]]:
    """An engine command as (Avro short name, catalog topic, plain field values),
    ready for the codec's ``encode_plain``; the one place a command's fields are set."""
    name, topic = KIND_NAME[spec.kind]
    value: dict[str, Any] = {
        "command_id": spec.command_id,
        "member_id": spec.member_id,
        "offer_id": spec.offer_id,
        "source_event_id": spec.source_event_id,
        "replay": replay,
        "issued_at": issued_at,
    }
    kind = spec.kind
    if kind is CommandKind.BONUS_ACCRUE or kind is CommandKind.BONUS_DEDUCT:
        value["points"] = spec.points or 0
        value["reason"] = spec.reason or ""
        value["reverses"] = spec.reverses
        if kind is CommandKind.BONUS_ACCRUE:
            value["budget"] = spec.budget
    elif kind is CommandKind.SEND_MESSAGE:
        value["channel"] = spec.channel or ""
        value["template_id"] = spec.template_id or ""
        value["params"] = dict(spec.params)
        value["marketing"] = spec.marketing
    elif kind is CommandKind.COUNTER_INCREMENT:
        value["name"] = spec.counter_name or ""
        value["by"] = spec.counter_by or 1
    else:
        value["channel"] = spec.mailing_channel or ""
        value["enabled"] = bool(spec.mailing_enabled)
    return name, topic, value


_COMMAND_MODEL = {full.rsplit(".", 1)[1]: model for full, model in m.COMMAND_TYPES.items()}


def to_command(spec: CommandSpec, *, issued_at: datetime, replay: bool = False) -> m.Command:
    """The contract model of an engine command (replay, APIs, tests)."""
    name, _topic, value = command_value(spec, issued_at=issued_at, replay=replay)
    return _COMMAND_MODEL[name].model_validate(value)


def command_topic(command: m.Command) -> str:
    """The catalog topic a command goes to."""
    return COMMAND_TOPIC[type(command)]


# --------------------------------------------------------------- member record


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """What the member store holds: the engine state and the ids of the events
    last processed (oldest first, at most ``SEEN_EVENTS``)."""

    state: MemberState = field(default_factory=MemberState)
    seen: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        seen = json.dumps(self.seen, separators=(",", ":")).encode()
        return b'{"seen":' + seen + b',"state":' + self.state.to_json() + b"}"

    @classmethod
    def from_json(cls, data: bytes | None) -> MemberRecord:
        if not data:
            return cls()
        try:
            doc = json.loads(data)
            state = MemberState.from_json(json.dumps(doc["state"]))
            seen = tuple(str(eid) for eid in doc["seen"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StateFormatError(f"member record is malformed: {exc!r}") from exc
        return cls(state, seen)


def process(
    offers: Iterable[Offer],
    record: MemberRecord,
    event: RuleEvent,
    *,
    tz: tzinfo,
    seen_limit: int = SEEN_EVENTS,
) -> tuple[MemberRecord, tuple[CommandSpec, ...]]:
    """Apply every active offer to one event of one member, once per event id:
    an event whose id the record has seen gives the record unchanged and nothing."""
    if event.event_id in record.seen:
        return record, ()
    result = evaluate_all(offers, record.state, event, tz=tz)
    seen = (*record.seen, event.event_id)[-seen_limit:]
    return MemberRecord(result.state, seen), result.commands
