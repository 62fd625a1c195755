"""``python -m services.rules bench``: how fast the pure engine is, over a realistic event mix.

The mix (``event_mix``) is what ``social.events`` carries, as the detector writes it:
members who linked a VK profile and often an OK one too (some at registration, some
after a while of unlinked activity, a few unlinking later), social users who never
link, and their likes, unlikes, like-unlike-like on one post, comments and deleted
comments, group joins and leaves, reposts and deleted reposts, spread over four
months in the detector's 15-minute snapshot ticks. ``bench/rules.py`` feeds the same
mix through Kafka, so the pure figure and the Kafka-to-Kafka figures describe the
same events. No Kafka, no PostgreSQL here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from services.contracts import models as m
from services.rules.engine import CommandSpec, RuleEvent
from services.rules.offer_store import EXAMPLES_DIR
from services.rules.offers import Offer, load_offer, load_offer_dir
from services.rules.processing import MemberLink, MemberRecord, link_key, process, resolve

START = datetime(2025, 3, 1, tzinfo=UTC)
TICK = timedelta(minutes=15)
"""The detector's snapshot cadence: every event of a run carries its snapshot time."""
SPAN_TICKS = 122 * 96
"""March to June: every monthly and weekly limit of the example offers resets a few times."""
VK_GROUP = 1001  # the group join-group.yaml rewards
OK_GROUP = 52000000000001  # the group leave-group-penalty.yaml penalises
POSTS_PER_DAY = 6
RECENT_POSTS = 30
TZ = ZoneInfo("Europe/Moscow")  # the worker's default RULES_TIMEZONE


@dataclass
class _Profile:
    """One social profile's activity as it is generated (what it liked, commented...)."""

    network: str
    user: str
    group: int
    member: str | None
    registration: bool = False
    liked: set[int] = field(default_factory=set)
    unliked: set[int] = field(default_factory=set)
    comments: list[tuple[int, str]] = field(default_factory=list)
    reposts: set[int] = field(default_factory=set)
    joined: bool = False


