"""Rules settings defaults that other services' defaults must not collide with."""

from __future__ import annotations

import pytest

from services.detector.settings import DetectorSettings
from services.rules.settings import RulesSettings


def test_worker_port_defaults_to_6067_not_the_detectors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RULES_WORKER_HTTP_PORT", raising=False)
    monkeypatch.delenv("DETECTOR_WORKER_PORT", raising=False)
    rules = RulesSettings().worker_http_port
    assert rules == 6067
    assert rules != DetectorSettings().worker_port  # both workers run on one host
