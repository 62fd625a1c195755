"""Several workers of a consuming service (``--workers``): names, ports, ids, logins."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.ops.system import Ports, parse_workers, service_specs


def _specs(tmp_path: Path, workers: dict[str, int]) -> dict[str, dict[str, str]]:
    specs = service_specs(
        prefix="t.",
        state_dir=tmp_path,
        groups_file=tmp_path / "groups.yaml",
        kafka_logins={name: (f"user-{name}", "pw") for name in ("rules", "detector", "actions")},
        workers=workers,
    )
    return {spec.name: {**spec.env, "ready": spec.ready_url or ""} for spec in specs}


def test_parse_workers() -> None:
    assert parse_workers("rules=2, detector=3,actions=1") == {
        "rules": 2,
        "detector": 3,
        "actions": 1,
    }
    assert parse_workers("") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules", "SERVICE=COUNT"),
        ("rules=two", "SERVICE=COUNT"),
        ("collector=2", "cannot run several workers"),
        ("rules-api=2", "cannot run several workers"),
        ("rules=0", "between 1 and"),
        ("rules=10", "between 1 and"),
    ],
)
def test_bad_workers_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_workers(text)


def test_each_worker_has_its_own_port_instance_and_state(tmp_path: Path) -> None:
    specs = _specs(tmp_path, {"rules": 2, "detector": 2, "actions": 2, "readmodel": 2})
    base = Ports()
    assert specs["rules"]["RULES_INSTANCE_ID"] == "local-1"
    assert specs["rules-2"]["RULES_INSTANCE_ID"] == "local-2"
    assert specs["rules-2"]["RULES_WORKER_HTTP_PORT"] == str(base.rules + 100)
    assert specs["rules-2"]["ready"] == f"http://127.0.0.1:{base.rules + 100}/readyz"
    assert specs["rules-2"]["RULES_APP_ID"] == specs["rules"]["RULES_APP_ID"]  # one group
    assert specs["actions-2"]["ACTIONS_INSTANCE_ID"] == "local-2"
    assert specs["actions-2"]["ACTIONS_PORT"] == str(base.actions + 100)
    assert specs["detector"]["DETECTOR_DATA_DIR"] == str(tmp_path / "detector")
    assert specs["detector-2"]["DETECTOR_DATA_DIR"] == str(tmp_path / "detector-2")
    assert specs["readmodel-2"]["READMODEL_HTTP_PORT"] == str(base.readmodel + 100)
    # The siblings log in as their service; rules-api stays a service of its own.
    assert specs["rules-2"]["KAFKA_SASL_USERNAME"] == "user-rules"
    assert specs["detector-2"]["KAFKA_SASL_USERNAME"] == "user-detector"
    assert specs["rules-api"]["KAFKA_SASL_USERNAME"] == ""
    # Every HTTP port is distinct, and the lag monitor asks every worker.
    ports = [spec["ready"] for spec in specs.values()]
    assert len(ports) == len(set(ports))
    watched = specs["lagmonitor"]["LAGMONITOR_SERVICES"]
    assert f"rules-2=http://127.0.0.1:{base.rules + 100}" in watched.split(",")


def test_one_worker_is_the_system_as_it_was(tmp_path: Path) -> None:
    assert _specs(tmp_path, {}) == _specs(tmp_path, {"rules": 1})
    assert not any(name.endswith("-2") for name in _specs(tmp_path, {}))


def test_a_single_instance_service_cannot_be_scaled(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="collector"):
        _specs(tmp_path, {"collector": 2})
