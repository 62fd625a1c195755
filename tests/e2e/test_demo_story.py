"""The README's first command, end to end: every service, the scripted story, exact balances."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.story_check import check_story, run_demo


@pytest.mark.timeout(1000)
@pytest.mark.usefixtures("kafka_bootstrap", "database_url")
def test_the_story_credits_exactly_what_the_offers_say(tmp_path: Path) -> None:
    result = run_demo(tmp_path, "--step-timeout", "240", timeout_s=900)
    check_story(result)
    assert result["event_deliveries"] >= len(result["events"])
