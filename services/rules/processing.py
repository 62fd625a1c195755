"""From contract events to contract commands, around the pure engine.

Still pure (no Kafka, Faust or SQL): the Faust agents and replay call these
functions and only decode, call and send. Three jobs live here:

* **links**: which member a social user is (``resolve``), so only linked
  users' activity reaches the engine, with the time of the link;
* **the wire form of a resolved event** on the member-keyed repartition topic
  (``encode_rule_event`` / ``decode_rule_event``);
* **idempotent processing** (``process``): a member's state carries a bounded
  record of the events it recently processed and the exact commands they
  produced. A redelivered event re-emits those commands (same ids, same
  ``issued_at``) instead of being evaluated again, which would emit nothing
  and lose a credit whose send did not survive a crash. See docs/replay.md,
  "Crash consistency".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
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

RECENT_EVENTS = 32
"""Processed events remembered per member. A redelivery replays what was not
committed yet: one commit interval of one partition (seconds of traffic). One
member rarely has more than a handful of events in it; 32 leaves a wide margin
while keeping the record (written to the changelog on every event) small."""

EVENT_TYPE_OF: Mapping[type[m.ContractModel], EventType] = {
    m.ProfileLinked: EventType.PROFILE_LINKED,
    m.ProfileUnlinked: EventType.PROFILE_UNLINKED,
    m.GroupJoined: EventType.GROUP_JOINED,
    m.GroupLeft: EventType.GROUP_LEFT,
    m.PostLiked: EventType.POST_LIKED,
    m.PostUnliked: EventType.POST_UNLIKED,
    m.CommentPosted: EventType.COMMENT_POSTED,
    m.CommentDeleted: EventType.COMMENT_DELETED,
    m.PostReposted: EventType.POST_REPOSTED,
    m.RepostDeleted: EventType.REPOST_DELETED,
}

COMMAND_TOPIC: Mapping[type[m.ContractModel], str] = {
    m.BonusAccrue: COMMANDS_BONUS,
    m.BonusDeduct: COMMANDS_BONUS,
    m.SendMessage: COMMANDS_NOTIFY,
    m.MailingSet: COMMANDS_MAILING,
    m.CounterIncrement: COMMANDS_COUNTER,
}
"""Catalog (unprefixed) topic of each command type; ``TopicSettings.name`` prefixes it."""


# ---------------------------------------------------------------------- links


@dataclass(frozen=True, slots=True)
class Link:
    """Who a social user is (or was) in the loyalty program, and since when.

    ``unlinked_at`` set makes it a tombstone: the link ended, but undo events
    of that social user still resolve to the former member, so an unlike
    after the unlink takes back what the like earned while linked. Grants of
    a tombstoned user earn nothing.
    """

    member_id: str
    linked_at: datetime
    registration: bool = False
    unlinked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.unlinked_at is None

    def to_json(self) -> bytes:
        unlinked = None if self.unlinked_at is None else self.unlinked_at.isoformat()
        doc = [self.member_id, self.linked_at.isoformat(), self.registration, unlinked]
        return json.dumps(doc).encode()

    @classmethod
    def from_json(cls, data: bytes | None) -> Link | None:
        """Also reads the three-field form written before tombstones."""
        if not data:
            return None
        member_id, linked_at, registration, *rest = json.loads(data)
        unlinked = rest[0] if rest else None
        return cls(
            str(member_id),
            datetime.fromisoformat(linked_at),
            bool(registration),
            None if unlinked is None else datetime.fromisoformat(unlinked),
        )


def link_key(event: m.DomainEvent) -> str:
    """``network:social_user_id``: the key of ``social.events`` and of the links table."""
    return event.key().to_bytes().decode()


def resolve(link: Link | None, event: m.DomainEvent) -> tuple[Link | None, RuleEvent | None]:
    """The user's link after ``event`` and the event as the engine sees it.

    ``None`` for the event means it earns nothing: the social user is not
    linked (an unlink of an unknown or already ended link included). A link
    event is resolved before it changes the link, so an unlink still carries
    the link it ends. An unlink leaves a tombstone of the link, not nothing:
    later undo events (never grants) of the user resolve to the former
    member, so what the user earned while linked is deducted when undone.
    A new link replaces the tombstone.
    """
    if isinstance(event, m.ProfileLinked):
        new = Link(event.member_id, event.snapshot_at, event.registration)
        return new, to_rule_event(event, new)
    if link is None:
        return None, None
    if link.active:
        if isinstance(event, m.ProfileUnlinked):
            return replace(link, unlinked_at=event.snapshot_at), to_rule_event(event, link)
        return link, to_rule_event(event, link)
    if EVENT_TYPE_OF[type(event)] in UNDO_TYPES and not isinstance(event, m.ProfileUnlinked):
        return link, to_rule_event(event, link)
    return link, None


def to_rule_event(event: m.DomainEvent, link: Link) -> RuleEvent:
    """The engine's view of a contract event of a linked user (``occurred_at``: snapshot time)."""
    group_id = getattr(event, "group_id", None)
    post_id = getattr(event, "post_id", None)
    return RuleEvent(
        event_id=event.event_id,
        type=EVENT_TYPE_OF[type(event)],
        network=event.network.value,
        social_user_id=event.social_user_id,
        member_id=link.member_id,
        occurred_at=event.snapshot_at,
        group_id=None if group_id is None else str(group_id),
        post_id=None if post_id is None else str(post_id),
        comment_id=getattr(event, "comment_id", None),
        registration=bool(getattr(event, "registration", False)),
        linked_at=link.linked_at,
    )


