"""Contract events to contract commands: links, wire form, idempotent processing, replay core."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.contracts import models as m
from services.contracts.ids import command_id
from services.contracts.topics import COMMANDS_BONUS, COMMANDS_MAILING, COMMANDS_NOTIFY
from services.rules.engine import EventType, StateFormatError
from services.rules.offers import Filters, Offer, load_offer_dir
from services.rules.processing import (
    MemberLink,
    MemberRecord,
    command_topic,
    decode_rule_event,
    encode_rule_event,
    process,
    resolve,
    to_command,
)
from services.rules.replay import Replayer, replay_group
from tests.unit.rules.events import EXAMPLES, MOSCOW, example


def likes_on_every_network() -> Offer:
    """The ``likes`` example (an OK-likes offer) without its network filter: these tests
    like posts on VK."""
    return example("likes").model_copy(update={"filters": Filters()})


T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
ISSUED = datetime(2025, 3, 10, 9, 0, 5, tzinfo=UTC)
ALL = load_offer_dir(EXAMPLES)


def linked(user: str = "42", member: str = "M1", at: datetime = T0, **kw: Any) -> m.ProfileLinked:
    return m.ProfileLinked.build(
        network="vk",
        social_user_id=user,
        member_id=member,
        registration=kw.get("registration", False),
        observed_at=at,
        snapshot_at=at,
    )


def unlinked(user: str = "42", member: str = "M1", at: datetime = T0) -> m.ProfileUnlinked:
    return m.ProfileUnlinked.build(
        network="vk",
        social_user_id=user,
        member_id=member,
        registration=False,
        observed_at=at,
        snapshot_at=at,
    )


def like(post: int, at: datetime, user: str = "42", *, undo: bool = False) -> m.DomainEvent:
    model = m.PostUnliked if undo else m.PostLiked
    return model.build(
        network="vk",
        group_id=1,
        social_user_id=user,
        post_id=post,
        observed_at=at,
        snapshot_at=at,
        previous_snapshot_at=at - timedelta(hours=1),
    )


def live(events: list[m.DomainEvent], offers: Any = ALL) -> list[m.Command]:
    """What the worker's two handlers do, without Kafka: links, then member processing."""
    links: dict[str, MemberLink] = {}
    records: dict[str, MemberRecord] = {}
    sent: list[m.Command] = []
    for e in events:
        key = e.key().to_bytes().decode()
        new_link, rule_event = resolve(links.get(key), e)
        links.pop(key, None)
        if new_link is not None:
            links[key] = new_link
        if rule_event is None:
            continue
        wire = decode_rule_event(encode_rule_event(rule_event))
        record, specs = process(
            offers, records.get(wire.member_id, MemberRecord()), wire, tz=MOSCOW
        )
        records[wire.member_id] = record
        sent.extend(to_command(spec, issued_at=ISSUED) for spec in specs)
    return sent


# ------------------------------------------------------------------------ links


def test_a_link_resolves_later_activity_to_the_member_and_an_unlink_ends_it() -> None:
    link, event = resolve(None, linked())
    assert link == MemberLink("M1", T0, False)
    assert event is not None
    assert (event.type, event.member_id, event.linked_at) == (EventType.PROFILE_LINKED, "M1", T0)

    same_link, activity = resolve(link, like(7, T0 + timedelta(hours=1)))
    assert same_link == link
    assert activity is not None
    assert (activity.member_id, activity.post_id, activity.group_id) == ("M1", "7", "1")

    gone, unlink = resolve(link, unlinked(at=T0 + timedelta(days=1)))
    assert gone == MemberLink("M1", T0, False, T0 + timedelta(days=1))  # a tombstone, not nothing
    assert gone is not None and not gone.active
    assert unlink is not None
    assert unlink.linked_at == T0  # the unlink carries the link it ends
    assert resolve(gone, like(8, T0 + timedelta(days=2))) == (gone, None)  # grants: nothing
    assert resolve(gone, unlinked(at=T0 + timedelta(days=3))) == (gone, None)


def test_undo_events_of_a_former_link_resolve_to_the_former_member() -> None:
    tombstone = MemberLink("M1", T0, False, T0 + timedelta(days=1))
    kept, undo = resolve(tombstone, like(7, T0 + timedelta(days=2), undo=True))
    assert kept == tombstone
    assert undo is not None
    assert (undo.type, undo.member_id, undo.linked_at) == (EventType.POST_UNLIKED, "M1", T0)
    relinked, event = resolve(tombstone, linked(member="M2", at=T0 + timedelta(days=3)))
    # A new link replaces the tombstone and remembers whose the profile was first.
    assert relinked == MemberLink("M2", T0 + timedelta(days=3), first_member_id="M1")
    assert event is not None and event.relinked


