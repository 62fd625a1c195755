"""The engine's rules one by one (DESIGN.md section 3, Rules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.rules.engine import (
    CommandKind,
    EventType,
    MemberState,
    OfferOutcome,
    RuleEvent,
    StateFormatError,
    command_id,
    evaluate,
    evaluate_all,
    object_key,
    period_key,
)
from tests.unit.rules.events import MOSCOW, event, net_points, offer, points_of, run

T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
ACCRUE, DEDUCT = CommandKind.BONUS_ACCRUE, CommandKind.BONUS_DEDUCT
UNDOABLE = {"undo": {"policy": "deduct_earned"}}


# ---------------------------------------------------------------- linking


def test_activity_before_the_link_earns_nothing_and_the_link_moment_counts() -> None:
    the_offer = offer()
    before = event(EventType.POST_LIKED, T0 - timedelta(seconds=1), linked_at=T0, post_id="a")
    at_link = event(EventType.POST_LIKED, T0, linked_at=T0, post_id="b")
    results = [evaluate(the_offer, MemberState(), e, tz=MOSCOW) for e in (before, at_link)]
    assert [r.outcome for r in results] == [OfferOutcome.NOT_LINKED, OfferOutcome.GRANTED]
    assert results[0].state == MemberState()


def test_an_unlinked_social_user_earns_nothing_and_loses_nothing() -> None:
    the_offer = offer(**UNDOABLE)
    state, commands = run(the_offer, [event(EventType.POST_LIKED, T0)])
    assert net_points(commands) == 3
    unlike = event(EventType.POST_UNLIKED, T0 + timedelta(hours=1), linked_at=None)
    like = event(EventType.POST_LIKED, T0 + timedelta(hours=1), linked_at=None, post_id="p2")
    for e in (unlike, like):
        result = evaluate(the_offer, state, e, tz=MOSCOW)
        assert (result.commands, result.outcome) == ((), OfferOutcome.NOT_LINKED)


def test_a_pre_link_like_does_not_block_the_first_post_link_like() -> None:
    the_offer = offer(**UNDOABLE)
    linked = T0 + timedelta(days=1)
    _, commands = run(
        the_offer,
        [
            event(EventType.POST_LIKED, T0, linked_at=linked),
            event(EventType.POST_UNLIKED, linked + timedelta(hours=1), linked_at=linked),
            event(EventType.POST_LIKED, linked + timedelta(hours=2), linked_at=linked),
        ],
    )
    assert [(c.kind, c.points) for c in commands] == [(ACCRUE, 3)]


# ---------------------------------------------------------- once per object


def test_like_unlike_like_unlike_earns_once_and_deducts_once() -> None:
    the_offer = offer(**UNDOABLE)
    kinds = [EventType.POST_LIKED, EventType.POST_UNLIKED] * 3
    _, commands = run(the_offer, [event(k, T0 + timedelta(minutes=i)) for i, k in enumerate(kinds)])
    assert [(c.kind, c.points) for c in commands] == [(ACCRUE, 3), (DEDUCT, 3)]


def test_an_unlike_without_an_earning_like_deducts_nothing() -> None:
    result = evaluate(
        offer(**UNDOABLE), MemberState(), event(EventType.POST_UNLIKED, T0), tz=MOSCOW
    )
    assert (result.commands, result.outcome) == ((), OfferOutcome.NOTHING_TO_UNDO)


def test_two_accounts_of_one_member_earn_once_per_post() -> None:
    _, commands = run(
        offer(),
        [
            event(EventType.POST_LIKED, T0, social_user_id="u1"),
            event(EventType.POST_LIKED, T0, social_user_id="u2"),
            event(EventType.POST_LIKED, T0, network="ok", social_user_id="u3"),
        ],
    )
    assert points_of(commands, ACCRUE) == [3, 3]


def test_each_comment_is_its_own_object() -> None:
    comments = offer(trigger="COMMENT_POSTED", **UNDOABLE)
    _, commands = run(
        comments,
        [
            event(EventType.COMMENT_POSTED, T0, comment_id="c1"),
            event(EventType.COMMENT_POSTED, T0, comment_id="c2"),
            event(EventType.COMMENT_DELETED, T0, comment_id="c2"),
        ],
    )
    assert net_points(commands) == 3


def test_an_offer_on_likes_and_reposts_keeps_them_apart() -> None:
    both = offer(trigger=["POST_LIKED", "POST_REPOSTED"], **UNDOABLE)
    _, commands = run(
        both,
        [
            event(EventType.POST_LIKED, T0),
            event(EventType.POST_REPOSTED, T0),
            event(EventType.REPOST_DELETED, T0 + timedelta(minutes=1)),
        ],
    )
    assert [(c.kind, c.points) for c in commands] == [(ACCRUE, 3), (ACCRUE, 3), (DEDUCT, 3)]


def test_object_keys_cannot_collide_through_separators() -> None:
    a = event(EventType.POST_LIKED, T0, group_id="g:1", post_id="2")
    b = event(EventType.POST_LIKED, T0, group_id="g", post_id="1:2")
    assert object_key(EventType.POST_LIKED, a) != object_key(EventType.POST_LIKED, b)


# -------------------------------------------------------------------- undo


def test_a_fixed_undo_never_deducts_more_than_was_earned() -> None:
    fixed = offer(
        reward={"tiers": [{"upto": 1, "points": 5}, {"points": 1}]},
        undo={"policy": "fixed", "points": 2},
    )
    _, commands = run(
        fixed,
        [
            event(EventType.POST_LIKED, T0, post_id="a"),
            event(EventType.POST_LIKED, T0, post_id="b"),
            event(EventType.POST_UNLIKED, T0 + timedelta(minutes=1), post_id="a"),
            event(EventType.POST_UNLIKED, T0 + timedelta(minutes=1), post_id="b"),
        ],
    )
    assert points_of(commands, DEDUCT) == [2, 1]


def test_without_an_undo_policy_an_unlike_changes_nothing() -> None:
    state, _ = run(offer(), [event(EventType.POST_LIKED, T0)])
    result = evaluate(offer(), state, event(EventType.POST_UNLIKED, T0), tz=MOSCOW)
    assert (result.state, result.commands, result.outcome) == (state, (), OfferOutcome.IGNORED)


def test_an_undo_still_applies_after_the_offer_window_closed() -> None:
    windowed = offer(ends_at=T0 + timedelta(days=1), **UNDOABLE)
    _, commands = run(
        windowed,
        [event(EventType.POST_LIKED, T0), event(EventType.POST_UNLIKED, T0 + timedelta(days=3))],
    )
    assert net_points(commands) == 0


def test_a_penalty_offer_uses_no_budget() -> None:
    penalty = offer(trigger="GROUP_LEFT", actions=[{"type": "deduct"}])
    result = evaluate(
        penalty, MemberState(), event(EventType.GROUP_LEFT, T0), tz=MOSCOW, remaining_budget=0
    )
    assert points_of(result.commands, DEDUCT) == [3]
    assert result.budget_used == 0


# ---------------------------------------------------------------- limits


def test_max_count_refuses_further_grants_but_still_counts() -> None:
    capped = offer(
        period="day",
        limits={"max_count": 2},
        actions=[
            {"type": "accrue"},
            {"type": "counter", "name": "likes"},
            {"type": "message", "channel": "sms", "template": "t"},
        ],
    )
    likes = [
        event(EventType.POST_LIKED, T0 + timedelta(minutes=i), post_id=f"p{i}") for i in range(3)
    ]
    state, commands = run(capped, likes)
    assert points_of(commands, ACCRUE) == [3, 3]
    assert [c.kind for c in commands].count(CommandKind.SEND_MESSAGE) == 2
    assert [c.kind for c in commands].count(CommandKind.COUNTER_INCREMENT) == 3
    assert state.counters["likes"] == 3


def test_max_points_cuts_the_last_grant_to_what_is_left() -> None:
    capped = offer(reward={"points": 4}, period="month", limits={"max_points": 10})
    likes = [
        event(EventType.POST_LIKED, T0 + timedelta(minutes=i), post_id=f"p{i}") for i in range(4)
    ]
    _, commands = run(capped, likes)
    assert points_of(commands, ACCRUE) == [4, 4, 2]


@pytest.mark.parametrize(
    ("period", "at", "expected"),
    [
        ("day", datetime(2025, 3, 9, 21, 0, tzinfo=UTC), "day:2025-03-10"),
        ("day", datetime(2025, 3, 9, 20, 59, tzinfo=UTC), "day:2025-03-09"),
        ("week", datetime(2025, 3, 9, 21, 0, tzinfo=UTC), "week:2025-W11"),
        ("week", datetime(2024, 12, 30, 12, 0, tzinfo=UTC), "week:2025-W01"),
        ("month", datetime(2025, 1, 31, 23, 30, tzinfo=UTC), "month:2025-02"),
        ("year", datetime(2024, 12, 31, 21, 0, tzinfo=UTC), "year:2025"),
        ("campaign", datetime(2024, 12, 31, 21, 0, tzinfo=UTC), "campaign"),
    ],
)
def test_periods_are_cut_in_the_program_time_zone(period: str, at: datetime, expected: str) -> None:
    assert period_key(period, at, MOSCOW) == expected  # type: ignore[arg-type]


def test_periods_follow_the_given_zone_not_the_event_offset() -> None:
    same_instant = datetime(2025, 1, 31, 23, 30, tzinfo=UTC).astimezone(
        timezone(timedelta(hours=-5))
    )
    assert period_key("month", same_instant, MOSCOW) == "month:2025-02"


def test_a_late_event_from_a_forgotten_period_earns_nothing() -> None:
    daily = offer(period="day", limits={"max_points": 3})
    days = [event(EventType.POST_LIKED, T0 + timedelta(days=d), post_id=f"p{d}") for d in range(5)]
    state, commands = run(daily, days)
    assert points_of(commands, ACCRUE) == [3] * 5
    assert len(state.offers["test-offer"].periods) == 3
    late = event(EventType.POST_LIKED, T0 + timedelta(hours=1), post_id="late")
    result = evaluate(daily, state, late, tz=MOSCOW)
    assert (result.commands, result.outcome) == ((), OfferOutcome.LIMITED)


# ------------------------------------------------------------ conditions


def test_every_fifth_count_fires_on_the_event_that_crosses_it() -> None:
    counting = offer(id="count", reward=None, actions=[{"type": "counter", "name": "likes"}])
    fifth = offer(id="every-fifth", when={"counter": "likes", "every": 5})
    likes = [
        event(EventType.POST_LIKED, T0 + timedelta(minutes=i), post_id=f"p{i}") for i in range(11)
    ]
    state = MemberState()
    fired = []
    for i, e in enumerate(likes):
        result = evaluate_all([fifth, counting], state, e, tz=MOSCOW)
        state = result.state
        if any(c.offer_id == "every-fifth" for c in result.commands):
            fired.append(i + 1)
    assert fired == [5, 10]


def test_at_least_holds_for_every_event_once_reached() -> None:
    counting = offer(
        id="count",
        trigger="COMMENT_POSTED",
        reward=None,
        actions=[{"type": "counter", "name": "comments"}],
    )
    gated = offer(id="likes-after-2-comments", when={"counter": "comments", "at_least": 2})
    comments = [event(EventType.COMMENT_POSTED, T0, comment_id=f"c{i}") for i in range(2)]
    state, _ = run(counting, comments)
    assert state.counters["comments"] == 2
    _, commands = run(
        gated, [event(EventType.POST_LIKED, T0, post_id=f"p{i}") for i in range(2)], state
    )
    assert points_of(commands, ACCRUE) == [3, 3]
    unmet = evaluate(gated, MemberState(), event(EventType.POST_LIKED, T0), tz=MOSCOW)
    assert unmet.outcome is OfferOutcome.CONDITION_UNMET


def test_evaluate_all_refuses_two_offers_with_one_id() -> None:
    with pytest.raises(ValueError, match="duplicate offer ids"):
        evaluate_all([offer(), offer()], MemberState(), event(EventType.POST_LIKED, T0), tz=MOSCOW)


# ----------------------------------------------- idempotency and command ids


def test_a_redelivered_event_emits_nothing_new() -> None:
    the_offer = offer(**UNDOABLE)
    like = event(EventType.POST_LIKED, T0)
    unlike = event(EventType.POST_UNLIKED, T0 + timedelta(minutes=1))
    state, _ = run(the_offer, [like, unlike])
    for e in (like, unlike):
        again = evaluate(the_offer, state, e, tz=MOSCOW)
        assert (again.commands, again.state) == ((), state)


def test_command_ids_hash_offer_event_and_action_but_not_the_version() -> None:
    the_offer = offer(actions=[{"type": "accrue"}, {"type": "counter", "name": "likes"}])
    like = event(EventType.POST_LIKED, T0)
    accrue, count = evaluate(the_offer, MemberState(), like, tz=MOSCOW).commands
    assert accrue.command_id == command_id("test-offer", like.event_id, 0)
    assert count.command_id == command_id("test-offer", like.event_id, 1)
    assert len(accrue.command_id) == 32
    # A replay after an edit (version 2) must hit the ledger's unique id, not credit again.
    v2 = offer(version=2, actions=[{"type": "accrue"}, {"type": "counter", "name": "likes"}])
    assert evaluate(v2, MemberState(), like, tz=MOSCOW).commands[0].command_id == accrue.command_id


def test_a_new_offer_version_keeps_what_the_old_one_granted() -> None:
    state, _ = run(offer(), [event(EventType.POST_LIKED, T0)])
    result = evaluate(
        offer(version=2, reward={"points": 7}), state, event(EventType.POST_LIKED, T0), tz=MOSCOW
    )
    assert result.outcome is OfferOutcome.ALREADY_SEEN


def test_evaluate_never_mutates_its_input_state() -> None:
    the_offer = offer(actions=[{"type": "accrue"}, {"type": "counter", "name": "likes"}])
    state, _ = run(the_offer, [event(EventType.POST_LIKED, T0, post_id="a")])
    frozen = state.to_json()
    evaluate(the_offer, state, event(EventType.POST_LIKED, T0, post_id="b"), tz=MOSCOW)
    assert state.to_json() == frozen


# ------------------------------------------------------------------ state


def test_state_round_trips_through_json_bytes() -> None:
    the_offer = offer(
        period="week",
        limits={"max_points": 100},
        actions=[{"type": "accrue"}, {"type": "counter", "name": "likes"}],
        **UNDOABLE,
    )
    state, _ = run(
        the_offer,
        [
            event(EventType.POST_LIKED, T0, post_id="a"),
            event(EventType.POST_UNLIKED, T0, post_id="a"),
        ],
    )
    data = state.to_json()
    assert isinstance(data, bytes)
    assert MemberState.from_json(data) == state
    assert MemberState.from_json(data).to_json() == data
    assert MemberState.from_json(None) == MemberState()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"{", "not JSON"),
        (b'{"v": 99}', "version 99; this code reads 1"),
        (b"[]", "version None"),
        (b'{"v": 1, "counters": {}}', "malformed"),
    ],
)
def test_unreadable_state_is_a_clear_error(data: bytes, expected: str) -> None:
    with pytest.raises(StateFormatError, match=expected):
        MemberState.from_json(data)


# ------------------------------------------------------------------ input


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"network": "facebook"}, "network 'facebook' is not one of"),
        ({"occurred_at": datetime(2025, 1, 1)}, "occurred_at must be timezone-aware"),
        ({"linked_at": datetime(2025, 1, 1)}, "linked_at must be timezone-aware"),
        ({"post_id": None}, r"POST_UNLIKED event e1 lacks \['post_id'\]"),
        ({"event_id": ""}, "event_id is empty"),
        ({"type": "POST_LOVED"}, "'POST_LOVED' is not a valid EventType"),
    ],
)
def test_a_malformed_event_is_a_clear_error(fields: dict[str, object], expected: str) -> None:
    base: dict[str, object] = {
        "event_id": "e1",
        "type": "POST_UNLIKED",
        "network": "vk",
        "group_id": "g",
        "post_id": "p",
        "social_user_id": "u",
        "member_id": "m",
        "occurred_at": T0,
        "linked_at": T0,
    }
    with pytest.raises(ValueError, match=expected):
        RuleEvent(**{**base, **fields})  # type: ignore[arg-type]


def test_a_redelivered_batch_does_not_undo_a_later_like() -> None:
    the_offer = offer(**UNDOABLE)
    unlike = event(EventType.POST_UNLIKED, T0)
    like = event(EventType.POST_LIKED, T0 + timedelta(minutes=5))
    state, first = run(the_offer, [unlike, like])
    assert net_points(first) == 3
    _, again = run(the_offer, [unlike, like], state)
    assert again == []
