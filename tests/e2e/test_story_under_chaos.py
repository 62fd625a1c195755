"""The story again while services are killed with -9 and the broker restarts once (runs last).

The end state must equal the undisturbed run's: the same balances, the same
events on the log (by type, user and post), each welcome message sent once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.story_check import check_ledger, check_story, run_demo


@pytest.mark.chaos
@pytest.mark.timeout(1300)
@pytest.mark.usefixtures("kafka_bootstrap", "database_url")
def test_the_story_survives_kill_minus_nine_and_a_broker_restart(tmp_path: Path) -> None:
    result = run_demo(tmp_path, "--chaos-seed", "20261125", "--step-timeout", "240", timeout_s=1200)
    check_story(result)
    check_ledger(result)
    chaos = result["chaos"]
    assert set(chaos["kills"]) == set(chaos["victims"]), chaos  # every service died
    assert len(chaos["victims"]) >= 7, chaos
    assert chaos["broker_restarts"] == 1, chaos