def encode_rule_event(event: RuleEvent) -> bytes:
    """The repartition topic's value: a resolved event as compact JSON (internal topic)."""
    doc: dict[str, Any] = {
        "event_id": event.event_id,
        "type": event.type.value,
        "network": event.network,
        "social_user_id": event.social_user_id,
        "member_id": event.member_id,
        "occurred_at": event.occurred_at.isoformat(),
        "group_id": event.group_id,
        "post_id": event.post_id,
        "comment_id": event.comment_id,
        "registration": event.registration,
        "linked_at": event.linked_at.isoformat() if event.linked_at else None,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_rule_event(data: bytes) -> RuleEvent:
    """Read ``encode_rule_event`` output; raises ``ValueError`` on anything else."""
    doc = json.loads(data)
    linked_at = doc.pop("linked_at")
    occurred_at = doc.pop("occurred_at")
    return RuleEvent(
        **doc,
        occurred_at=datetime.fromisoformat(occurred_at),
        linked_at=datetime.fromisoformat(linked_at) if linked_at else None,
    )


# ------------------------------------------------------------------- commands


def to_command(spec: CommandSpec, *, issued_at: datetime, replay: bool = False) -> m.Command:
    """The contract record for an engine command."""
    common: dict[str, Any] = {
        "command_id": spec.command_id,
        "member_id": spec.member_id,
        "offer_id": spec.offer_id,
        "source_event_id": spec.source_event_id,
        "replay": replay,
        "issued_at": issued_at,
    }
    if spec.kind is CommandKind.BONUS_ACCRUE:
        return m.BonusAccrue(
            **common,
            points=spec.points or 0,
            reason=spec.reason or "",
            reverses=spec.reverses,
            budget=spec.budget,
        )
    if spec.kind is CommandKind.BONUS_DEDUCT:
        return m.BonusDeduct(
            **common, points=spec.points or 0, reason=spec.reason or "", reverses=spec.reverses
        )
    if spec.kind is CommandKind.SEND_MESSAGE:
        return m.SendMessage(
            **common,
            channel=m.Channel(spec.channel or ""),
            template_id=spec.template_id or "",
            params=dict(spec.params),
            marketing=spec.marketing,
        )
    if spec.kind is CommandKind.COUNTER_INCREMENT:
        return m.CounterIncrement(**common, name=spec.counter_name or "", by=spec.counter_by or 1)
    return m.MailingSet(
        **common, channel=m.Channel(spec.mailing_channel or ""), enabled=bool(spec.mailing_enabled)
    )


def command_topic(command: m.Command) -> str:
    """The catalog topic a command goes to."""
    return COMMAND_TOPIC[type(command)]


_COMPACT: Mapping[str, tuple[type[m.Command], tuple[str, ...]]] = {
    "A": (m.BonusAccrue, ("points", "reason", "reverses", "budget")),
    "D": (m.BonusDeduct, ("points", "reason", "reverses")),
    "S": (m.SendMessage, ("channel", "template_id", "params", "marketing")),
    "C": (m.CounterIncrement, ("name", "by")),
    "M": (m.MailingSet, ("channel", "enabled")),
}
"""One letter per command type and the fields it adds to the common ones."""

_CODE_OF = {model: (code, fields) for code, (model, fields) in _COMPACT.items()}


def _encode_commands(commands: Sequence[m.Command]) -> str:
    """What ``recent`` keeps of one event's commands, as compact JSON text.

    ``[issued_at, member_id, [[code, command_id, offer_id, *type fields], ...]]``:
    the fields every command of one ``process`` call shares (issued_at,
    member, source event, ``replay=false``) are written once, and no pydantic
    dump runs on the hot path. ``[]`` when the event caused nothing.
    """
    if not commands:
        return "[]"
    first = commands[0]
    rows = []
    for c in commands:
        code, fields = _CODE_OF[type(c)]
        rows.append([code, c.command_id, c.offer_id, *[getattr(c, f) for f in fields]])
    doc = [first.issued_at.isoformat(), first.member_id, rows]
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _decode_commands(text: str, event_id: str) -> tuple[m.Command, ...]:
    doc = json.loads(text)
    if not doc:
        return ()
    if not isinstance(doc[0], str):  # written before the compact form: [[avro name, fields]]
        return tuple(m.COMMAND_TYPES[name].model_validate(fields) for name, fields in doc)
    issued_at, member_id, rows = doc
    commands = []
    for code, command_id, offer_id, *values in rows:
        model, fields = _COMPACT[code]
        if len(values) > len(fields):
            raise ValueError(f"command {command_id}: {len(values)} values for {fields}")
        # A record written before a field was added has fewer values: the rest default.
        data = dict(zip(fields, values, strict=False))
        data.update(command_id=command_id, member_id=member_id, offer_id=offer_id,
                    source_event_id=event_id, replay=False, issued_at=issued_at)  # fmt: skip
        commands.append(model.model_validate(data))
    return tuple(commands)


# --------------------------------------------------------------- member record


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """What the member-state table holds: the engine state and recent processing.

    ``recent`` is ``(event_id, commands as compact JSON text)`` oldest first, at
    most ``RECENT_EVENTS``. The commands stay JSON text because they are only
    read back on a redelivery, and re-encoding hundreds of pydantic models on
    every event would cost more than the evaluation itself.
    """

    state: MemberState = field(default_factory=MemberState)
    recent: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> bytes:
        recent = ",".join(f"[{json.dumps(eid)},{commands}]" for eid, commands in self.recent)
        return b'{"recent":[' + recent.encode() + b'],"state":' + self.state.to_json() + b"}"

    @classmethod
    def from_json(cls, data: bytes | None) -> MemberRecord:
        if not data:
            return cls()
        try:
            doc = json.loads(data)
            state = MemberState.from_json(json.dumps(doc["state"]))
            recent = tuple(
                (str(eid), json.dumps(cmds, separators=(",", ":"))) for eid, cmds in doc["recent"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateFormatError(f"member record is malformed: {exc!r}") from exc
        return cls(state, recent)

    def commands_for(self, event_id: str) -> tuple[m.Command, ...] | None:
        """The commands ``event_id`` produced, if it is among the recent events."""
        for eid, commands in reversed(self.recent):
            if eid == event_id:
                return _decode_commands(commands, event_id)
        return None


@dataclass(frozen=True, slots=True)
class Processed:
    """The new record, the commands to send, and whether they are a re-emission."""

    record: MemberRecord
    commands: tuple[m.Command, ...]
    redelivered: bool


def process(
    offers: Iterable[Offer],
    record: MemberRecord,
    event: RuleEvent,
    *,
    tz: tzinfo,
    issued_at: datetime,
    recent_limit: int = RECENT_EVENTS,
) -> Processed:
    """Apply every active offer to one event of one member, idempotently.

    An event already in ``record.recent`` returns the commands it produced the
    first time and leaves the record as it is.
    """
    earlier = record.commands_for(event.event_id)
    if earlier is not None:
        return Processed(record, earlier, redelivered=True)
    result = evaluate_all(offers, record.state, event, tz=tz)
    commands = tuple(to_command(spec, issued_at=issued_at) for spec in result.commands)
    recent = (*record.recent, (event.event_id, _encode_commands(commands)))[-recent_limit:]
    return Processed(MemberRecord(result.state, recent), commands, redelivered=False)