def test_a_profile_remembers_its_first_member_across_relinks() -> None:
    """A -> B -> A -> C: only the links to B and C are relinks; the first member stays A,
    through unlinks and through the state's wire form."""
    link: MemberLink | None = None
    seen = []
    for day, member in enumerate(["A", "B", "A", "C"]):
        link, event = resolve(link, linked(member=member, at=T0 + timedelta(days=2 * day)))
        assert event is not None
        seen.append(event.relinked)
        link, _ = resolve(link, unlinked(at=T0 + timedelta(days=2 * day + 1)))
        assert MemberLink.from_json(link.to_json() if link else None) == link
    assert seen == [False, True, False, True]
    assert link is not None and link.first_member_id == "A"


def test_a_profile_earns_its_link_bonus_once_not_for_member_after_member() -> None:
    """Link-bonus farming: one VK profile linked to M1, unlinked, linked to M2, to M3.
    The welcome offer pays M1 only, live and in replay; an offer that says
    ``relinked: null`` pays every member."""
    history: list[m.DomainEvent] = []
    for day, member in enumerate(["M1", "M2", "M3"]):
        history.append(linked(member=member, at=T0 + timedelta(days=2 * day)))
        history.append(unlinked(member=member, at=T0 + timedelta(days=2 * day + 1)))

    def credits(offer: Offer) -> list[tuple[str, int]]:
        commands = live(history, [offer])
        replayer = Replayer(offer, tz=MOSCOW, notify=False, issued_at=ISSUED)
        replayed = [c for e in history for c in replayer.feed(e, in_window=True)]
        paid = [(c.member_id, c.points) for c in commands if isinstance(c, m.BonusAccrue)]
        assert paid == [(c.member_id, c.points) for c in replayed if isinstance(c, m.BonusAccrue)]
        return paid

    welcome = example("link-profile")
    assert credits(welcome) == [("M1", 50)]
    every_member = welcome.model_copy(
        update={"filters": welcome.filters.model_copy(update={"relinked": None})}
    )
    assert credits(every_member) == [("M1", 50), ("M2", 50), ("M3", 50)]
    only_relinks = welcome.model_copy(
        update={"filters": welcome.filters.model_copy(update={"relinked": True})}
    )
    assert credits(only_relinks) == [("M2", 50), ("M3", 50)]


def test_an_unlike_after_the_unlink_deducts_what_the_like_earned() -> None:
    offer = likes_on_every_network()
    history = [
        linked(),
        like(7, T0 + timedelta(hours=1)),
        unlinked(at=T0 + timedelta(days=1)),
        like(8, T0 + timedelta(days=1, hours=1)),  # after the unlink: earns nothing
        like(7, T0 + timedelta(days=2), undo=True),
        like(8, T0 + timedelta(days=2), undo=True),  # never earned: nothing to take back
    ]
    bonus = [c for c in live(history, [offer]) if isinstance(c, m.BonusAccrue | m.BonusDeduct)]
    assert [(type(c), c.member_id, c.points) for c in bonus] == [
        (m.BonusAccrue, "M1", 1),
        (m.BonusDeduct, "M1", 1),
    ]
    assert bonus[1].reverses == bonus[0].command_id

    replayer = Replayer(offer, tz=MOSCOW, notify=False, issued_at=ISSUED)
    replayed = [c for e in history for c in replayer.feed(e, in_window=True)]
    assert [c.command_id for c in replayed if isinstance(c, m.BonusAccrue | m.BonusDeduct)] == [
        c.command_id for c in bonus
    ]
    assert (replayer.report.members["M1"].accrued, replayer.report.members["M1"].deducted) == (1, 1)


def test_activity_of_an_unlinked_user_resolves_to_nothing() -> None:
    assert resolve(None, like(7, T0)) == (None, None)
    assert resolve(None, unlinked()) == (None, None)


def test_an_unlinked_users_likes_earn_nothing_end_to_end() -> None:
    commands = live([linked(), like(7, T0 + timedelta(hours=1), user="99")])
    assert {c.member_id for c in commands} == {"M1"}
    assert all(c.source_event_id == linked().event_id for c in commands)


def test_the_repartition_wire_form_round_trips() -> None:
    _, event = resolve(MemberLink("M1", T0), like(7, T0 + timedelta(hours=1)))
    assert event is not None
    assert decode_rule_event(encode_rule_event(event)) == event


