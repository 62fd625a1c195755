"""The supervisor starts real processes, notices deaths, and stops everything."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from services.ops.supervisor import ServiceFailedError, ServiceSpec, Supervisor


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _web(name: str) -> ServiceSpec:
    port = _free_port()
    return ServiceSpec(
        name,
        ("http.server", str(port), "--bind", "127.0.0.1"),
        ready_url=f"http://127.0.0.1:{port}/",
        ready_timeout_s=30,
    )


def test_start_kill_revive_and_stop(tmp_path: Path) -> None:
    spec = _web("web")
    with Supervisor([spec], tmp_path) as supervisor:
        supervisor.start_all()
        assert httpx.get(spec.ready_url or "").status_code == 200
        supervisor.kill("web")
        assert supervisor.status()[0]["alive"] is False
        assert supervisor.restart_dead() == ["web"]
        supervisor.wait_ready("web")
        row = supervisor.status()[0]
        assert row["alive"] is True
        assert row["restarts"] == 1
    assert supervisor.status()[0]["alive"] is False
    assert "=== start" in (tmp_path / "web.log").read_text()


def test_a_service_that_dies_while_starting_is_reported_with_its_log(tmp_path: Path) -> None:
    broken = ServiceSpec("broken", ("no_such_module_here",), ready_url="http://127.0.0.1:9/")
    with Supervisor([broken], tmp_path) as supervisor, pytest.raises(ServiceFailedError) as info:
        supervisor.start_all()
    assert "No module named no_such_module_here" in str(info.value)
