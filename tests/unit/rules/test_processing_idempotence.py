"""Idempotent processing over random streams (hypothesis): redelivered events earn nothing new.

The detector delivers at least once: it re-emits a snapshot's events with the
same ids. Whatever it sends again -- every event twice, or a prefix of the
stream after the whole stream -- the links and ``process`` must give exactly the
commands of one delivery, each once. And however often a member undoes and redoes
one like, the net is never more than that like's first grant.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.contracts import models as m
from services.rules.engine import CommandKind, CommandSpec
from services.rules.offers import load_offer_dir
from services.rules.processing import MemberLink, MemberRecord, link_key, process, resolve
from tests.unit.rules.events import EXAMPLES, MOSCOW, net_points

OFFERS = load_offer_dir(EXAMPLES)
START = datetime(2025, 1, 20, 9, 0, tzinfo=UTC)
FAST = settings(max_examples=60, deadline=None)

VK_GROUP, OK_GROUP = 1001, 52000000000001  # the groups join-group / leave-group-penalty name
PROFILES = (("vk", "11", "M1"), ("ok", "11", "M1"), ("vk", "22", "M2"), ("vk", "33", "M3"))
"""(network, social user, member): M1 has a VK and an OK profile (same user id, two keys)."""

ACTIONS = ("link", "unlink", "like", "unlike", "join", "leave")


Profile = tuple[str, str, str]


def build(profile: Profile, action: str, at: datetime, *, post: int = 0) -> m.DomainEvent:
    """One contract event of ``profile`` as the detector (or the link API) writes it."""
    network, user, member = profile
    snap = {"observed_at": at, "snapshot_at": at}
    if action in ("link", "unlink"):
        model: type[m.ProfileLinked | m.ProfileUnlinked] = (
            m.ProfileLinked if action == "link" else m.ProfileUnlinked
        )
        return model.build(
            network=network, social_user_id=user, member_id=member, registration=False, **snap
        )
    group = VK_GROUP if network == "vk" else OK_GROUP
    common = {
        "network": network,
        "group_id": group,
        "social_user_id": user,
        "previous_snapshot_at": at - timedelta(hours=1),
        **snap,
    }
    if action in ("join", "leave"):
        return (m.GroupJoined if action == "join" else m.GroupLeft).build(**common)
    return (m.PostLiked if action == "like" else m.PostUnliked).build(post_id=post, **common)


@st.composite
def streams(draw: st.DrawFn, max_size: int = 40) -> list[m.DomainEvent]:
    """Events of a few profiles in snapshot order, over a few months (periods roll over).

    Every profile starts linked most of the time (or activity would mostly earn
    nothing); later links, unlinks and relinks, likes, unlikes and re-likes of a
    few posts, joins and leaves follow in any order the generator likes.
    """
    at = START
    events: list[m.DomainEvent] = []
    for profile in PROFILES:
        if draw(st.booleans()) or draw(st.booleans()):
            events.append(build(profile, "link", at))
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(PROFILES),
                st.sampled_from(ACTIONS),
                st.integers(1, 3),
                st.sampled_from((1, 30, 6 * 60, 3 * 24 * 60, 17 * 24 * 60)),  # minutes later
            ),
            max_size=max_size,
        )
    )
    for profile, action, post, minutes in steps:
        at += timedelta(minutes=minutes)
        events.append(build(profile, action, at, post=post))
    return events


class Pipeline:
    """The worker's two handlers without Kafka: links by user key, records by member."""

    def __init__(self) -> None:
        self.links: dict[str, MemberLink] = {}
        self.records: dict[str, MemberRecord] = {}
        self.sent: list[CommandSpec] = []

    def feed(self, events: Iterable[m.DomainEvent]) -> Pipeline:
        for event in events:
            key = link_key(event)
            new_link, rule_event = resolve(self.links.get(key), event)
            if new_link is None:
                self.links.pop(key, None)
            else:
                self.links[key] = new_link
            if rule_event is None:
                continue
            record = self.records.get(rule_event.member_id) or MemberRecord()
            record, specs = process(OFFERS, record, rule_event, tz=MOSCOW)
            self.records[rule_event.member_id] = record
            self.sent.extend(specs)
        return self

    def ids(self) -> list[str]:
        return [c.command_id for c in self.sent]


def assert_each_once(ids: Sequence[str]) -> None:
    twice = [i for i, n in Counter(ids).items() if n > 1]
    assert not twice, f"commands emitted more than once: {twice}"


@FAST
@given(streams())
def test_every_event_delivered_twice_gives_the_commands_of_one_delivery(
    events: list[m.DomainEvent],
) -> None:
    once = Pipeline().feed(events).ids()
    twice = Pipeline().feed(e for event in events for e in (event, event)).ids()
    assert_each_once(once)
    assert_each_once(twice)
    assert twice == once


@FAST
@given(streams(), st.data())
def test_a_prefix_delivered_again_after_the_stream_adds_no_command(
    events: list[m.DomainEvent], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(events)), label="prefix length")
    once = Pipeline().feed(events).ids()
    again = Pipeline().feed(events).feed(events[:cut]).ids()
    assert_each_once(again)
    assert again == once


@FAST
@given(streams(max_size=25))
def test_the_stream_twice_in_a_row_is_the_stream_once_even_per_member_record(
    events: list[m.DomainEvent],
) -> None:
    """Redelivery leaves no trace in a member's engine state either (what later events see)."""
    once = Pipeline().feed(events)
    again = Pipeline().feed(events).feed(events)
    assert again.ids() == once.ids()
    assert {k: r.state for k, r in again.records.items()} == {
        k: r.state for k, r in once.records.items()
    }


@FAST
@given(
    st.sampled_from(("vk", "ok")),
    st.lists(
        st.tuples(st.booleans(), st.sampled_from((1, 45, 12 * 60, 9 * 24 * 60))),
        min_size=1,
        max_size=30,
    ),
)
def test_undoing_and_redoing_one_like_never_nets_more_than_one_grant(
    network: str, toggles: list[tuple[bool, int]]
) -> None:
    """A like, then any run of unlikes and re-likes (each a new snapshot, so a new
    event id; repeats of the same state included), across periods."""
    at = START
    pipeline = Pipeline().feed([build((network, "11", "M1"), "link", at)])
    linked = len(pipeline.sent)
    at += timedelta(minutes=5)
    pipeline.feed([build((network, "11", "M1"), "like", at, post=7)])
    grant = net_points(pipeline.sent[linked:])
    first_grant_ids = set(pipeline.ids()[linked:])
    assert grant > 0
    for like, minutes in toggles:
        at += timedelta(minutes=minutes)
        pipeline.feed([build((network, "11", "M1"), "like" if like else "unlike", at, post=7)])
        net = net_points([c for c in pipeline.sent if c.offer_id != "link-profile"])
        assert 0 <= net <= grant, f"net {net} after {toggles}, one grant is {grant}"
    accrued = [c for c in pipeline.sent if c.kind is CommandKind.BONUS_ACCRUE]
    assert {c.command_id for c in accrued if c.offer_id != "link-profile"} <= first_grant_ids
    assert_each_once(pipeline.ids())