def test_link_json_round_trips() -> None:
    link = MemberLink("M1", T0, True)
    assert MemberLink.from_json(link.to_json()) == link
    tombstone = MemberLink("M1", T0, True, T0 + timedelta(days=1))
    assert MemberLink.from_json(tombstone.to_json()) == tombstone
    assert MemberLink.from_json(None) is None
    with pytest.raises(StateFormatError):
        MemberLink.from_json(b"[]")


# --------------------------------------------------------------------- commands


def test_link_and_likes_give_the_contract_commands_on_their_topics() -> None:
    events = [linked(), *(like(p, T0 + timedelta(hours=p)) for p in range(1, 4))]
    commands = live(events, [example("link-profile"), example("likes-5-then-1")])
    accrue, message, *likes = commands
    assert isinstance(accrue, m.BonusAccrue)
    assert accrue.points == 50
    assert accrue.command_id == command_id("link-profile", linked().event_id, 0)
    assert isinstance(message, m.SendMessage)
    assert message.params["points"] == "50"
    assert command_topic(accrue) == COMMANDS_BONUS
    assert command_topic(message) == COMMANDS_NOTIFY
    assert [c.points for c in likes if isinstance(c, m.BonusAccrue)] == [5, 1, 1]
    assert all(c.member_id == "M1" and c.issued_at == ISSUED for c in commands)
    assert not any(c.replay for c in commands)


def test_registration_switches_mailing_through_its_topic() -> None:
    commands = live([linked(registration=True)], [example("registration-mailing")])
    (mailing,) = commands
    assert isinstance(mailing, m.MailingSet)
    assert (mailing.channel, mailing.enabled) == (m.Channel.VIBER, True)
    assert command_topic(mailing) == COMMANDS_MAILING


def test_unlike_deducts_with_a_reference_to_the_credit() -> None:
    events = [
        linked(),
        like(7, T0 + timedelta(hours=1)),
        like(7, T0 + timedelta(hours=2), undo=True),
    ]
    accrue, deduct = live(events, [example("likes-5-then-1")])
    assert isinstance(deduct, m.BonusDeduct)
    assert (deduct.points, deduct.reverses) == (5, accrue.command_id)


# --------------------------------------------------------------- idempotence


def test_an_event_seen_again_produces_nothing_new() -> None:
    """The detector is at-least-once: a redelivered snapshot re-emits the same event ids."""
    link = MemberLink("M1", T0)
    _, first_like = resolve(link, like(7, T0 + timedelta(hours=1)))
    assert first_like is not None
    record, specs = process(ALL, MemberRecord(), first_like, tz=MOSCOW)
    assert specs  # the like earned
    again, nothing = process(ALL, record, first_like, tz=MOSCOW)
    assert (again, nothing) == (record, ())


def test_the_record_survives_json_and_its_seen_ids_stay_bounded() -> None:
    record = MemberRecord()
    link = MemberLink("M1", T0)
    events = []
    for p in range(1, 11):
        _, e = resolve(link, like(p, T0 + timedelta(minutes=p)))
        assert e is not None
        events.append(e)
        record, _ = process(ALL, record, e, tz=MOSCOW, seen_limit=4)
    assert record.seen == tuple(e.event_id for e in events[-4:])
    assert MemberRecord.from_json(record.to_json()) == record
    with pytest.raises(StateFormatError):
        MemberRecord.from_json(b'{"state": 1}')


# ---------------------------------------------------------------------- replay


def test_replay_gives_the_commands_the_live_engine_gave_marked_replay() -> None:
    offer = example("likes-5-then-1")
    history: list[m.DomainEvent] = [linked(), linked(user="77", member="M2")]
    history += [like(p, T0 + timedelta(hours=p)) for p in range(1, 6)]
    history += [like(p, T0 + timedelta(hours=p), user="77") for p in range(1, 3)]
    history += [like(3, T0 + timedelta(hours=9), undo=True), like(8, T0, user="404")]
    expected = live(history, [offer])

    replayer = Replayer(offer, tz=MOSCOW, notify=False, issued_at=ISSUED)
    got = [c for e in history for c in replayer.feed(e, in_window=True)]
    assert [c.command_id for c in got] == [c.command_id for c in expected]
    assert all(c.replay for c in got)
    report = replayer.report
    assert (report.members["M1"].accrued, report.members["M1"].deducted) == (9, 1)
    assert report.members["M2"].accrued == 6
    assert report.unlinked == 1


def test_replay_builds_links_before_the_window_but_earns_only_inside_it() -> None:
    offer = example("link-profile")
    replayer = Replayer(offer, tz=MOSCOW, notify=True, issued_at=ISSUED)
    assert replayer.feed(linked(), in_window=False) == []
    like_offer = Replayer(likes_on_every_network(), tz=MOSCOW, notify=True, issued_at=ISSUED)
    like_offer.feed(linked(), in_window=False)
    assert like_offer.feed(like(1, T0 + timedelta(hours=1)), in_window=False) == []
    assert len(like_offer.feed(like(2, T0 + timedelta(hours=2)), in_window=True)) == 2


