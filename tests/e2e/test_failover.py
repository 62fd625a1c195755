"""The story on three brokers with two workers of each stateful service, while the broker
that coordinates the rules workers' group is SIGKILLed (and later restarted) and one
worker of each service is killed and held down: the end state must equal the
undisturbed run's (balances, events, messages), with every ledger effect once."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.ops.localcluster import LocalCluster
from tests.e2e.story_check import check_ledger, check_story, run_demo

WORKERS = "rules=2,detector=2,actions=2,readmodel=2"


@pytest.mark.chaos
@pytest.mark.timeout(1300)
@pytest.mark.usefixtures("database_url")
def test_the_story_survives_losing_its_coordinating_broker_and_a_worker_of_each_service(
    three_broker_cluster: LocalCluster, tmp_path: Path
) -> None:
    result = run_demo(
        tmp_path,
        "--workers",
        WORKERS,
        "--failover",
        "--step-timeout",
        "240",
        env=three_broker_cluster.env,
        timeout_s=1200,
    )
    check_story(result)
    check_ledger(result)
    # not asserted yet: 30 s after a failover story the demo's lag monitor still showed
    # every group ERR (issue 26's closing note); the verdict is in the summary
    failover = result["failover"]
    assert failover["errors"] == [], failover
    assert failover["broker_roles"] == [
        "group coordinator",
        "transaction coordinator of demo.rules.local-1",
        "transaction coordinator of demo.rules.local-2",
    ], failover
    assert failover["broker_restarted"], failover
    killed = ["rules-2", "detector-2", "actions-2", "readmodel-2"]
    assert sorted(failover["workers_killed"]) == sorted(killed), failover
    assert sorted(failover["workers_restarted"]) == sorted(killed), failover
