"""Builders shared by the rules tests: events, offers and a tiny driver."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from services.rules.engine import (
    CommandKind,
    CommandSpec,
    EventType,
    MemberState,
    RuleEvent,
    evaluate,
)
from services.rules.offers import Offer, load_offer, parse_offer

MOSCOW = ZoneInfo("Europe/Moscow")
EXAMPLES = Path(__file__).resolve().parents[3] / "services" / "rules" / "examples"
LINKED_AT = datetime(2025, 1, 1, tzinfo=UTC)


def example(name: str) -> Offer:
    """One offer of the acceptance set, by file stem."""
    return load_offer(EXAMPLES / f"{name}.yaml")


def offer(**fields: Any) -> Offer:
    """A minimal valid offer with ``fields`` overriding the defaults."""
    data: dict[str, Any] = {
        "id": "test-offer",
        "version": 1,
        "name": "Test offer",
        "trigger": "POST_LIKED",
        "reward": {"points": 3},
        "actions": [{"type": "accrue"}],
    }
    data.update(fields)
    return parse_offer(data)


def event(
    type_: EventType | str,
    at: datetime,
    *,
    network: str = "vk",
    group_id: str | None = "1001",
    post_id: str | None = "p1",
    comment_id: str | None = "c1",
    social_user_id: str = "u1",
    member_id: str = "m1",
    linked_at: datetime | None = LINKED_AT,
    registration: bool = False,
    event_id: str | None = None,
) -> RuleEvent:
    """An event with the fields its type needs; the id hashes what it is, like the detector."""
    type_ = EventType(type_)
    if type_ in {EventType.PROFILE_LINKED, EventType.PROFILE_UNLINKED}:
        group_id = post_id = comment_id = None
    elif type_ in {EventType.GROUP_JOINED, EventType.GROUP_LEFT}:
        post_id = comment_id = None
    elif type_ not in {EventType.COMMENT_POSTED, EventType.COMMENT_DELETED}:
        comment_id = None
    if event_id is None:
        what = f"{type_}|{network}|{group_id}|{post_id}|{comment_id}|{social_user_id}|{at}"
        event_id = hashlib.sha256(what.encode()).hexdigest()[:24]
    return RuleEvent(
        event_id=event_id,
        type=type_,
        network=network,
        group_id=group_id,
        post_id=post_id,
        comment_id=comment_id,
        social_user_id=social_user_id,
        member_id=member_id,
        occurred_at=at,
        registration=registration,
        linked_at=linked_at,
    )


def run(
    the_offer: Offer,
    events: Iterable[RuleEvent],
    state: MemberState | None = None,
    *,
    tz: tzinfo = MOSCOW,
) -> tuple[MemberState, list[CommandSpec]]:
    """Feed events through one offer, as the rules agent would, returning all commands."""
    state = state or MemberState()
    commands: list[CommandSpec] = []
    for e in events:
        result = evaluate(the_offer, state, e, tz=tz)
        state = result.state
        commands.extend(result.commands)
    return state, commands


def net_points(commands: Sequence[CommandSpec]) -> int:
    """Credits minus debits."""
    total = 0
    for c in commands:
        if c.kind is CommandKind.BONUS_ACCRUE:
            total += c.points or 0
        elif c.kind is CommandKind.BONUS_DEDUCT:
            total -= c.points or 0
    return total


def points_of(commands: Sequence[CommandSpec], kind: CommandKind) -> list[int]:
    """The points of each command of ``kind``, in order."""
    return [c.points or 0 for c in commands if c.kind is kind]
