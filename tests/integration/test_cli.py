"""``social-loyalty`` as an operator runs it, in a subprocess: with the servers down
every command says so in one line (exit 2, no traceback, within seconds); every
listing's ``--output json`` parses and carries the table's fields; piped tables keep
long ids and statuses whole; changing commands print their target first."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import yaml

from services.runtime.settings import DatabaseSettings, KafkaSettings

REPO = Path(__file__).resolve().parents[2]
DOWN = ["--bootstrap-server", "127.0.0.1:1", "--database-url", "postgresql://x:pw@127.0.0.1:1/x"]
LONG_ID = "eco-like-bonus-for-the-autumn-campaign-in-every-group-2026"


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    done = cli(*args, **env)
    assert done.returncode == 0, done.stderr
    return done


DOWN_COMMANDS = [
    "check",
    "topics ensure",
    "topics ensure --dry-run",
    "lag show",
    "lag show --url http://127.0.0.1:1",
    "deadletters list",
    "deadletters redrive --all",
    "collector runs",
    "collector collect vk:1001 --groups deploy/groups.example.yaml",
    "offers list",
    "offers show likes",
    "offers activate likes",
    "offers load-examples",
    "replay --offer likes --from 2026-01-01 --dry-run",
    "replay --offer likes --from 2026-01-01 --apply",
    "readmodel serve",
    "credentials list",
]


@pytest.mark.parametrize("command", DOWN_COMMANDS)
def test_with_the_servers_down_every_command_says_so_in_one_line(command: str) -> None:
    done = cli(*DOWN, *command.split(), KAFKA_CONNECT_TIMEOUT_S="1")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith("target: ")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("error: ")
    assert "127.0.0.1" in errors[0]
    assert "pw@" not in done.stderr  # a password is never printed


def test_a_cluster_that_is_down_costs_seconds_not_half_a_minute() -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_CONNECT_TIMEOUT_S"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *DOWN, "deadletters", "list"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - started
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert took < 15, took
    print(f"deadletters list with Kafka down: {took:.1f} s")


def test_listings_print_json_with_the_tables_fields_and_pipes_cut_nothing(
    kafka_settings: KafkaSettings,
    database_settings: DatabaseSettings,
    unique: Callable[[str], str],
    tmp_path: Path,
) -> None:
    url = database_settings.database_url.get_secret_value()
    suffix = unique("cli").rsplit(".", 1)[-1]
    rules_schema, collector_schema = f"t_rules_{suffix}", f"t_collector_{suffix}"
    prefix = f"t.cli.{suffix}."
    env = {
        "DATABASE_URL": url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "RULES_DB_SCHEMA": rules_schema,
        "COLLECTOR_DB_SCHEMA": collector_schema,
        "TOPIC_PREFIX": prefix,
    }
    try:
        _offers(env, tmp_path)
        _collector_runs(env, database_settings, collector_schema)
        _topics(env, prefix)
        _deadletters(env, prefix)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            for schema in (rules_schema, collector_schema):
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _offers(env: dict[str, str], tmp_path: Path) -> None:
    body = yaml.safe_load((REPO / "services/rules/examples/likes.yaml").read_text())
    body |= {"id": LONG_ID, "name": "A point for every like in the autumn campaign, every group"}
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(body))
    created = ok("offers", "create", str(path), **env)
    assert created.stderr.startswith("target: database postgresql://")
    assert created.stdout.strip() == f"created {LONG_ID} v1 (inactive)"

    table = ok("offers", "list", **env).stdout
    assert LONG_ID in table
    assert body["name"] in table
    (row,) = json.loads(ok("offers", "list", "--output", "json", **env).stdout)
    assert (row["id"], row["active"], row["current_version"], row["name"]) == (
        LONG_ID,
        False,
        1,
        body["name"],
    )
    assert {"trigger", "updated_at"} <= set(row)
    assert json.loads(ok("offers", "list", "--json", **env).stdout) == [row]


def _collector_runs(env: dict[str, str], database: DatabaseSettings, schema: str) -> None:
    from services.collector.store import RunStats, RunStore, connect, migrate

    reason = "the API answered error 6 (too many requests per second) three times in a row " * 2

    async def record() -> None:
        conn = await connect(database)
        try:
            await migrate(conn, schema)
            store = RunStore(conn, schema)
            run = await store.start("vk", 1001, 16)
            await store.finish(run.run_id, "failed", RunStats(api_requests=3), reason.strip())
        finally:
            await conn.close()

    asyncio.run(record())
    table = ok("collector", "runs", **env).stdout
    assert reason.strip() in table
    assert "vk:1001" in table
    (row,) = json.loads(ok("collector", "runs", "-o", "json", **env).stdout)
    assert (row["group"], row["status"], row["api_requests"], row["reason"]) == (
        "vk:1001",
        "failed",
        3,
        reason.strip(),
    )
    assert {"run", "started_at", "took_s", "members", "messages_published", "skipped"} <= set(row)


def _topics(env: dict[str, str], prefix: str) -> None:
    listed = json.loads(ok("topics", "list", "-o", "json", **env).stdout)
    assert listed and all(row["topic"].startswith(prefix) for row in listed)
    assert {"partitions", "replication_factor", "retention_ms", "cleanup_policy", "key"} <= set(
        listed[0]
    )
    dry = cli("topics", "ensure", "--dry-run", "-o", "json", **env)
    assert dry.returncode == 1  # nothing of this prefix exists: drift
    document = json.loads(dry.stdout)
    assert document["in_sync"] is False
    assert {p["topic"] for p in document["plan"] if p["create"]} == {r["topic"] for r in listed}


def _deadletters(env: dict[str, str], prefix: str) -> None:
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    from services.runtime import kafka

    settings = KafkaSettings(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"])
    admin = kafka.admin(settings, "tests.cli")
    missing = cli("deadletters", "list", **env)  # before the topic exists
    assert missing.returncode == 2
    (line,) = missing.stderr.strip().splitlines()  # where it does exist, in the same line
    assert line.startswith(
        f"error: dead-letter topic '{prefix}loyalty.deadletter' does not exist on "
        f"{env['KAFKA_BOOTSTRAP_SERVERS']}; "
    )
    topic = f"{prefix}loyalty.deadletter"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    try:
        assert json.loads(ok("deadletters", "list", "--output", "json", **env).stdout) == []
        redrive = cli("--prefix", prefix, "deadletters", "redrive", "--id", "0:0", **env)
        assert redrive.returncode == 1  # no such letter
        assert redrive.stderr.splitlines()[0].startswith(
            f"target: kafka {env['KAFKA_BOOTSTRAP_SERVERS']} ("
        )
        assert redrive.stderr.splitlines()[0].endswith(f"prefix '{prefix}'")
    finally:
        admin.delete_topics([topic])[topic].result(30)


def test_a_service_started_through_the_cli_still_waits_for_kafka() -> None:
    """Long-running commands (lag serve, collector run, detector worker, readmodel serve) are
    services: Kafka being down is something they report while running, not a reason
    for the CLI's one-line exit."""
    import socket

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "services.cli", *DOWN, "lag", "serve", "--port", str(port)],
        cwd=REPO,
        env={**os.environ, "LAGMONITOR_HISTORY_DB": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, "lag serve ended instead of serving"
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "lag serve never answered"
                time.sleep(0.3)
        assert ready.status_code == 503
    finally:
        server.terminate()
        server.wait(30)
