"""The detector's app id names its internal topics, so its default follows the prefix."""

from __future__ import annotations

import pytest

from services.contracts.topics import TopicSettings, catalog
from services.detector.settings import DetectorSettings


def test_the_default_app_id_carries_the_topic_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DETECTOR_APP_ID", raising=False)
    monkeypatch.setenv("TOPIC_PREFIX", "p.")
    settings = DetectorSettings()
    assert settings.app_id == "p.social-loyalty.detector"
    names = {spec.name for spec in catalog(settings.topics)}
    assert f"{settings.app_id}-keys-changelog" in names  # what `topics ensure` creates


def test_an_explicit_app_id_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETECTOR_APP_ID", "mine")
    assert DetectorSettings().app_id == "mine"
    assert DetectorSettings(topics=TopicSettings(prefix="q.")).app_id == "mine"
    monkeypatch.delenv("DETECTOR_APP_ID")
    assert DetectorSettings(app_id="given").app_id == "given"
