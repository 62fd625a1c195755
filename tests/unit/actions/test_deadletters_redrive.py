"""Redrive never writes a second copy into a log that other services read."""

from __future__ import annotations

from datetime import UTC, datetime

from services.actions.deadletters import refusal, shared_logs
from services.contracts.models import DeadLetter
from services.contracts.topics import COMMANDS_BONUS, EVENTS, SNAPSHOTS, TopicSettings


def test_social_events_is_shared_and_the_command_and_snapshot_topics_are_not() -> None:
    topics = TopicSettings(prefix="p.")
    shared = shared_logs(topics)
    assert "p." + EVENTS in shared
    assert "rules" in shared["p." + EVENTS]
    assert "p." + COMMANDS_BONUS not in shared
    assert "p." + SNAPSHOTS not in shared


def test_the_refusal_says_how_to_re_read_the_record_for_the_failing_group_only() -> None:
    letter = DeadLetter(
        original_topic=EVENTS,
        original_partition=3,
        original_offset=41,
        key=b"vk:1",
        value=b"x",
        error_class="builtins.ValueError",
        reason="bad",
        consumer_group="social-loyalty.rules",
        failed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    text = refusal(letter, ("rules", "read model"))
    assert "second copy" in text
    assert "--group social-loyalty.rules" in text
    assert f"--topic {EVENTS}:3 --to-offset 41" in text
