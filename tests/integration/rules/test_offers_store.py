"""Offers in PostgreSQL through the CLI and the HTTP API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from typer.testing import CliRunner, Result

from services.cli import app as cli
from services.rules.offer_store import EXAMPLES_DIR, OfferStore
from services.rules.offers_api import create_app
from services.rules.settings import RulesSettings
from services.runtime.access import AccessSettings, SignedAuth
from services.runtime.httpapi import serve_api_in_thread
from services.runtime.settings import DatabaseSettings


@pytest.fixture
def offers_cli(database_settings: DatabaseSettings, schema: str) -> Callable[..., Result]:
    """``social-loyalty offers ...`` against this test's schema."""
    env = {
        "DATABASE_URL": database_settings.database_url.get_secret_value(),
        "RULES_DB_SCHEMA": schema,
    }
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, ["offers", *args], env=env)


def test_offer_cli_round_trip(offers_cli: Callable[..., Result], tmp_path: Path) -> None:
    def run(*args: str) -> str:
        result = offers_cli(*args)
        assert result.exit_code == 0, result.output
        return result.output

    source = yaml.safe_load((EXAMPLES_DIR / "likes.yaml").read_text())
    first = tmp_path / "likes.yaml"
    first.write_text(yaml.safe_dump(source))
    assert "created likes v1 (inactive)" in run("create", str(first), "--author", "anna")
    source["reward"] = {"points": 2}
    second = tmp_path / "likes-v2.yaml"
    second.write_text(yaml.safe_dump(source))
    assert "updated likes to v2" in run("update", "likes", str(second), "--comment", "double")
    run("activate", "likes")

    shown = yaml.safe_load(run("show", "likes"))
    assert (shown["version"], shown["active"], shown["body"]["reward"]) == (2, True, {"points": 2})
    old = yaml.safe_load(run("show", "likes", "--version", "1"))
    assert (old["version"], old["author"], old["body"]["reward"]) == (1, "anna", {"points": 1})

    listed = yaml.safe_load(run("list", "--json"))
    assert [(o["id"], o["active"], o["current_version"]) for o in listed] == [("likes", True, 2)]
    run("deactivate", "likes")
    assert "created 8:" in run("load-examples")  # likes is there already
    assert len(yaml.safe_load(run("list", "--json"))) == 9

    source["reward"] = {"points": 0}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(source))
    result = offers_cli("update", "likes", str(bad))
    assert result.exit_code == 1
    assert "reward.points" in result.output
    missing = offers_cli("show", "nope")
    assert missing.exit_code == 1
    assert "no offer 'nope'" in missing.output


@contextmanager
def served(app: FastAPI, auth: httpx.Auth) -> Iterator[httpx.Client]:
    """The app on a real port (its lifespan run), and a client that signs."""
    server = serve_api_in_thread(app, "127.0.0.1", 0)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", auth=auth) as client:
            yield client
    finally:
        server.stop()


def test_offer_api_round_trip(
    database_settings: DatabaseSettings,
    schema: str,
    access_settings: AccessSettings,
    api_auth: SignedAuth,
) -> None:
    store = OfferStore(database_settings, schema)
    store.migrate()
    store.migrate()  # idempotent
    body: dict[str, Any] = yaml.safe_load((EXAMPLES_DIR / "likes-5-then-1.yaml").read_text())

    settings = RulesSettings(database=database_settings, db_schema=schema, access=access_settings)
    with served(create_app(store, settings), api_auth) as client:
        created = client.post("/offers", json=body, headers={"X-Author": "api"})
        assert created.status_code == 201
        assert created.json()["active"] is False
        duplicate = client.post("/offers", json=body)
        assert duplicate.status_code == 409

        invalid = client.put("/offers/likes-5-then-1", json={**body, "limits": {"max_points": -1}})
        assert invalid.status_code == 422
        errors = invalid.json()["errors"]
        assert [e["field"] for e in errors] == ["limits.max_points"]

        updated = client.put(
            "/offers/likes-5-then-1",
            content=yaml.safe_dump({**body, "name": "Renamed"}),
            headers={"Content-Type": "application/yaml"},
        )
        assert updated.status_code == 200
        assert updated.json()["current_version"] == 2
        assert client.post("/offers/likes-5-then-1/activate").status_code == 200

        listed = client.get("/offers").json()
        assert [(o["id"], o["active"], o["version"]) for o in listed] == [
            ("likes-5-then-1", True, 2)
        ]
        v1 = client.get("/offers/likes-5-then-1?version=1").json()
        assert (v1["body"]["name"], v1["author"]) == (body["name"], "api")
        assert client.get("/offers/nope").status_code == 404
        assert client.post("/offers/likes-5-then-1/deactivate").status_code == 200
        loaded = client.post("/offers/load-examples?activate=false")
        assert len(loaded.json()["created"]) == 8  # one was there already
        assert client.get("/readyz").status_code == 200
        assert client.get("/healthz").status_code == 200

    assert store.active_offers() == []


def test_activate_and_load_examples_warn_about_offers_that_cannot_pay_or_pay_twice(
    offers_cli: Callable[..., Result], tmp_path: Path
) -> None:
    def run(*args: str) -> tuple[str, str]:
        """stdout, and stderr after the target line every changing command prints first."""
        result = offers_cli(*args)
        assert result.exit_code == 0, result.output
        target, _, warnings = result.stderr.partition("\n")
        assert target.startswith("target: database postgresql://"), result.stderr
        return result.stdout, warnings

    out, err = run("load-examples")
    assert "created 9:" in out
    assert "warning" not in err  # the examples make sense together

    everywhere = yaml.safe_load((EXAMPLES_DIR / "likes.yaml").read_text())
    everywhere["id"] = "likes-everywhere"
    del everywhere["filters"]
    ended = yaml.safe_load((EXAMPLES_DIR / "reposts.yaml").read_text())
    ended |= {"id": "old-reposts", "starts_at": "2025-01-01T00:00:00+03:00"}
    ended |= {"ends_at": "2026-01-01T00:00:00+03:00"}
    for body in (everywhere, ended):
        path = tmp_path / f"{body['id']}.yaml"
        path.write_text(yaml.safe_dump(body))
        run("create", str(path))

    _, err = run("activate", "likes-everywhere")
    assert err.splitlines() == [
        "warning: likes-everywhere: likes is active and also pays for POST_LIKED on the same "
        "events: a member earns both (deactivate one, or narrow their filters)",
        "warning: likes-everywhere: likes-5-then-1 is active and also pays for POST_LIKED on "
        "the same events: a member earns both (deactivate one, or narrow their filters)",
    ]
    _, err = run("activate", "old-reposts")
    ended_line, overlap_line = err.splitlines()
    assert ended_line.startswith("warning: old-reposts: its window ended at 2026-01-01T00:00")
    assert ended_line.endswith("it will never pay (update ends_at or deactivate it)")
    assert overlap_line.startswith("warning: old-reposts: reposts is active and also pays")
