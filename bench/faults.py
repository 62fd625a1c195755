"""``./run bench faults``: the fault matrix of ``services/ops/fault_drill.py`` on a
private stack of its own, one row per fault: events sent, bonus commands, ledger
entries, what was lost, duplicated or dead-lettered, seconds until each service's
``/readyz`` said false after the fault and true after the heal, and the HTTP
statuses the ledger and read-model APIs answered meanwhile.

Ports are settings: ``FAULTS_KAFKA_PORT`` (29292; the controller +1, Toxiproxy +10
to +13), ``FAULTS_POSTGRES_PORT`` (55632) and ``FAULTS_SERVICE_PORT_OFFSET`` (22000,
added to every service's default port), so it runs beside the test suite's stacks.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from deploy import localstack
from services.ops.fault_drill import FaultDrill, FaultReport, matrix
from services.ops.system import Ports


def _readiness(report: FaultReport) -> str:
    parts = []
    for service, (down, up) in sorted(report.readiness.items()):
        if down is not None:
            parts.append(f"{service} {down:g}/{'-' if up is None else f'{up:g}'}")
    return ", ".join(parts) or "stayed ready"


def run() -> list[dict[str, object]]:
    kafka_port = int(os.environ.get("FAULTS_KAFKA_PORT", "29292"))
    stack_ports = localstack.Ports(
        kafka=kafka_port,
        controller=kafka_port + 1,
        postgres=int(os.environ.get("FAULTS_POSTGRES_PORT", "55632")),
    )
    os.environ["SL_PORT_OFFSET"] = os.environ.get("FAULTS_SERVICE_PORT_OFFSET", "22000")
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="sl-bench-faults-") as tmp:
        Path(tmp).chmod(0o755)  # the stack's PostgreSQL runs as a user of its own
        stack_dir = Path(tmp) / "stack"
        env = localstack.start_private_stack(stack_dir, stack_ports, proxy=True)
        try:
            proxy = localstack.proxy_endpoints(stack_dir)
            drill = FaultDrill(
                env, proxy.kafka_bootstrap, proxy.postgres_url(), Path(tmp) / "drill",
                ports=Ports.from_env(),
            )  # fmt: skip
            drill.start()
            try:
                for fault in matrix(stack_dir, env["DATABASE_URL"]):
                    report = drill.run(fault)
                    print(f"  {report.fault}: {'exact' if report.exact else 'NOT EXACT'}",
                          flush=True)  # fmt: skip
                    rows.append(
                        {
                            "fault": report.fault,
                            "events": report.events,
                            "commands": report.commands,
                            "ledger": report.ledger_entries,
                            "lost": report.lost,
                            "dup": report.duplicated,
                            "dead": report.dead_lettered,
                            "settle s": report.settle_s,
                            "readyz false/true s": _readiness(report),
                            "still not ready": "; ".join(
                                f"{k}: {v}" for k, v in report.not_ready_after.items()
                            )
                            or "-",
                            "HTTP": " ".join(
                                f"{k}x{v}" for k, v in sorted(report.statuses.items())
                            ),
                        }
                    )
            finally:
                drill.stop()
        finally:
            localstack.stop_stack(stack_dir)
    return rows
