"""Exactly once under SIGKILL and rebalances, and dead letters that never stall a partition.

The rules worker commits its commands, its state changelog and its input offsets in
one Kafka transaction. Whatever happens to the workers, the command topics read
``read_committed`` must then hold exactly the commands the pure path
(``resolve`` + ``process`` over the same events) gives, each id once: not "at
least", not "deduplicated downstream".
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.contracts import models as m
from services.contracts.ids import command_id
from services.contracts.topics import DEADLETTER
from services.rules.engine import EventType, RuleEvent
from services.rules.offer_store import EXAMPLES_DIR
from services.rules.offers import Offer, load_offer
from services.rules.processing import (
    MemberLink,
    MemberRecord,
    encode_rule_event,
    link_key,
    process,
    resolve,
)
from services.runtime import kafka
from services.runtime.settings import DatabaseSettings, KafkaSettings
from tests.integration.rules.harness import (
    CommandReader,
    Env,
    Worker,
    activate_examples,
    assigned_partitions,
    dead_letters,
    drop_env,
    kill_worker,
    make_sized_env,
    produce,
    produce_at,
    start_worker,
    wait_ready,
)

OFFERS = ("likes-5-then-1", "link-profile", "join-group", "leave-group-penalty",
          "registration-mailing")  # fmt: skip
"""Active in every test here. Order-independent across a member's two profiles: the
OK profile only links and joins/leaves the OK group, whose offers keep per-object
state, so the member's VK and OK events may interleave on the by-member topic in any
order and earn the same commands (``expected_ids`` checks that)."""

TZ = ZoneInfo("Europe/Moscow")  # RulesSettings' default, which the workers run with
START = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)
SPAN_S = 120 * 24 * 3600  # about four months: monthly limits roll over
VK_GROUP, OK_GROUP = 1001, 52000000000001  # the groups join-group / leave-group-penalty name
FAST = {  # a worker that commits often and whose failures are seen soon
    "RULES_COMMIT_INTERVAL_S": "0.2",
    "RULES_SESSION_TIMEOUT_S": "6",
    "RULES_TRANSACTION_TIMEOUT_S": "10",
}
FINAL_DEADLINE_S = 120.0


# ----------------------------------------------------------------------- events


def _link(network: str, user: str, member: str, at: datetime, *, on: bool, registration: bool
          ) -> m.DomainEvent:  # fmt: skip
    model: type[m.ProfileLinked | m.ProfileUnlinked] = m.ProfileLinked if on else m.ProfileUnlinked
    return model.build(network=network, social_user_id=user, member_id=member,
                       registration=registration, observed_at=at, snapshot_at=at)  # fmt: skip


def _activity(model: type[m.DomainEvent], network: str, user: str, at: datetime, **ids: int
              ) -> m.DomainEvent:  # fmt: skip
    return model.build(network=network, social_user_id=user, observed_at=at, snapshot_at=at,
                       previous_snapshot_at=at - timedelta(hours=1), **ids)  # fmt: skip


def profile_events(
    rng: random.Random, network: str, user: str, member: str | None, count: int
) -> list[m.DomainEvent]:
    """``count`` events of one social profile in snapshot order.

    A VK profile likes, unlikes and re-likes posts of group 1001 and joins and leaves
    it; an OK profile only joins and leaves the OK group. Either may act before its
    link (earns nothing), unlink and link again. ``member`` None: never linked.
    """
    times = sorted(rng.sample(range(SPAN_S), count))
    group = VK_GROUP if network == "vk" else OK_GROUP
    linked, ever_linked, joined = False, False, False
    liked: set[int] = set()
    events: list[m.DomainEvent] = []
    model: type[m.DomainEvent]
    for second in times:
        at = START + timedelta(seconds=second)
        roll = rng.random()
        if member is not None and not linked and ((not ever_linked and roll < 0.7) or roll < 0.15):
            events.append(_link(network, user, member, at, on=True,
                                registration=rng.random() < 0.1))  # fmt: skip
            linked = ever_linked = True
        elif member is not None and linked and roll < 0.02:
            events.append(_link(network, user, member, at, on=False, registration=False))
            linked = False
        elif network == "ok" or roll < 0.15:
            model = m.GroupLeft if joined else m.GroupJoined
            events.append(_activity(model, network, user, at, group_id=group))
            joined = not joined
        else:
            post = rng.randint(1, 25)
            if post in liked and rng.random() < 0.5:
                liked.discard(post)
                model = m.PostUnliked
            else:
                liked.add(post)  # a first like or a re-like
                model = m.PostLiked
            events.append(_activity(model, network, user, at, group_id=group, post_id=post))
    return events


def mixed_events(seed: int, members: int, *, per_vk: int, per_ok: int, strangers: int
                 ) -> list[m.DomainEvent]:  # fmt: skip
    """Every profile's events merged in snapshot order (per-user order kept): members
    with a VK profile, every fifth with an OK one too, and never-linked strangers."""
    rng = random.Random(seed)
    streams: list[list[m.DomainEvent]] = []
    for i in range(members):
        member = f"M{seed}-{i:04d}"
        streams.append(profile_events(rng, "vk", f"{seed}{i:04d}", member, per_vk))
        if i % 5 == 0:
            streams.append(profile_events(rng, "ok", f"{seed}{i:04d}", member, per_ok))
    for i in range(strangers):
        streams.append(profile_events(rng, "vk", f"{seed}9{i:04d}", None, 20))
    merged = [e for stream in streams for e in stream]
    merged.sort(key=lambda e: e.snapshot_at)  # stable: each stream's order is kept
    return merged


def _offers() -> list[Offer]:
    return [load_offer(EXAMPLES_DIR / f"{name}.yaml") for name in OFFERS]


def pure_ids(events: Iterable[m.DomainEvent], offers: Sequence[Offer]) -> list[str]:
    """The command ids of the pure path, in the order it emits them."""
    links: dict[str, MemberLink] = {}
    records: dict[str, MemberRecord] = {}
    ids: list[str] = []
    for event in events:
        key = link_key(event)
        new_link, rule_event = resolve(links.get(key), event)
        if new_link is None:
            links.pop(key, None)
        else:
            links[key] = new_link
        if rule_event is None:
            continue
        record = records.get(rule_event.member_id) or MemberRecord()
        records[rule_event.member_id], specs = process(offers, record, rule_event, tz=TZ)
        ids.extend(s.command_id for s in specs)
    return ids


def expected_ids(events: Sequence[m.DomainEvent]) -> set[str]:
    """What the worker must emit, whatever order a member's two profiles' events reach
    the by-member topic in (checked: all OK events first gives the same ids)."""
    offers = _offers()
    ids = pure_ids(events, offers)
    assert len(set(ids)) == len(ids)
    ok_first = sorted(events, key=lambda e: e.network.value != "ok")  # stable per user
    assert set(pure_ids(ok_first, offers)) == set(ids), "test events depend on interleaving"
    return set(ids)


def chunks(events: Sequence[m.DomainEvent], size: int) -> Iterator[Sequence[m.DomainEvent]]:
    for start in range(0, len(events), size):
        yield events[start : start + size]


# ---------------------------------------------------------------------- checking


def wait_for_all(reader: CommandReader, expected: set[str], workers: Sequence[Worker]) -> None:
    """Read until every expected id is in, then a little longer (a duplicate would be
    written before the last command of its partition)."""
    deadline = time.monotonic() + FINAL_DEADLINE_S
    while not expected <= reader.ids():
        for w in workers:
            assert w.process.poll() is None, f"worker died: {w.log.read_text()[-3000:]}"
        missing = len(expected - reader.ids())
        assert time.monotonic() < deadline, f"{missing} of {len(expected)} commands missing"
        reader.poll(0.3)
    quiet = time.monotonic() + 2.0
    while time.monotonic() < quiet:
        reader.poll(0.3)


def assert_exactly(reader: CommandReader, expected: set[str]) -> None:
    counts = Counter(r.command.command_id for r in reader.received)
    twice = {i: n for i, n in counts.items() if n > 1}
    extra = set(counts) - expected
    missing = expected - set(counts)
    assert not twice, f"{len(twice)} commands written more than once, e.g. {list(twice)[:5]}"
    assert not extra, f"{len(extra)} commands the pure path does not give, e.g. {list(extra)[:5]}"
    assert not missing, f"{len(missing)} commands missing, e.g. {list(missing)[:5]}"


def assert_no_dead_letters(env: Env) -> None:
    consumer = kafka.consumer(env.kafka, f"t.dlq.{uuid.uuid4().hex[:8]}")
    try:
        topic = env.topics.name(DEADLETTER)
        for partition in range(env.topics.partitions):
            _low, high = kafka.watermarks(consumer, topic, partition)
            assert high == 0, f"dead letters on {topic}[{partition}]"
    finally:
        consumer.close()


# ------------------------------------------------------------------------- tests


def test_worker_killed_again_and_again_emits_each_command_exactly_once(
    rules_env: Callable[[str], Env], tmp_path: Path
) -> None:
    """Ten SIGKILLs spread over the run: each once the restarted worker (same instance,
    so it fences its predecessor's open transaction) holds its partitions, has been
    given the next slice of events and has passed the next eleventh of the commands."""
    env = rules_env("rules-eos-kill")
    activate_examples(env, *OFFERS)
    events = mixed_events(14, 500, per_vk=34, per_ok=20, strangers=50)
    assert len(events) == 20_000
    expected = expected_ids(events)
    kills = 10
    backlog, rest = events[:4000], events[4000:]
    slices = list(chunks(rest, len(rest) // kills + 1))  # one per run, produced as it starts
    assert len(slices) == kills
    rng = random.Random(1414)
    reader = CommandReader(env)
    log = tmp_path / "worker.log"
    inputs = 2 * env.topics.partitions  # social.events and by-member
    produce(env, backlog)
    killed_at: list[int] = []
    w: Worker | None = None
    try:
        for k, part in enumerate(slices, start=1):
            threshold = len(expected) * k // (kills + 1)
            w = start_worker(env, log, instance="0", **FAST)
            _wait_assigned(w, inputs)
            produce(env, part)
            earliest = time.monotonic() + rng.uniform(0.2, 1.2)  # some work after start-up
            deadline = time.monotonic() + FINAL_DEADLINE_S
            while len(reader.received) < threshold or time.monotonic() < earliest:
                assert _alive(w)
                assert time.monotonic() < deadline, (
                    f"stuck at {len(reader.received)} of {threshold} commands: "
                    f"{log.read_text()[-3000:]}"
                )
                reader.poll(0.1)
            kill_worker(w)
            killed_at.append(len(reader.received))
        w = start_worker(env, log, instance="0", **FAST)
        wait_for_all(reader, expected, [w])
    finally:
        if w is not None:
            kill_worker(w)
        reader.close()
    assert_exactly(reader, expected)
    assert_no_dead_letters(env)
    assert len(killed_at) == kills
    assert all(count < len(expected) for count in killed_at), killed_at  # none after the end


def _alive(w: Worker) -> bool:
    assert w.process.poll() is None, f"worker died: {w.log.read_text()[-3000:]}"
    return True


def _wait_assigned(w: Worker, count: int) -> None:
    _wait(lambda: _alive(w) and assigned_partitions(w) == count, f"the worker holds {count}")


@pytest.fixture
def six_partitions(
    kafka_settings: KafkaSettings, database_settings: DatabaseSettings
) -> Iterator[Env]:
    """A world with six partitions per topic: enough for three workers to share."""
    env = make_sized_env(kafka_settings, database_settings, "rules-eos-rebalance", partitions=6)
    yield env
    drop_env(env)


def test_partitions_moving_between_workers_keep_each_command_exactly_once(
    six_partitions: Env, tmp_path: Path
) -> None:
    """Workers a and b share the inputs while events arrive in chunks; b is killed a
    third of the way in (a takes its partitions after the session timeout and restores
    their state from the changelog; the broker aborts what b had not committed at b's
    transaction timeout); c joins two thirds of the way in and takes some back."""
    env = six_partitions
    activate_examples(env, *OFFERS)
    events = mixed_events(6, 200, per_vk=30, per_ok=10, strangers=20)
    expected = expected_ids(events)
    parts = list(chunks(events, len(events) // 18 + 1))
    reader = CommandReader(env)
    inputs = 2 * env.topics.partitions  # social.events and by-member
    workers: dict[str, Worker] = {}
    try:
        for name in ("a", "b"):
            workers[name] = start_worker(
                env, tmp_path / f"worker-{name}.log", instance=name, **FAST
            )
        for w in workers.values():
            wait_ready(w)
        _wait(
            lambda: _assigned(workers, "a", "b") == (inputs, True),
            "a and b share the inputs",
            workers=workers,
        )
        for i, part in enumerate(parts):
            produce(env, part)
            if i == len(parts) // 3:
                kill_worker(workers["b"])
            elif i == 2 * len(parts) // 3:
                _wait(
                    lambda: assigned_partitions(workers["a"]) == inputs,
                    "a takes b's partitions",
                    workers=workers,
                )
                workers["c"] = start_worker(env, tmp_path / "worker-c.log", instance="c", **FAST)
            time.sleep(0.4)
        _wait(
            lambda: _assigned(workers, "a", "c") == (inputs, True),
            "c takes some back",
            timeout_s=90.0,
            workers=workers,
        )
        wait_for_all(reader, expected, [workers["a"], workers["c"]])
    finally:
        for w in workers.values():
            kill_worker(w)
        reader.close()
    assert_exactly(reader, expected)
    assert_no_dead_letters(env)


def _assigned(workers: dict[str, Worker], *names: str) -> tuple[int, bool]:
    """Total input partitions the named workers hold, and whether each holds some."""
    counts = [assigned_partitions(workers[n]) or 0 for n in names]
    return sum(counts), all(counts)


def _wait(
    done: Callable[[], bool],
    what: str,
    timeout_s: float = 60.0,
    workers: dict[str, Worker] | None = None,
) -> None:
    """Wait until ``done``; on timeout the message says where each of ``workers`` is
    (alive or not, partitions held, the end of its log)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting until {what}{_where(workers or {})}")
        time.sleep(0.2)


def _where(workers: dict[str, Worker]) -> str:
    return "".join(
        f"\n--- worker {name}: exit {w.process.poll()}, holds {assigned_partitions(w)}\n"
        + "\n".join(w.log.read_text(errors="replace").splitlines()[-40:])
        for name, w in workers.items()
    )


def test_a_record_the_member_handler_cannot_read_is_a_dead_letter_and_the_partition_goes_on(
    rules_env: Callable[[str], Env], tmp_path: Path
) -> None:
    env = rules_env("rules-eos-dlq")
    activate_examples(env, "link-profile")
    by_member = env.topics.name(f"{env.app_id}.by-member")
    partition = 1

    def link_of(member: str, minutes: int) -> RuleEvent:
        at = START + timedelta(minutes=minutes)
        user = str(7000 + minutes)  # a vk id is a positive integer
        event = _link("vk", user, member, at, on=True, registration=False)
        return RuleEvent(event_id=event.event_id, type=EventType.PROFILE_LINKED, network="vk",
                         social_user_id=user, member_id=member, occurred_at=at,
                         linked_at=at)  # fmt: skip

    good = [link_of(f"MD{i}", i) for i in range(3)]
    bad = [b"[]", b'{"x":1}']
    records = [
        (good[0].member_id.encode(), encode_rule_event(good[0])),
        (b"MD-bad", bad[0]),
        (good[1].member_id.encode(), encode_rule_event(good[1])),
        (b"MD-bad", bad[1]),
        (good[2].member_id.encode(), encode_rule_event(good[2])),
    ]
    reader = CommandReader(env)
    w = start_worker(env, tmp_path / "worker.log", instance="0", **FAST)
    try:
        wait_ready(w)
        offsets = produce_at(env, by_member, records, partition)
        wanted = {command_id("link-profile", e.event_id, 0) for e in good}
        reader.until(lambda _: wanted <= reader.ids(), "the good records' credits")
        letters = dead_letters(env, 2)
    finally:
        kill_worker(w)
        reader.close()
    got = sorted(
        (x.original_topic, x.original_partition, x.original_offset, x.value) for x in letters
    )
    assert got == [
        (by_member, partition, offsets[1], bad[0]),
        (by_member, partition, offsets[3], bad[1]),
    ]
    for letter in letters:
        assert letter.error_class == "builtins.ValueError", letter
        assert letter.reason, letter
        assert letter.key == b"MD-bad"
        assert letter.consumer_group == env.app_id