def test_replay_suppresses_messages_unless_asked() -> None:
    quiet = Replayer(example("link-profile"), tz=MOSCOW, notify=False, issued_at=ISSUED)
    assert [type(c) for c in quiet.feed(linked(), in_window=True)] == [m.BonusAccrue]
    assert quiet.report.suppressed_messages == 1
    loud = Replayer(example("link-profile"), tz=MOSCOW, notify=True, issued_at=ISSUED)
    both: list[type[m.Command]] = [m.BonusAccrue, m.SendMessage]
    assert [type(c) for c in loud.feed(linked(), in_window=True)] == both


def test_replay_counts_commands_instead_of_keeping_them() -> None:
    """A full-history --apply must not hold every command it sent in memory."""
    replayer = Replayer(likes_on_every_network(), tz=MOSCOW, notify=False, issued_at=ISSUED)
    replayer.feed(linked(), in_window=True)
    sent = [
        c
        for p in range(1, 201)
        for c in replayer.feed(like(p, T0 + timedelta(minutes=p)), in_window=True)
    ]
    report = replayer.report
    assert report.commands == len(sent) == 230
    assert dict(report.commands_by_type) == {"BonusAccrue": 30, "CounterIncrement": 200}
    assert not any(isinstance(v, list) for v in vars(report).values())


def test_accruals_carry_the_offer_budget_live_and_in_replay() -> None:
    """The ledger enforces the budget, so every accrual must tell it (deductions need not)."""
    offer = example("reposts")  # budget 100,000
    assert offer.budget == 100_000
    history: list[m.DomainEvent] = [linked()]
    repost = m.PostReposted.build(
        network="vk", group_id=1, social_user_id="42", post_id=5,
        observed_at=T0 + timedelta(hours=1), snapshot_at=T0 + timedelta(hours=1),
        previous_snapshot_at=T0,
    )  # fmt: skip
    history.append(repost)
    accrues = [c for c in live(history, [offer]) if isinstance(c, m.BonusAccrue)]
    assert [c.budget for c in accrues] == [100_000]
    replayer = Replayer(offer, tz=MOSCOW, notify=False, issued_at=ISSUED)
    replayed = [c for e in history for c in replayer.feed(e, in_window=True)]
    assert [c.budget for c in replayed if isinstance(c, m.BonusAccrue)] == [100_000]
    unbudgeted = [
        c for c in live([linked(), like(1, T0 + timedelta(hours=1))], [likes_on_every_network()])
    ]
    assert [c.budget for c in unbudgeted if isinstance(c, m.BonusAccrue)] == [None]


def test_replay_groups_are_labelled_for_the_lag_monitor() -> None:
    from services.lagmonitor.core import is_replay

    group = replay_group("likes", datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC))
    assert group == "social-loyalty.replay.likes.20250301T120000Z"
    assert is_replay(group)


# --------------------------------------------------------------- command forms


def test_commands_of_every_kind_are_valid_contract_records() -> None:
    """``to_command`` goes through the same ``command_value`` the worker encodes."""
    events = [
        linked(registration=True),
        *(like(p, T0 + timedelta(hours=p)) for p in range(1, 4)),
        like(2, T0 + timedelta(hours=9), undo=True),
    ]
    offers = [o for o in load_offer_dir(EXAMPLES) if o.id != "likes"]
    commands = live(events, [*offers, likes_on_every_network()])  # counts VK likes too
    kinds = {type(c) for c in commands}
    assert {m.BonusAccrue, m.BonusDeduct, m.SendMessage, m.CounterIncrement} <= kinds
    for command in commands:
        assert type(command).model_validate(command.model_dump()) == command


def test_the_worker_writes_the_same_resolved_event_without_building_it() -> None:
    """``encode_resolved`` (the worker's hot path) is ``encode_rule_event`` of the event."""
    from services.rules.processing import EVENT_TYPE_OF_NAME, encode_resolved, plain_event

    link = MemberLink("M1", T0, True)
    for event in (linked(), like(7, T0 + timedelta(hours=1)), unlinked(at=T0 + timedelta(days=1))):
        name, value = plain_event(event)
        kind = EVENT_TYPE_OF_NAME[name]
        _, rule_event = resolve(link, event)
        assert rule_event is not None
        resolved = MemberLink(rule_event.member_id, rule_event.linked_at or T0, link.registration)
        assert encode_resolved(kind, value, resolved) == encode_rule_event(rule_event)
