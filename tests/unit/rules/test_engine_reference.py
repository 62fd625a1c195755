"""The engine gives exactly what the engine before the issue 14 speed-up gave.

``reference_engine`` is a frozen copy of that engine. Both are run side by side
over the bench's event mix (every example offer, plus offers that use what the
examples do not: ``every``/``at_least`` conditions, counter and message commands,
mailing on unpaid grants, tiers with ``max_count``, a ``fixed`` undo, windows,
post filters, budgets) and over random event sequences; every command (every
field, in order), every outcome, every budget use and every state's JSON must
be the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.rules import engine
from services.rules.bench import event_mix, example_offers, resolve_all
from services.rules.engine import EventType, RuleEvent
from services.rules.offers import Offer, parse_offer
from tests.unit.rules import reference_engine
from tests.unit.rules.events import MOSCOW

ref: Any = reference_engine  # its own RuleEvent class takes ours: the fields are the same

_EXTRA: list[dict[str, Any]] = [
    {
        "id": "every-third-comment",
        "version": 2,
        "name": "Every third comment",
        "trigger": "COMMENT_POSTED",
        "when": {"counter": "comments", "every": 3},
        "reward": {"tiers": [{"upto": 1, "points": 7}, {"upto": 3, "points": 4}]},
        "period": "week",
        "limits": {"max_count": 4},
        "undo": {"policy": "fixed", "points": 2, "within": "P2D", "reason": "Comment gone"},
        "actions": [
            {"type": "accrue", "reason": "Third comment"},
            {
                "type": "message",
                "channel": "sms",
                "template": "t-%:1",
                "params": {"text": "{points} for {comment_id} on {post_id} by {member_id}"},
                "marketing": True,
            },
            {"type": "mailing", "channel": "email", "enabled": False},
        ],
    },
    {
        "id": "comment-counter",
        "version": 1,
        "name": "Counts comments",
        "trigger": ["COMMENT_POSTED", "POST_REPOSTED"],
        "actions": [{"type": "counter", "name": "comments", "by": 2}],
    },
    {
        "id": "likes-at-least",
        "version": 3,
        "name": "Reposts after 20 likes",
        "trigger": "POST_REPOSTED",
        "when": [{"counter": "likes", "at_least": 20}, {"counter": "comments", "at_least": 4}],
        "reward": {"points": 9},
        "period": "day",
        "limits": {"max_points": 12, "max_count": 3},
        "budget": 400,
        "undo": {"policy": "deduct_earned", "within": "PT6H"},
        "actions": [
            {"type": "counter", "name": "reposts"},
            {"type": "accrue"},
            {"type": "message", "channel": "push", "template": "x", "params": {}},
        ],
    },
    {
        "id": "group-penalty",
        "version": 1,
        "name": "Penalty: left",
        "trigger": ["GROUP_LEFT", "POST_UNLIKED"],
        "starts_at": "2025-03-20T00:00:00+03:00",
        "ends_at": "2025-05-10T00:00:00+03:00",
        "reward": {"points": 4},
        "period": "year",
        "limits": {"max_points": 30},
        "actions": [
            {"type": "message", "channel": "viber", "template": "bye", "params": {"p": "{points}"}},
            {"type": "deduct"},
        ],
    },
    {
        "id": "some-posts",
        "version": 1,
        "name": "Some posts",
        "trigger": ["POST_LIKED", "COMMENT_POSTED"],
        "filters": {"networks": ["ok", "vk"], "post_ids": [1, 2, 3, 4, 5, 6, 100, 200, 300]},
        "reward": {"points": 2},
        "period": "month",
        "undo": {"policy": "deduct_earned"},
        "actions": [{"type": "accrue"}, {"type": "counter", "name": "likes"}],
    },
]


@cache
def _offers() -> tuple[Offer, ...]:
    return (*example_offers(), *(parse_offer(o) for o in _EXTRA))


@cache
def _mix(members: int | None = None) -> tuple[RuleEvent, ...]:
    """The bench's mix; few ``members`` make busy ones, whom limits and budgets stop."""
    return tuple(resolve_all(event_mix(5000, members=members)))


def _command(spec: Any) -> tuple[Any, ...]:
    return tuple(
        (f.name, str(v) if f.name == "kind" else dict(v) if f.name == "params" else v)
        for f in fields(spec)
        for v in [getattr(spec, f.name)]
    )


