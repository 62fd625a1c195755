"""Notifications, mailing and counters against a real broker, PostgreSQL and the
local SMTP / HTTP sinks."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.contracts.models import (
    Channel,
    CounterChanged,
    MessageFailed,
    MessageSent,
    SubscriptionChanged,
)
from services.contracts.topics import COMMANDS_NOTIFY
from tests.integration.actions.conftest import ActionsEnv, count, mailing, message, wait_for


def _at_least(found: list[Any], n: int) -> list[Any] | None:
    return found if len(found) >= n else None


def test_opted_out_member_gets_no_marketing_but_service_messages_and_duplicates_once(
    env: ActionsEnv,
) -> None:
    env.send(mailing("olga", Channel.SMS, False), mailing("olga", Channel.EMAIL, True))
    env.start(env.settings(), ("mailing", "notify"))
    wait_for(lambda: env.scalar("SELECT count(*) FROM subscriptions") == 2, "subscriptions")

    marketing_sms = message("olga", Channel.SMS, marketing=True, cid="m-sms")
    service_sms = message("olga", Channel.SMS, marketing=False, cid="s-sms")
    marketing_mail = message("olga", Channel.EMAIL, marketing=True, cid="m-mail")
    push = message("pavel", Channel.PUSH, cid="p-push")
    env.send(marketing_sms, service_sms, marketing_mail, marketing_mail, push, service_sms)
    wait_for(lambda: env.scalar("SELECT count(*) FROM deliveries") == 4, "four deliveries")
    wait_for(lambda: len(env.sinks.log.messages()) == 3, "three messages at the sinks")
    env.send(marketing_mail)  # a replay later: never sent again
    wait_for(
        lambda: (
            env.scalar(
                "SELECT sum(next_offset) FROM consumer_offsets WHERE topic LIKE %s", "%notify"
            )
            == 7
        ),
        "the replay consumed",
    )
    statuses = dict(env.query("SELECT command_id, status FROM deliveries"))
    assert statuses == {"m-sms": "suppressed", "s-sms": "sent", "m-mail": "sent", "p-push": "sent"}
    got = env.sinks.log.messages()
    assert sorted((m["channel"], m["key"]) for m in got) == [
        ("email", "m-mail"),
        ("push", "p-push"),
        ("sms", "s-sms"),
    ]
    mail = next(m for m in got if m["channel"] == "email")
    assert mail["subject"] == "Hello"
    assert "news for you" in mail["text"]
    assert mail["to"] == ["olga@members.loyalty.example"]

    outcomes = wait_for(lambda: _at_least(env.outcomes(), 5), "outcomes")
    sent = sorted(o.command_id for o in outcomes if isinstance(o, MessageSent))
    assert sent == ["m-mail", "p-push", "s-sms"]
    changed = [o for o in outcomes if isinstance(o, SubscriptionChanged)]
    assert len(changed) == 2


def test_flaky_provider_delivers_once_and_a_dead_provider_ends_in_the_dead_letter_topic(
    env: ActionsEnv,
) -> None:
    settings = env.settings(
        sms_url=f"{env.sinks.http_url}/flaky/3/sms",
        viber_url=f"{env.sinks.http_url}/down/viber",
        send_attempts=4,
    )
    env.send(message("rita", Channel.SMS, cid="flaky"), message("rita", Channel.VIBER, cid="gone"))
    env.send(message("rita", Channel.EMAIL, cid="bad-tpl", template="no-such-template"))
    env.start(settings, ("notify",))
    wait_for(
        lambda: (
            env.scalar("SELECT count(*) FROM deliveries WHERE status IN ('sent', 'failed')") == 3
        ),
        "all three settled",
    )
    rows = {r[0]: r[1:] for r in env.query("SELECT command_id, status, attempts FROM deliveries")}
    assert rows["flaky"] == ("sent", 4)
    assert rows["gone"] == ("failed", 4)
    assert rows["bad-tpl"] == ("failed", 0)
    assert [m["key"] for m in env.sinks.log.messages()] == ["flaky"]
    assert env.sinks.log.refused("flaky") == 3
    assert env.sinks.log.refused("gone") == 4

    letters = wait_for(lambda: _at_least(env.dead_letters(), 2), "two dead letters")
    reasons = {
        env.codec.decode(letter.value, letter.original_topic).command_id: letter.reason  # type: ignore[union-attr]
        for letter in letters
    }
    assert "HTTP 503" in reasons["gone"] and "after 4 attempts" in reasons["gone"]
    assert "unknown template 'no-such-template'" in reasons["bad-tpl"]
    failed = [
        o
        for o in wait_for(lambda: _at_least(env.outcomes(), 3), "outcomes")
        if isinstance(o, MessageFailed)
    ]
    assert sorted((o.command_id, o.attempts) for o in failed) == [("bad-tpl", 0), ("gone", 4)]


def test_counters_add_once_per_command(env: ActionsEnv) -> None:
    once = count("sam", "likes", 2, cid="k1")
    env.send(once, count("sam", "likes", 1), once, count("sam", "comments", 5), once)
    env.start(env.settings(), ("counter",))
    wait_for(lambda: env.scalar("SELECT count(*) FROM applied_commands") == 3, "three applied")
    assert dict(env.query("SELECT name, value FROM counters WHERE member_id='sam'")) == {
        "likes": 3,
        "comments": 5,
    }
    changed = wait_for(lambda: _at_least(env.outcomes(), 3), "outcomes")
    assert all(isinstance(o, CounterChanged) for o in changed)
    assert max(o.value for o in changed if o.name == "likes") == 3


def test_quiet_hours_delay_marketing_until_the_window_ends(env: ActionsEnv) -> None:
    zone = ZoneInfo("Asia/Vladivostok")
    now = datetime.now(zone)
    end = now + timedelta(seconds=4)
    settings = env.settings(
        timezone="Asia/Vladivostok",
        quiet_start=(now - timedelta(minutes=5)).time().replace(microsecond=0),
        quiet_end=end.time().replace(microsecond=0),
        scheduler_interval_s=0.3,
    )
    env.send(message("quinn", Channel.PUSH, marketing=True, cid="later"))
    env.send(message("quinn", Channel.PUSH, marketing=False, cid="now"))
    env.start(settings, ("notify",))
    wait_for(lambda: [m["key"] for m in env.sinks.log.messages()] == ["now"], "service message")
    assert env.scalar("SELECT status FROM deliveries WHERE command_id = 'later'") == "scheduled"
    wait_for(lambda: len(env.sinks.log.messages()) == 2, "the delayed message", 30)
    assert datetime.now(zone) >= end - timedelta(seconds=1)
    assert env.scalar("SELECT status FROM deliveries WHERE command_id = 'later'") == "sent"


def test_deadletters_cli_lists_them(env: ActionsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from services.actions.deadletters import deadletters_app

    env.send_raw(COMMANDS_NOTIFY, b"\xc3\x01garbage", key=b"zed")
    env.start(env.settings(), ("notify",))
    wait_for(env.dead_letters, "a dead letter")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", env.kafka.bootstrap_servers)
    monkeypatch.setenv("TOPIC_PREFIX", env.topics.prefix)
    result = CliRunner().invoke(deadletters_app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 1
    assert rows[0]["original_topic"] == env.topic(COMMANDS_NOTIFY)
    assert "truncated single-object header" in rows[0]["reason"]
    result = CliRunner().invoke(deadletters_app, ["redrive", "--id", "9:999"])
    assert result.exit_code == 1
