"""Properties of the offer engine over random event sequences (hypothesis)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.rules.engine import (
    CommandKind,
    CommandSpec,
    EventType,
    MemberState,
    RuleEvent,
    command_id,
    evaluate,
    evaluate_all,
    undo_action_index,
)
from services.rules.offers import Offer
from tests.unit.rules.events import MOSCOW, event, example, offer, run

ACCRUE, DEDUCT = CommandKind.BONUS_ACCRUE, CommandKind.BONUS_DEDUCT
START = datetime(2025, 1, 25, tzinfo=UTC)
FAST = settings(max_examples=150, deadline=None)

UNDO_POLICIES = st.sampled_from(
    [
        {"policy": "deduct_earned"},
        {"policy": "fixed", "points": 1},
        {"policy": "fixed", "points": 50},
        {"policy": "deduct_earned", "within": "PT3H"},
    ]
)
REWARDS = st.sampled_from(
    [
        {"points": 3},
        {"tiers": [{"upto": 1, "points": 5}, {"points": 1}]},
        {"tiers": [{"upto": 2, "points": 4}]},
    ]
)


@st.composite
def like_offers(draw: st.DrawFn) -> Offer:
    """An undoable likes offer with random reward, undo policy and limits."""
    limits = draw(
        st.sampled_from(
            [{}, {"max_points": 6}, {"max_count": 2}, {"max_points": 5, "max_count": 3}]
        )
    )
    return offer(
        reward=draw(REWARDS),
        undo=draw(UNDO_POLICIES),
        period=draw(st.sampled_from(["day", "month", "campaign"])),
        limits=limits,
    )


@st.composite
def toggles_of_one_post(draw: st.DrawFn) -> tuple[list[RuleEvent], list[RuleEvent]]:
    """Likes on other posts first (to move tier ordinals and limits), then a random
    like/unlike/re-like sequence on post "target", with random redeliveries and
    a link time that may fall in the middle."""
    others = [
        event(EventType.POST_LIKED, START + timedelta(minutes=i), post_id=f"other{i}")
        for i in range(draw(st.integers(0, 4)))
    ]
    steps = draw(st.lists(st.tuples(st.booleans(), st.integers(1, 180)), min_size=1, max_size=12))
    link_step = draw(st.integers(0, len(steps)))
    at = START + timedelta(hours=1)
    times = []
    for _, gap in steps:
        at += timedelta(minutes=gap)
        times.append(at)
    linked_at = times[link_step] if link_step < len(times) else None
    target = [
        event(
            EventType.POST_LIKED if liked else EventType.POST_UNLIKED,
            when,
            post_id="target",
            linked_at=linked_at,
        )
        for (liked, _), when in zip(steps, times, strict=True)
    ]
    redeliver = draw(st.lists(st.integers(0, len(target) - 1), max_size=3))
    for index in sorted(redeliver, reverse=True):
        target.insert(index + 1, target[index])
    return others, target


@FAST
@given(like_offers(), toggles_of_one_post())
def test_toggling_one_post_never_nets_more_than_one_grant_nor_below_zero(
    the_offer: Offer, sequence: tuple[list[RuleEvent], list[RuleEvent]]
) -> None:
    others, target = sequence
    state, _ = run(the_offer, others)
    running = 0
    grant = 0
    accrues = deducts = 0
    for e in target:
        result = evaluate(the_offer, state, e, tz=MOSCOW)
        state = result.state
        for c in result.commands:
            assert c.points is not None and c.points > 0
            if c.kind is ACCRUE:
                accrues += 1
                grant = c.points
                running += c.points
            elif c.kind is DEDUCT:
                deducts += 1
                running -= c.points
        assert 0 <= running <= grant
    assert accrues <= 1
    assert deducts <= accrues
    if the_offer.undo.policy == "deduct_earned" and the_offer.undo.within is None:
        assert running in {0, grant}


def _month(c: CommandSpec) -> str:
    local = c.occurred_at.astimezone(MOSCOW)
    return f"{local.year}-{local.month:02d}"


LIKE_SEQUENCES = st.lists(
    st.tuples(
        st.sampled_from([EventType.POST_LIKED, EventType.POST_UNLIKED]),
        st.integers(0, 7),
        st.integers(0, 60 * 24 * 40),
    ),
    max_size=40,
)


@FAST
@given(LIKE_SEQUENCES)
def test_the_monthly_cap_holds_in_every_moscow_month(
    raw: list[tuple[EventType, int, int]],
) -> None:
    the_offer = example("likes-5-then-1")
    events = [
        event(kind, START + timedelta(minutes=minute), post_id=f"p{post}", linked_at=START)
        for kind, post, minute in raw
    ]
    _, commands = run(the_offer, events)
    credited: dict[str, list[int]] = defaultdict(list)
    for c in commands:
        if c.kind is ACCRUE:
            credited[_month(c)].append(c.points or 0)
    for month, grants in credited.items():
        assert sum(grants) <= 15, month
        assert grants[0] == 5, month
        assert all(p == 1 for p in grants[1:]), month


@FAST
@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 60 * 24 * 12)),
        max_size=40,
    )
)
def test_a_daily_cap_holds_even_for_late_events(raw: list[tuple[int, int]]) -> None:
    the_offer = offer(reward={"points": 2}, period="day", limits={"max_points": 3})
    events = [
        event(EventType.POST_LIKED, START + timedelta(minutes=minute), post_id=f"p{post}")
        for post, minute in raw
    ]
    _, commands = run(the_offer, events)
    per_day: dict[str, int] = defaultdict(int)
    for c in commands:
        per_day[c.occurred_at.astimezone(MOSCOW).date().isoformat()] += c.points or 0
    assert all(total <= 3 for total in per_day.values())


MIXED_TYPES = [
    EventType.PROFILE_LINKED,
    EventType.PROFILE_UNLINKED,
    EventType.GROUP_JOINED,
    EventType.GROUP_LEFT,
    EventType.POST_LIKED,
    EventType.POST_UNLIKED,
    EventType.COMMENT_POSTED,
    EventType.COMMENT_DELETED,
    EventType.POST_REPOSTED,
    EventType.REPOST_DELETED,
]

MIXED = st.lists(
    st.tuples(
        st.sampled_from(MIXED_TYPES),
        st.sampled_from(["vk", "ok"]),
        st.sampled_from(["1001", "52000000000001"]),
        st.integers(0, 11),
        st.integers(1, 600),
    ),
    max_size=40,
)


def _mixed_events(raw: list[tuple[EventType, str, str, int, int]]) -> list[RuleEvent]:
    at = START
    events = []
    for kind, network, group, obj, gap in raw:
        at += timedelta(minutes=gap)
        events.append(
            event(
                kind,
                at,
                network=network,
                group_id=group,
                post_id=f"p{obj}",
                comment_id=f"c{obj}",
                linked_at=START,
            )
        )
    return events


ALL_EXAMPLES = [
    example(name)
    for name in (
        "link-profile",
        "join-group",
        "leave-group-penalty",
        "likes",
        "comments",
        "reposts",
        "likes-5-then-1",
        "tenth-like",
        "registration-mailing",
    )
]


@FAST
@given(MIXED)
def test_redelivery_emits_nothing_new(raw: list[tuple[EventType, str, str, int, int]]) -> None:
    state = MemberState()
    events = _mixed_events(raw)
    for e in events:
        state = evaluate_all(ALL_EXAMPLES, state, e, tz=MOSCOW).state
        again = evaluate_all(ALL_EXAMPLES, state, e, tz=MOSCOW)
        assert again.commands == ()
        assert again.state == state
    replayed = state
    for e in events:
        result = evaluate_all(ALL_EXAMPLES, replayed, e, tz=MOSCOW)
        assert result.commands == ()
        replayed = result.state


@FAST
@given(MIXED)
def test_command_ids_are_deterministic_unique_and_state_survives_json(
    raw: list[tuple[EventType, str, str, int, int]],
) -> None:
    events = _mixed_events(raw)

    def play(through_json: bool) -> list[CommandSpec]:
        state = MemberState()
        commands: list[CommandSpec] = []
        for e in events:
            if through_json:
                state = MemberState.from_json(state.to_json())
            result = evaluate_all(ALL_EXAMPLES, state, e, tz=MOSCOW)
            state = result.state
            commands.extend(result.commands)
        return commands

    first, second = play(False), play(True)
    assert first == second
    ids = [c.command_id for c in first]
    assert len(set(ids)) == len(ids)
    offers = {o.id: o for o in ALL_EXAMPLES}
    for c in first:
        o = offers[c.offer_id]
        if c.reverses is None:
            expected = {command_id(o.id, c.source_event_id, i) for i in range(len(o.actions))}
            assert c.command_id in expected
        else:
            assert c.command_id == command_id(o.id, c.source_event_id, undo_action_index(o))
            assert c.reverses in ids
