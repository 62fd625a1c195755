"""Each offer of the acceptance set does what its name promises."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.rules.engine import (
    CommandKind,
    CommandSpec,
    EventType,
    MemberState,
    OfferOutcome,
    RuleEvent,
    evaluate,
    evaluate_all,
)
from tests.unit.rules.events import (
    MOSCOW,
    event,
    example,
    net_points,
    points_of,
    run,
)

T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
ACCRUE, DEDUCT = CommandKind.BONUS_ACCRUE, CommandKind.BONUS_DEDUCT


def test_linking_a_profile_credits_points_and_tells_the_member() -> None:
    offer = example("link-profile")
    linked = event(EventType.PROFILE_LINKED, T0, linked_at=T0)
    result = evaluate(offer, MemberState(), linked, tz=MOSCOW)
    accrue, message = result.commands
    assert (accrue.kind, accrue.points, accrue.member_id) == (ACCRUE, 50, "m1")
    assert message.kind is CommandKind.SEND_MESSAGE
    assert message.channel == "push"
    assert message.template_id == "points-credited"
    assert message.params == {
        "title": "+50 points",
        "body": "Thank you for linking your vk profile",
        "points": "50",
    }


def test_relinking_the_same_profile_credits_nothing_and_sends_no_message() -> None:
    offer = example("link-profile")
    first = event(EventType.PROFILE_LINKED, T0, linked_at=T0)
    unlinked = event(EventType.PROFILE_UNLINKED, T0 + timedelta(days=1), linked_at=T0)
    later = T0 + timedelta(days=2)
    again = event(EventType.PROFILE_LINKED, later, linked_at=later)
    _, commands = run(offer, [first, unlinked, again])
    assert points_of(commands, ACCRUE) == [50]
    assert [c.kind for c in commands].count(CommandKind.SEND_MESSAGE) == 1


def test_a_message_goes_only_when_points_were_credited() -> None:
    offer = example("link-profile")
    linked = event(EventType.PROFILE_LINKED, T0, linked_at=T0)
    result = evaluate(offer, MemberState(), linked, tz=MOSCOW, remaining_budget=0)
    assert result.commands == ()
    assert result.outcome is OfferOutcome.LIMITED


def test_joining_the_group_earns_and_leaving_takes_exactly_that_back_once() -> None:
    offer = example("join-group")
    days = [T0 + timedelta(days=d) for d in range(5)]
    _, commands = run(
        offer,
        [
            event(EventType.GROUP_JOINED, days[0]),
            event(EventType.GROUP_LEFT, days[1]),
            event(EventType.GROUP_JOINED, days[2]),
            event(EventType.GROUP_LEFT, days[3]),
        ],
    )
    accrue, deduct = commands
    assert (accrue.kind, accrue.points) == (ACCRUE, 20)
    assert (deduct.kind, deduct.points) == (DEDUCT, 20)
    assert deduct.reverses == accrue.command_id
    assert deduct.reason == "Left our VK community"


def test_joining_another_group_earns_nothing() -> None:
    joined = event(EventType.GROUP_JOINED, T0, group_id="club-other")
    assert evaluate(example("join-group"), MemberState(), joined, tz=MOSCOW).commands == ()


def test_leaving_the_group_is_penalised_once() -> None:
    offer = example("leave-group-penalty")
    days = [T0 + timedelta(days=d) for d in range(4)]

    def ok(kind: EventType, at: datetime) -> RuleEvent:
        return event(kind, at, network="ok", group_id="52000000000001")

    _, commands = run(
        offer,
        [
            ok(EventType.GROUP_JOINED, days[0]),
            ok(EventType.GROUP_LEFT, days[1]),
            ok(EventType.GROUP_JOINED, days[2]),
            ok(EventType.GROUP_LEFT, days[3]),
        ],
    )
    assert [(c.kind, c.points, c.reason) for c in commands] == [(DEDUCT, 10, "Left our OK group")]


def test_likes_earn_a_point_each_count_and_cap_at_30_a_week() -> None:
    offer = example("likes")
    monday = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)
    likes = [
        event(EventType.POST_LIKED, monday + timedelta(minutes=i), post_id=f"p{i}", network="ok")
        for i in range(35)
    ]
    state, commands = run(offer, likes)
    assert sum(points_of(commands, ACCRUE)) == 30
    assert state.counters["likes"] == 35
    next_monday = event(
        EventType.POST_LIKED, monday + timedelta(days=7), post_id="p-next", network="ok"
    )
    assert points_of(evaluate(offer, state, next_monday, tz=MOSCOW).commands, ACCRUE) == [1]


def test_comments_earn_up_to_five_a_day_and_a_deletion_takes_one_back() -> None:
    offer = example("comments")
    at = datetime(2025, 3, 10, 7, 0, tzinfo=UTC)
    comments = [
        event(EventType.COMMENT_POSTED, at + timedelta(minutes=i), comment_id=f"c{i}")
        for i in range(7)
    ]
    state, commands = run(offer, comments)
    assert points_of(commands, ACCRUE) == [3] * 5
    deleted = event(EventType.COMMENT_DELETED, at + timedelta(hours=1), comment_id="c0")
    unpaid_deleted = event(EventType.COMMENT_DELETED, at + timedelta(hours=1), comment_id="c6")
    _, undo = run(offer, [deleted, unpaid_deleted], state)
    assert points_of(undo, DEDUCT) == [3]


def test_a_comment_deleted_after_30_days_keeps_its_points() -> None:
    offer = example("comments")
    posted = event(EventType.COMMENT_POSTED, T0)
    deleted = event(EventType.COMMENT_DELETED, T0 + timedelta(days=31))
    _, commands = run(offer, [posted, deleted])
    assert net_points(commands) == 3


def test_reposts_earn_and_a_deleted_repost_is_deducted() -> None:
    offer = example("reposts")
    _, commands = run(
        offer,
        [
            event(EventType.POST_REPOSTED, T0),
            event(EventType.REPOST_DELETED, T0 + timedelta(hours=2)),
        ],
    )
    assert [(c.kind, c.points) for c in commands] == [(ACCRUE, 10), (DEDUCT, 10)]
    assert commands[1].reverses == commands[0].command_id


def test_reposts_outside_the_campaign_earn_nothing() -> None:
    offer = example("reposts").model_copy(
        update={
            "starts_at": datetime(2025, 1, 1, tzinfo=MOSCOW),
            "ends_at": datetime(2026, 1, 1, tzinfo=MOSCOW),
        }
    )
    linked = datetime(2024, 6, 1, tzinfo=UTC)
    before = event(
        EventType.POST_REPOSTED, datetime(2024, 12, 31, 20, 59, tzinfo=UTC), linked_at=linked
    )
    first = event(
        EventType.POST_REPOSTED,
        datetime(2024, 12, 31, 21, 0, tzinfo=UTC),
        post_id="p2",
        linked_at=linked,
    )
    after = event(
        EventType.POST_REPOSTED,
        datetime(2025, 12, 31, 21, 0, tzinfo=UTC),
        post_id="p3",
        linked_at=linked,
    )
    state = MemberState()
    outcomes = []
    for e in (before, first, after):
        result = evaluate(offer, state, e, tz=MOSCOW)
        state = result.state
        outcomes.append(result.outcome)
    assert outcomes == [
        OfferOutcome.OUTSIDE_WINDOW,
        OfferOutcome.GRANTED,
        OfferOutcome.OUTSIDE_WINDOW,
    ]


def test_the_repost_budget_caps_the_grant_and_reports_what_it_used() -> None:
    offer = example("reposts")
    result = evaluate(
        offer, MemberState(), event(EventType.POST_REPOSTED, T0), tz=MOSCOW, remaining_budget=4
    )
    assert points_of(result.commands, ACCRUE) == [4]
    assert result.budget_used == 4


def test_five_then_one_up_to_fifteen_a_month() -> None:
    offer = example("likes-5-then-1")
    likes = [
        event(EventType.POST_LIKED, T0 + timedelta(hours=i), post_id=f"p{i}") for i in range(14)
    ]
    _, commands = run(offer, likes)
    assert points_of(commands, ACCRUE) == [5] + [1] * 10
    assert sum(points_of(commands, ACCRUE)) == 15


def test_five_then_one_starts_again_when_the_month_turns_in_moscow() -> None:
    offer = example("likes-5-then-1")
    january = [
        event(EventType.POST_LIKED, datetime(2025, 1, 20, 12, i, tzinfo=UTC), post_id=f"j{i}")
        for i in range(12)
    ]
    state, commands = run(offer, january)
    assert sum(points_of(commands, ACCRUE)) == 15
    # 20:59 UTC on 31 January is 23:59 in Moscow: still January, and January is full.
    last_january = event(
        EventType.POST_LIKED, datetime(2025, 1, 31, 20, 59, tzinfo=UTC), post_id="x"
    )
    # 23:30 UTC on 31 January is 02:30 on 1 February in Moscow: a new month, a new first like.
    first_february = event(
        EventType.POST_LIKED, datetime(2025, 1, 31, 23, 30, tzinfo=UTC), post_id="y"
    )
    second_february = event(
        EventType.POST_LIKED, datetime(2025, 2, 1, 0, 0, tzinfo=UTC), post_id="z"
    )
    _, more = run(offer, [last_january, first_february, second_february], state)
    assert points_of(more, ACCRUE) == [5, 1]
    assert [c.source_event_id for c in more] == [first_february.event_id, second_february.event_id]


def test_in_utc_the_same_likes_would_land_in_january() -> None:
    offer = example("likes-5-then-1")
    january = [
        event(EventType.POST_LIKED, datetime(2025, 1, 20, 12, i, tzinfo=UTC), post_id=f"j{i}")
        for i in range(12)
    ]
    late = event(EventType.POST_LIKED, datetime(2025, 1, 31, 23, 30, tzinfo=UTC), post_id="y")
    _, commands = run(offer, [*january, late], tz=UTC)
    assert sum(points_of(commands, ACCRUE)) == 15


def test_five_then_one_unlike_deducts_what_that_like_earned_and_keeps_the_ordinal() -> None:
    offer = example("likes-5-then-1")
    _, commands = run(
        offer,
        [
            event(EventType.POST_LIKED, T0, post_id="a"),
            event(EventType.POST_UNLIKED, T0 + timedelta(minutes=1), post_id="a"),
            event(EventType.POST_LIKED, T0 + timedelta(minutes=2), post_id="a"),
            event(EventType.POST_LIKED, T0 + timedelta(minutes=3), post_id="b"),
        ],
    )
    assert [(c.kind, c.points) for c in commands] == [(ACCRUE, 5), (DEDUCT, 5), (ACCRUE, 1)]


def test_a_like_capped_at_zero_is_undone_for_zero() -> None:
    offer = example("likes-5-then-1")
    likes = [
        event(EventType.POST_LIKED, T0 + timedelta(minutes=i), post_id=f"p{i}") for i in range(12)
    ]
    state, _ = run(offer, likes)
    unlike_capped = event(EventType.POST_UNLIKED, T0 + timedelta(hours=1), post_id="p11")
    result = evaluate(offer, state, unlike_capped, tz=MOSCOW)
    assert result.commands == ()
    assert result.outcome is OfferOutcome.UNDONE


def test_the_tenth_like_earns_a_bonus_once_across_the_whole_program() -> None:
    offers = [example("tenth-like"), example("likes")]
    state = MemberState()
    bonus: list[CommandSpec] = []
    at = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)
    sequence = [
        event(EventType.POST_LIKED, at + timedelta(minutes=i), post_id=f"p{i}", network="ok")
        for i in range(12)
    ]
    # a re-like of an old post after the 10th must not fire the bonus again
    sequence.insert(
        10,
        event(
            EventType.POST_UNLIKED,
            at + timedelta(minutes=9, seconds=30),
            post_id="p3",
            network="ok",
        ),
    )
    sequence.insert(
        11,
        event(
            EventType.POST_LIKED, at + timedelta(minutes=9, seconds=40), post_id="p3", network="ok"
        ),
    )
    for e in sequence:
        result = evaluate_all(offers, state, e, tz=MOSCOW)
        state = result.state
        bonus.extend(c for c in result.commands if c.offer_id == "tenth-like")
    accrue, message = bonus
    assert accrue.points == 25
    assert accrue.source_event_id == sequence[9].event_id
    assert message.params["subject"] == "Your 10th like earned 25 points"
    assert state.counters["likes"] == 12


def test_registration_with_a_profile_switches_viber_mailing_on() -> None:
    offer = example("registration-mailing")
    at_registration = event(EventType.PROFILE_LINKED, T0, linked_at=T0, registration=True)
    later_link = event(EventType.PROFILE_LINKED, T0, linked_at=T0, social_user_id="u2")
    (command,) = evaluate(offer, MemberState(), at_registration, tz=MOSCOW).commands
    assert (command.kind, command.mailing_channel, command.mailing_enabled) == (
        CommandKind.MAILING_SET,
        "viber",
        True,
    )
    assert evaluate(offer, MemberState(), later_link, tz=MOSCOW).commands == ()
