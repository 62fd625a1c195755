"""The compose file publishes nothing that needn't be and carries no password."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[3] / "deploy" / "docker-compose.yml"
REFERENCE = re.compile(r"\$\{[A-Z_]+:\?[^}]+\}")


def services() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    services: dict[str, Any] = loaded["services"]
    return services


def test_published_ports_are_on_loopback_only_and_never_kafka_or_postgres() -> None:
    for name, svc in services().items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert "ports" not in services()["kafka"]
    assert "ports" not in services()["postgres"]


def test_no_password_has_a_default() -> None:
    for name, svc in services().items():
        env = svc.get("environment") or {}
        for key, value in env.items():
            if "PASSWORD" in key or key == "DATABASE_URL":
                text = str(value)
                if key == "DATABASE_URL":
                    userinfo = text.split("@", 1)[0].split("://", 1)[1]
                    text = userinfo.split(":", 1)[1] if ":" in userinfo else ""
                assert REFERENCE.fullmatch(text), (name, key, "a literal or optional secret")
