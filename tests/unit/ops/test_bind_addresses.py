"""Every service binds 127.0.0.1 unless told otherwise (docs/security.md)."""

from __future__ import annotations

import os

import pytest
from pydantic_settings import BaseSettings

from services.actions.settings import ActionsSettings
from services.collector.settings import CollectorSettings
from services.detector.settings import DetectorSettings
from services.lagmonitor.settings import LagMonitorSettings
from services.ops.system import Ports
from services.rules.settings import RulesSettings
from services.simulator.settings import SimulatorSettings

SETTINGS: list[type[BaseSettings]] = [
    ActionsSettings,
    CollectorSettings,
    DetectorSettings,
    LagMonitorSettings,
    RulesSettings,
    SimulatorSettings,
]
WHERE_TO_SEND = {"smtp_host"}  # an address the service connects to, not one it binds


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: s.__name__)
def test_every_bind_address_defaults_to_loopback(
    settings: type[BaseSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.endswith("HOST"):
            monkeypatch.delenv(key)
    hosts = {
        name: getattr(settings(), name)
        for name in settings.model_fields
        if name.endswith("host") and name not in WHERE_TO_SEND
    }
    assert hosts, f"{settings.__name__} has no bind address field"
    assert set(hosts.values()) == {"127.0.0.1"}, hosts


def test_the_system_ports_move_together_by_an_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SL_PORT_OFFSET", "20000")
    moved = Ports.from_env()
    assert (moved.simulator, moved.lagmonitor, moved.rules) == (28081, 29308, 26067)
    monkeypatch.setenv("SL_PORT_OFFSET", "lots")
    with pytest.raises(ValueError, match="SL_PORT_OFFSET must be a number"):
        Ports.from_env()
    monkeypatch.setenv("SL_PORT_OFFSET", "30000")  # service ports in the ephemeral range
    with pytest.raises(ValueError, match="between 0 and 23000"):
        Ports.from_env()
    monkeypatch.delenv("SL_PORT_OFFSET")
    assert Ports.from_env() == Ports()