def _recent_post(rng: random.Random, tick: int) -> int:
    latest = (tick // 96 + 1) * POSTS_PER_DAY
    return max(1, latest - rng.randrange(RECENT_POSTS))


def _activity(  # noqa: PLR0911  (one return per kind of action)
    rng: random.Random, p: _Profile, tick: int, n: int
) -> m.DomainEvent:
    """One action of ``p`` at ``tick`` (its ``n``-th), given what it did before."""
    liked, unliked, comments, reposts = p.liked, p.unliked, p.comments, p.reposts
    at = START + tick * TICK
    common = {
        "network": p.network,
        "group_id": p.group,
        "social_user_id": p.user,
        "observed_at": at + timedelta(seconds=20),
        "snapshot_at": at,
        "previous_snapshot_at": at - TICK,
    }
    r = rng.random()
    if r < 0.12 and liked:
        post = rng.choice(sorted(liked))
        liked.discard(post)
        unliked.add(post)
        return m.PostUnliked.build(**common, post_id=post)
    if r < 0.17 and unliked:  # like-unlike-like: the same post liked again
        post = rng.choice(sorted(unliked))
        unliked.discard(post)
        liked.add(post)
        return m.PostLiked.build(**common, post_id=post)
    if r < 0.30:
        post = _recent_post(rng, tick)
        comment = f"{post}_{p.user}_{n}"
        comments.append((post, comment))
        return m.CommentPosted.build(**common, post_id=post, comment_id=comment)
    if r < 0.34 and comments:
        post, comment = comments.pop(rng.randrange(len(comments)))
        return m.CommentDeleted.build(**common, post_id=post, comment_id=comment)
    if r < 0.42:
        p.joined = not p.joined
        return (m.GroupJoined if p.joined else m.GroupLeft).build(**common)
    if r < 0.47 and p.network == "vk":
        post = _recent_post(rng, tick)
        if post not in reposts:
            reposts.add(post)
            return m.PostReposted.build(**common, post_id=post)
    if r < 0.49 and reposts:
        post = rng.choice(sorted(reposts))
        reposts.discard(post)
        return m.RepostDeleted.build(**common, post_id=post)
    post = _recent_post(rng, tick)
    while post in liked or post in unliked:
        post += 1
    liked.add(post)
    return m.PostLiked.build(**common, post_id=post)


def _link(
    model: type[m.ProfileLinked | m.ProfileUnlinked], p: _Profile, tick: int
) -> m.DomainEvent:
    at = START + tick * TICK
    assert p.member is not None
    return model.build(
        network=p.network,
        social_user_id=p.user,
        member_id=p.member,
        registration=p.registration,
        observed_at=at,
        snapshot_at=at,
    )


def _profile_events(
    rng: random.Random, p: _Profile, actions: int
) -> list[tuple[int, m.DomainEvent]]:
    """The profile's events with their ticks, in order: its link, activity, maybe an unlink."""
    p.liked, p.unliked, p.comments, p.reposts, p.joined = set(), set(), [], set(), False
    ticks = sorted(rng.sample(range(1, SPAN_TICKS), actions + 2))
    out: list[tuple[int, m.DomainEvent]] = []
    link_at = unlink_at = -1
    if p.member is not None:
        # A quarter link after some unlinked activity (it earns nothing); a few unlink later.
        link_at = ticks[0] if rng.random() < 0.75 else ticks[len(ticks) // 3]
        if rng.random() < 0.04:
            unlink_at = ticks[-1 - len(ticks) // 5]
    for n, tick in enumerate(ticks):
        if tick == link_at:
            out.append((tick, _link(m.ProfileLinked, p, tick)))
        elif tick == unlink_at:
            out.append((tick, _link(m.ProfileUnlinked, p, tick)))
        else:
            out.append((tick, _activity(rng, p, tick, n)))
    return out


def event_mix(count: int, *, members: int | None = None, seed: int = 14) -> list[m.DomainEvent]:
    """At least ``count`` events of ``members`` members (default ``count // 40``) and the
    unlinked users beside them, in snapshot order; the same arguments give the same events."""
    members = members or max(1, count // 40)
    profiles: list[_Profile] = []
    rng = random.Random(seed)
    for i in range(members):
        member = f"M{i:06d}"
        registration = rng.random() < 0.1
        profiles.append(_Profile("vk", str(100_000 + i), VK_GROUP, member, registration))
        if rng.random() < 0.4:  # the same member's OK profile
            profiles.append(_Profile("ok", str(570_000_000 + i), OK_GROUP, member))
    for i in range(members // 4):  # social users who never link
        network, group = ("vk", VK_GROUP) if i % 3 else ("ok", OK_GROUP)
        profiles.append(_Profile(network, str(900_000 + i), group, None))
    average = max(1.0, count / len(profiles) - 2)  # each profile also has 2 more ticks
    while True:
        rng = random.Random(seed)
        timed: list[tuple[int, int, int, m.DomainEvent]] = []
        for index, profile in enumerate(profiles):
            actions = max(1, round(average * rng.uniform(0.5, 1.5)))
            for n, (tick, event) in enumerate(_profile_events(rng, profile, actions)):
                timed.append((tick, index, n, event))
        if len(timed) >= count:
            timed.sort(key=lambda t: t[:3])
            return [event for *_, event in timed]
        average *= count / len(timed) * 1.01


def resolve_all(events: Iterable[m.DomainEvent]) -> list[RuleEvent]:
    """The events of linked users as the engine sees them (``processing.resolve``)."""
    links: dict[str, MemberLink] = {}
    out: list[RuleEvent] = []
    for event in events:
        key = link_key(event)
        link, rule_event = resolve(links.get(key), event)
        if link is not None:
            links[key] = link
        if rule_event is not None:
            out.append(rule_event)
    return out


def run_process(
    offers: Sequence[Offer], events: Sequence[RuleEvent], *, tz: tzinfo = TZ
) -> tuple[float, list[tuple[CommandSpec, ...]]]:
    """Seconds ``process`` takes over ``events`` (each member's record threaded through),
    and the commands of each event."""
    records: dict[str, MemberRecord] = {}
    commands: list[tuple[CommandSpec, ...]] = []
    started = time.perf_counter()
    for event in events:
        record, specs = process(offers, records.get(event.member_id, MemberRecord()), event, tz=tz)
        records[event.member_id] = record
        commands.append(specs)
    return time.perf_counter() - started, commands


def example_offers(*names: str) -> list[Offer]:
    """The named example offers (``services/rules/examples/<name>.yaml``), or all of them."""
    if not names:
        return load_offer_dir(EXAMPLES_DIR)
    return [load_offer(EXAMPLES_DIR / f"{name}.yaml") for name in names]


def run(count: int = 100_000, members: int = 0, echo: Callable[[str], None] = print) -> None:
    """Print ``process``'s events/s over the mix, all example offers and likes-5-then-1 alone."""
    events = resolve_all(event_mix(count, members=members or None))
    for label, offers in (
        ("all example offers", example_offers()),
        ("likes-5-then-1", example_offers("likes-5-then-1")),
    ):
        seconds, commands = run_process(offers, events)
        total = sum(len(c) for c in commands)
        echo(f"process, {label}: {len(events) / seconds:,.0f} events/s "
             f"({len(events):,} resolved events, {total:,} commands)")  # fmt: skip