def _run_both(
    offers: Sequence[Offer],
    events: Sequence[RuleEvent],
    budget: int | None = None,
    *,
    each: bool = False,
    states_every: int = 1,
) -> int:
    """Both engines over ``events``, each member's state threaded; compares every step.

    ``budget``: the budgets both callers pass for the offers that have one, taken down
    by what each evaluation used; ``each``: also compare ``evaluate`` of every offer
    alone at every step; ``states_every``: compare the states' JSON every so many
    steps (and all of them at the end). Returns how many commands were compared.
    """
    states: dict[str, engine.MemberState] = {}
    ref_states: dict[str, Any] = {}
    budgets: dict[str, int | None] = {o.id: budget for o in offers if o.budget is not None}
    compared = 0
    for step, e in enumerate(events):
        state = states.get(e.member_id, engine.MemberState())
        ref_state = ref_states.get(e.member_id, ref.MemberState())
        new = engine.evaluate_all(offers, state, e, tz=MOSCOW, budgets=budgets or None)
        old = ref.evaluate_all(offers, ref_state, e, tz=MOSCOW, budgets=budgets or None)
        assert [_command(c) for c in new.commands] == [_command(c) for c in old.commands]
        assert dict(new.budget_used) == dict(old.budget_used)
        assert {k: str(v) for k, v in new.outcomes.items()} == {
            k: str(v) for k, v in old.outcomes.items()
        }
        if step % states_every == 0:
            assert new.state.to_json() == old.state.to_json()
            assert state.to_json() == ref_state.to_json()  # the input state is untouched
        for offer in offers if each else ():  # evaluate, one offer at a time, agrees too
            remaining = budgets.get(offer.id)
            one = engine.evaluate(offer, state, e, tz=MOSCOW, remaining_budget=remaining)
            two = ref.evaluate(offer, ref_state, e, tz=MOSCOW, remaining_budget=remaining)
            assert [_command(c) for c in one.commands] == [_command(c) for c in two.commands]
            assert (one.budget_used, str(one.outcome)) == (two.budget_used, str(two.outcome))
            assert one.state.to_json() == two.state.to_json()
        for offer_id, left in budgets.items():
            if left is not None:
                budgets[offer_id] = left - new.budget_used[offer_id]
        states[e.member_id], ref_states[e.member_id] = new.state, old.state
        compared += len(new.commands)
    for member, state in states.items():  # and what is stored reads back the same
        data = state.to_json()
        assert data == ref_states[member].to_json()
        assert engine.MemberState.from_json(data) == state
    return compared


def test_the_event_mix_gives_what_the_reference_engine_gave() -> None:
    assert _run_both(_offers(), _mix()) > 5000


def test_busy_members_with_budgets_give_what_the_reference_engine_gave() -> None:
    assert _run_both(_offers(), _mix(members=25), budget=900, states_every=20) > 5000


def test_each_offer_alone_gives_what_the_reference_engine_gave() -> None:
    _run_both(_offers(), _mix(members=25)[:700], budget=100, each=True)


_START = datetime(2025, 3, 30, 20, tzinfo=UTC)  # near a Moscow month and week boundary
_TYPES = list(EventType)

_RAW = st.lists(
    st.tuples(
        st.sampled_from(_TYPES),
        st.sampled_from(["vk", "ok"]),
        st.sampled_from(["1001", "52000000000001", "7:%x"]),
        st.integers(0, 6),
        st.integers(0, 60 * 24 * 9),
        st.booleans(),
    ),
    max_size=60,
)


def _events(raw: list[tuple[EventType, str, str, int, int, bool]]) -> list[RuleEvent]:
    at = _START
    out: list[RuleEvent] = []
    link_types = {EventType.PROFILE_LINKED, EventType.PROFILE_UNLINKED}
    group_types = {EventType.GROUP_JOINED, EventType.GROUP_LEFT}
    for n, (kind, network, group, obj, gap, early) in enumerate(raw):
        at += timedelta(minutes=gap)
        plain = kind in link_types
        out.append(
            RuleEvent(
                event_id=f"e{n % 50}:{kind.value}",  # some ids repeat: redeliveries
                type=kind,
                network=network,
                social_user_id=f"u{obj % 2}",
                member_id="m1",
                occurred_at=at,
                group_id=None if plain else group,
                post_id=None if plain or kind in group_types else str(obj),
                comment_id=f"c{obj}" if kind.name.startswith("COMMENT") else None,
                registration=early,
                linked_at=at + timedelta(minutes=5) if early and obj == 0 else _START,
            )
        )
    return out


@settings(max_examples=150, deadline=None)
@given(_RAW, st.sampled_from([None, 0, 15, 1000]))
def test_random_sequences_give_what_the_reference_engine_gave(
    raw: list[tuple[EventType, str, str, int, int, bool]], budget: int | None
) -> None:
    _run_both(_offers(), _events(raw), budget, each=True)
