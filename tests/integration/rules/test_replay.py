"""Replay over a recorded history in a real broker: dry-run, apply, apply again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql
from typer.testing import CliRunner

from services.actions.service import run
from services.actions.settings import ActionsSettings
from services.actions.sinks import free_port
from services.cli import app as cli
from services.contracts import models as m
from services.contracts.ids import command_id
from services.contracts.topics import COMMANDS_BONUS, EVENTS
from services.rules.offer_store import EXAMPLES_DIR
from services.rules.offers import load_offer
from services.rules.processing import MemberLink, MemberRecord, process, resolve
from services.rules.replay import run_replay
from services.rules.settings import RulesSettings
from services.runtime import kafka
from tests.integration.rules.harness import (
    CommandReader,
    Env,
    dead_letters,
    liked,
    linked,
    produce,
    produce_raw,
)

T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
NOW_MS = int(time.time() * 1000)
DAY_MS = 86_400_000


def _settings(env: Env) -> RulesSettings:
    return RulesSettings(
        kafka=env.kafka, database=env.database, topics=env.topics, db_schema=env.schema
    )


def _history(env: Env) -> list[m.DomainEvent]:
    """Links ten days ago, likes five days ago (before the window) and one day ago."""
    links: list[m.DomainEvent] = [linked("1", "M1", T0), linked("2", "M2", T0)]
    old = [liked("1", 100, T0 + timedelta(hours=1))]
    recent: list[m.DomainEvent] = [
        liked("1", p, T0 + timedelta(days=1, hours=p)) for p in (1, 2, 3)
    ]
    recent += [liked("2", 1, T0 + timedelta(days=1)), liked("3", 1, T0 + timedelta(days=1))]
    produce(env, links, timestamp_ms=NOW_MS - 10 * DAY_MS)
    produce(env, old, timestamp_ms=NOW_MS - 5 * DAY_MS)
    produce(env, recent, timestamp_ms=NOW_MS - DAY_MS)
    return recent


def test_replay_dry_run_reports_and_apply_twice_sends_the_same_ids(
    rules_env: Callable[[str], Env],
) -> None:
    env = rules_env("rules-replay")
    recent = _history(env)
    offer = load_offer(EXAMPLES_DIR / "likes-5-then-1.yaml")
    settings = _settings(env)
    start = datetime.fromtimestamp((NOW_MS - 2 * DAY_MS) / 1000, UTC)

    dry_ids: list[str] = []
    dry = run_replay(
        settings,
        offer,
        start=start,
        end=None,
        apply=False,
        notify=False,
        on_command=lambda c: dry_ids.append(c.command_id),
    )
    assert (dry.messages_read, dry.events_in_window, dry.unlinked) == (8, 5, 1)
    assert {k: v.accrued for k, v in dry.members.items()} == {"M1": 7, "M2": 5}

    # What the live engine would have sent for the same window (links resolved first).
    link_of = {"1": MemberLink("M1", T0), "2": MemberLink("M2", T0)}
    expected = set()
    records: dict[str, MemberRecord] = {}
    for event in recent:
        _, rule_event = resolve(link_of.get(event.social_user_id), event)
        if rule_event is None:
            continue
        record, specs = process(
            [offer], records.get(rule_event.member_id, MemberRecord()), rule_event, tz=settings.tz
        )
        records[rule_event.member_id] = record
        expected |= {spec.command_id for spec in specs}
    assert set(dry_ids) == expected
    assert dry.commands == len(dry_ids)

    reader = CommandReader(env)
    try:
        reader.poll(2.0)
        assert reader.received == []  # a dry run sends nothing
        first_ids: list[str] = []
        first = run_replay(
            settings,
            offer,
            start=start,
            end=None,
            apply=True,
            notify=False,
            on_command=lambda c: first_ids.append(c.command_id),
        )
        reader.until(lambda r: len(r) >= len(expected), "replayed commands")
        second_ids: list[str] = []
        second = run_replay(
            settings,
            offer,
            start=start,
            end=None,
            apply=True,
            notify=False,
            on_command=lambda c: second_ids.append(c.command_id),
        )
        reader.until(lambda r: len(r) >= 2 * len(expected), "second replay")
        assert set(first_ids) == expected
        assert second_ids == first_ids
        assert first.commands == second.commands == len(first_ids)
        assert reader.ids() == expected  # nothing new the second time: the ledger dedups
        assert all(r.command.replay and r.topic == COMMANDS_BONUS for r in reader.received)
        assert command_id(offer.id, recent[0].event_id, 0) in reader.ids()
    finally:
        reader.close()


def test_replay_cli_suppresses_messages_unless_notify(rules_env: Callable[[str], Env]) -> None:
    env = rules_env("rules-replay-cli")
    _history(env)
    store = env.store()
    offer = load_offer(EXAMPLES_DIR / "link-profile.yaml")
    store.create(offer.model_dump(mode="json"))  # inactive: replay tests it before it goes live
    runner = CliRunner()
    environ = env.environ()
    since = "2000-01-01T00:00:00+00:00"

    result = runner.invoke(
        cli, ["replay", "--offer", offer.id, "--from", since, "--dry-run"], env=environ
    )
    assert result.exit_code == 0, result.output
    assert "would send" in result.output
    assert "accrued 100" in result.output  # two members linked, 50 each

    reader = CommandReader(env)
    try:
        args = ["replay", "--offer", offer.id, "--from", since, "--apply"]
        assert runner.invoke(cli, args, env=environ).exit_code == 0
        reader.until(lambda r: len(r) >= 2, "quiet replay")
        assert not any(isinstance(r.command, m.SendMessage) for r in reader.received)
        assert runner.invoke(cli, [*args, "--notify"], env=environ).exit_code == 0
        reader.until(
            lambda r: sum(isinstance(x.command, m.SendMessage) for x in r) >= 2, "messages"
        )
    finally:
        reader.close()

    bad = runner.invoke(cli, ["replay", "--offer", offer.id, "--from", since], env=environ)
    assert bad.exit_code != 0
    assert "exactly one of --dry-run or --apply" in bad.output


def test_replay_apply_refuses_a_window_the_live_offer_covered(
    rules_env: Callable[[str], Env],
) -> None:
    env = rules_env("rules-replay-live")
    _history(env)
    store = env.store()
    offer = load_offer(EXAMPLES_DIR / "link-profile.yaml")
    store.create(offer.model_dump(mode="json"))
    assert store.live_periods(offer.id) == []  # never active
    store.set_active(offer.id, True)
    store.set_active(offer.id, True)  # no change, nothing recorded
    (live,) = store.live_periods(offer.id)
    assert (live.until, live.version) == (None, 1)
    runner = CliRunner()
    environ = env.environ()
    args = ["replay", "--offer", offer.id, "--from", "2000-01-01T00:00:00+00:00"]

    refused = runner.invoke(cli, [*args, "--apply"], env=environ)
    assert refused.exit_code == 2, refused.output
    assert "has been active live" in refused.output
    assert f"--to {live.since.isoformat()}" in refused.output
    assert runner.invoke(cli, [*args, "--dry-run"], env=environ).exit_code == 0  # sends nothing

    reader = CommandReader(env)
    try:
        up_to_activation = [*args, "--to", live.since.isoformat(), "--apply"]
        result = runner.invoke(cli, up_to_activation, env=environ)
        assert result.exit_code == 0, result.output
        reader.until(lambda r: len(r) >= 2, "replay up to the activation")
        forced = runner.invoke(cli, [*args, "--apply", "--force"], env=environ)
        assert forced.exit_code == 0, forced.output
        reader.until(lambda r: len(r) >= 4, "forced replay")
    finally:
        reader.close()

    store.set_active(offer.id, False)
    (ended,) = store.live_periods(offer.id)
    assert ended.since == live.since and ended.until is not None


def test_replay_apply_dead_letters_an_unreadable_record_and_goes_on(
    rules_env: Callable[[str], Env],
) -> None:
    """A record that cannot be read is dead-lettered (with the replay's group) and the
    next record on the same partition is replayed; a dry-run writes no dead letter."""
    env = rules_env("rules-replay-dlq")
    offer = load_offer(EXAMPLES_DIR / "likes-5-then-1.yaml")
    link = linked("1", "M1", T0)
    after = liked("1", 7, T0 + timedelta(hours=1))
    key = link.key().to_bytes()  # the same user: the same partition, in this order
    produce(env, [link])
    produce_raw(env, key, b"\xc3\x01 not an event")
    produce(env, [after])
    settings = _settings(env)
    start = datetime(2000, 1, 1, tzinfo=UTC)

    dry = run_replay(settings, offer, start=start, end=None, apply=False, notify=False)
    assert (dry.messages_read, dry.undecodable, dry.commands) == (3, 1, 1)

    applied = run_replay(settings, offer, start=start, end=None, apply=True, notify=False)
    assert (applied.undecodable, applied.commands) == (1, 1)
    (letter,) = dead_letters(env, 1)  # only the apply wrote one
    assert letter.original_topic == env.topics.name(EVENTS)
    assert letter.original_offset == 1
    assert letter.value == b"\xc3\x01 not an event"
    assert letter.consumer_group is not None and ".replay.likes-5-then-1." in letter.consumer_group
    reader = CommandReader(env)
    try:
        (got,) = reader.until(lambda r: len(r) >= 1, "the like after the bad record")
        assert got.command.source_event_id == after.event_id
    finally:
        reader.close()


def test_replay_cli_plans_reports_new_and_already_applied_credits_and_leaves_no_group(
    rules_env: Callable[[str], Env],
) -> None:
    """The operator's view of two ``--apply`` runs with the ledger running: the plan
    first, then what the ledger applied as new (the first time) and what it already
    had (the second), and no replay consumer group left behind."""
    env = rules_env("rules-replay-ledger")
    _history(env)
    offer = load_offer(EXAMPLES_DIR / "likes-5-then-1.yaml")
    env.store().create(offer.model_dump(mode="json"))
    ledger = f"{env.schema}_ledger"
    actions = ActionsSettings(
        kafka=env.kafka,
        database=env.database,
        topics=env.topics,
        db_schema=ledger,
        group_prefix=f"{env.app_id}.actions",
        port=free_port(),
        host="127.0.0.1",
        poll_timeout_s=0.2,
        session_timeout_ms=6000,
    )
    stop = threading.Event()
    worker = threading.Thread(target=run, args=(actions, ("bonus",)), kwargs={"stop": stop})
    worker.start()
    runner = CliRunner()
    environ = env.environ(RULES_LEDGER_SCHEMA=ledger)
    since = datetime.fromtimestamp((NOW_MS - 2 * DAY_MS) / 1000, UTC).isoformat()
    args = ["replay", "--offer", offer.id, "--from", since, "--apply", "--ledger-timeout", "60"]
    try:
        first = runner.invoke(cli, args, env=environ)
        assert first.exit_code == 0, first.output
        assert f"replay {offer.id}: window {since} .. now" in first.stderr
        assert "consumer group " + env.topics.name("social-loyalty.replay.") in first.stderr
        assert "partition 0: links from 0, window " in first.stderr
        assert "ledger: 4 new entries (credited 12, deducted 0), 0 already applied" in first.stdout

        second = runner.invoke(cli, args, env=environ)
        assert second.exit_code == 0, second.output
        assert "ledger: 0 new entries (credited 0, deducted 0), 4 already applied" in (
            second.stdout
        )
        assert "records read" in second.stderr  # progress lines off a terminal
    finally:
        stop.set()
        worker.join(60)
        with psycopg.connect(env.database.database_url.get_secret_value(), autocommit=True) as c:
            c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(ledger)))
    groups = kafka.admin(env.kafka).list_consumer_groups(request_timeout=30).result()
    left = [g.group_id for g in groups.valid if env.topics.prefix in g.group_id]
    assert not [g for g in left if ".replay." in g], left
