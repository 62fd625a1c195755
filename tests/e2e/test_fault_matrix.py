"""The fault matrix (issue 25): the whole system on a private stack of its own, with
events flowing, through faults of PostgreSQL, the broker and the network, one after
another; after each, the invariants are exact and readiness told the truth.

One of three brokers killed is the failover story's (``test_failover.py``)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from deploy import localstack
from services.ops.fault_drill import FaultDrill, FaultReport, matrix
from services.ops.system import Ports

STACK_PORTS = localstack.Ports(kafka=29192, controller=29193, postgres=55532)
SERVICE_PORT_OFFSET = 21000
NEEDS_POSTGRES = ("actions", "readmodel", "link", "rules-api")
NEEDS_KAFKA = ("actions", "readmodel", "rules", "detector", "link", "collector")


def _check_readiness(report: FaultReport, services: tuple[str, ...]) -> None:
    for service in services:
        went_false, came_back = report.readiness.get(service, (None, None))
        assert went_false is not None and went_false <= 5.0, (service, report)
        assert came_back is not None and came_back <= 30.0, (service, report)


@pytest.mark.chaos
@pytest.mark.timeout(1800)
@pytest.mark.usefixtures("kafka_bootstrap", "database_url")
def test_faults_of_postgres_the_broker_and_the_network_lose_nothing_and_hide_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SL_PORT_OFFSET", str(SERVICE_PORT_OFFSET))
    # Not under pytest's temporary root: pytest makes it 0700 again whenever a session
    # starts, and the stack's PostgreSQL runs as a user of its own that must reach it.
    stack_dir = Path(tempfile.mkdtemp(prefix="sl-fault-matrix-"))
    stack_dir.chmod(0o755)
    env = localstack.start_private_stack(stack_dir, STACK_PORTS, proxy=True)
    reports: list[FaultReport] = []
    try:
        proxy = localstack.proxy_endpoints(stack_dir)
        drill = FaultDrill(
            env, proxy.kafka_bootstrap, proxy.postgres_url(), tmp_path / "drill",
            ports=Ports.from_env(),
        )  # fmt: skip
        drill.start()
        try:
            for fault in matrix(stack_dir, env["DATABASE_URL"]):
                reports.append(drill.run(fault))
                print(reports[-1])
        finally:
            drill.stop()
    finally:
        localstack.stop_stack(stack_dir)
        shutil.rmtree(stack_dir, ignore_errors=True)
    assert len(reports) == 7
    assert sum(r.events for r in reports) >= 300
    for report in reports:
        assert report.exact, report
        assert report.server_errors == 0, report
        assert report.not_ready_after == {}, report  # everyone ready again after the heal
    by_name = {r.fault: r for r in reports}
    _check_readiness(by_name["PostgreSQL stopped 20 s"], NEEDS_POSTGRES)
    _check_readiness(by_name["the only broker SIGKILLed 20 s"], NEEDS_KAFKA)
    _check_readiness(by_name["the broker SIGSTOPped 30 s"], NEEDS_KAFKA)
