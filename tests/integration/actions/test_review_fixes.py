"""Regressions from review: quiet-hours sends re-check the subscription, run under
steady traffic and never strand rows on a template error; replayed MailingSet
commands change no subscription; undelivered outbox rows go out while running."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.contracts.models import (
    Channel,
    CounterChanged,
    MessageFailed,
    MessageSent,
    SubscriptionChanged,
)
from services.contracts.topics import COMMANDS_NOTIFY, OUTCOMES
from tests.integration.actions.conftest import ActionsEnv, mailing, message, wait_for

ZONE = "Asia/Vladivostok"


def _quiet_for(env: ActionsEnv, seconds: float, **overrides: Any) -> tuple[Any, datetime]:
    """Settings whose quiet window started 5 minutes ago and ends in ``seconds``."""
    now = datetime.now(ZoneInfo(ZONE))
    end = now + timedelta(seconds=seconds)
    settings = env.settings(
        timezone=ZONE,
        quiet_start=(now - timedelta(minutes=5)).time().replace(microsecond=0),
        quiet_end=end.time().replace(microsecond=0),
        scheduler_interval_s=0.3,
        **overrides,
    )
    return settings, end


def test_a_member_who_opts_out_during_quiet_hours_gets_no_delayed_marketing(
    env: ActionsEnv,
) -> None:
    settings, _ = _quiet_for(env, 6)
    env.send(message("una", Channel.SMS, marketing=True, cid="held-out"))
    env.send(message("una", Channel.PUSH, marketing=True, cid="held-in"))
    env.start(settings, ("notify", "mailing"))
    wait_for(
        lambda: env.scalar("SELECT count(*) FROM deliveries WHERE status = 'scheduled'") == 2,
        "both held for quiet hours",
    )
    env.send(mailing("una", Channel.SMS, False))
    wait_for(lambda: env.scalar("SELECT count(*) FROM subscriptions") == 1, "the opt-out")
    wait_for(
        lambda: env.scalar("SELECT status FROM deliveries WHERE command_id = 'held-in'") == "sent",
        "the still-subscribed channel's message",
        30,
    )
    wait_for(
        lambda: (
            env.scalar("SELECT status FROM deliveries WHERE command_id = 'held-out'")
            == "suppressed"
        ),
        "the opted-out message suppressed",
        30,
    )
    assert [m["key"] for m in env.sinks.log.messages()] == ["held-in"]


def test_delayed_messages_go_out_under_steady_traffic(env: ActionsEnv) -> None:
    settings, _ = _quiet_for(env, 4)
    env.send(message("vera", Channel.PUSH, marketing=True, cid="held"))
    env.start(settings, ("notify",))
    wait_for(
        lambda: env.scalar("SELECT status FROM deliveries WHERE command_id = 'held'"),
        "the held message",
    )
    done = threading.Event()

    def trickle() -> None:  # a steady stream: every poll returns something
        while not done.is_set():
            env.send(message("walt", Channel.PUSH, cid=uuid.uuid4().hex))
            done.wait(0.05)

    feeder = threading.Thread(target=trickle, daemon=True)
    feeder.start()
    try:
        wait_for(
            lambda: env.scalar("SELECT status FROM deliveries WHERE command_id = 'held'") == "sent",
            "the delayed message despite traffic",
            30,
        )
    finally:
        done.set()
        feeder.join(30)
    assert [m["key"] for m in env.sinks.log.messages()].count("held") == 1


def test_a_delayed_message_whose_template_vanished_fails_cleanly(env: ActionsEnv) -> None:
    env.start(env.settings(scheduler_interval_s=0.3), ("notify",))
    wait_for(lambda: env.scalar("SELECT count(*) FROM deliveries") == 0, "the schema")
    held = message("xena", Channel.PUSH, marketing=True, cid="gone-tpl", template="retired")
    topic = env.topic(COMMANDS_NOTIFY)
    env.query(
        "INSERT INTO deliveries (command_id, member_id, channel, template_id, params, marketing, "
        "status, send_after, reason, source_topic, source_partition, source_offset, raw_key, "
        "raw_value) VALUES ('gone-tpl', 'xena', 'push', 'retired', '{}', true, 'scheduled', "
        "now() - interval '1 second', 'quiet hours', %s, 0, 7, %s, %s) RETURNING command_id",
        topic,
        b"xena",
        env.codec.encode(held, topic),
    )
    wait_for(
        lambda: (
            env.scalar("SELECT status FROM deliveries WHERE command_id = 'gone-tpl'") == "failed"
        ),
        "the row settled as failed",
        30,
    )
    failed = wait_for(
        lambda: [o for o in env.outcomes() if isinstance(o, MessageFailed)], "MessageFailed"
    )
    assert [(o.command_id, o.attempts) for o in failed] == [("gone-tpl", 0)]
    letters = wait_for(env.dead_letters, "the dead letter")
    assert "unknown template 'retired'" in letters[0].reason
    assert env.sinks.log.messages() == []
    # the consumer is still healthy: the next message goes out
    env.send(message("xena", Channel.PUSH, cid="after"))
    wait_for(lambda: [m["key"] for m in env.sinks.log.messages()] == ["after"], "next message")


def test_a_replayed_mailing_set_changes_no_subscription(env: ActionsEnv) -> None:
    env.start(env.settings(), ("mailing",))
    env.send(mailing("yuri", Channel.EMAIL, True, cid="on"))
    wait_for(lambda: env.scalar("SELECT count(*) FROM applied_commands") == 1, "subscribed")
    env.send(mailing("yuri", Channel.EMAIL, False, cid="off"))
    wait_for(lambda: env.scalar("SELECT count(*) FROM applied_commands") == 2, "opted out")
    replayed = mailing("yuri", Channel.EMAIL, True, cid="on-again").model_copy(
        update={"replay": True}
    )
    env.send(replayed)
    wait_for(
        lambda: env.scalar("SELECT count(*) FROM skipped_commands WHERE command_id = 'on-again'"),
        "the replay recorded as skipped",
    )
    assert env.scalar("SELECT enabled FROM subscriptions WHERE member_id = 'yuri'") is False
    assert env.scalar("SELECT reason FROM skipped_commands") == "replay"
    changed = [o for o in env.outcomes() if isinstance(o, SubscriptionChanged)]
    assert sorted(o.command_id for o in changed) == ["off", "on"]


def test_an_undelivered_outbox_row_is_published_while_running(env: ActionsEnv) -> None:
    settings = env.settings(scheduler_interval_s=0.3, outbox_retry_after_s=1.0)
    env.start(settings, ("counter",))
    wait_for(lambda: env.scalar("SELECT count(*) FROM outbox") == 0, "the schema")
    topic = env.topic(OUTCOMES)
    stranded = CounterChanged(
        command_id="stranded",
        member_id="zoe",
        occurred_at=datetime.now(UTC),
        name="likes",
        by=1,
        value=1,
    )
    env.query(
        "INSERT INTO outbox (source, topic, key, value, created_at) "
        "VALUES (%s, %s, %s, %s, now() - interval '1 minute') RETURNING id",
        settings.group("counter"),
        topic,
        b"zoe",
        env.codec.encode(stranded, topic),
    )
    found = wait_for(env.outcomes, "the stranded outcome published", 30)
    assert [o.command_id for o in found] == ["stranded"]
    wait_for(lambda: env.scalar("SELECT count(*) FROM outbox") == 0, "the row deleted", 30)
    assert not [o for o in found if isinstance(o, MessageSent)]
