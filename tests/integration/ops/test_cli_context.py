"""``social-loyalty use`` against a real broker and a real PostgreSQL, run as an operator
runs it (a subprocess, the stack's settings copied in as ./run copies stack.env): after
``use NAME`` the listings show that namespace's data with no flags, and a listing that
finds nothing says in one line what it searched, where, and which namespace has data.

Two namespaces of the test's own, each a topic prefix and a database: ``full`` holds a
consumer group, an offer, a collector run and a dead letter; ``empty`` holds nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import yaml
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]
from psycopg import sql

from services.contracts.codec import make_codec
from services.contracts.models import DeadLetter
from services.contracts.topics import DEADLETTER
from services.demo.namespace import reset_database
from services.runtime import kafka
from services.runtime.settings import DatabaseSettings, KafkaSettings
from tests.integration.lagmonitor.conftest import commit, produce

REPO = Path(__file__).resolve().parents[3]
OFFER_ID = "ctx-likes"


@dataclass(frozen=True)
class Namespaces:
    full_prefix: str
    full_database: str
    empty_prefix: str
    empty_database: str
    env: dict[str, str]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def _fill(
    kafka_settings: KafkaSettings, database_settings: DatabaseSettings, url: str, prefix: str
) -> None:
    """A group that committed, an offer, a collector run and a dead letter under ``prefix``
    and in the database ``url`` names."""
    admin = kafka.admin(kafka_settings, "tests.cli-context")
    topic, letters = f"{prefix}social.events", f"{prefix}{DEADLETTER}"
    for name in (topic, letters):
        admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
    produce(kafka_settings, topic, {0: 3})
    commit(kafka_settings, f"{prefix}rules", topic, {0: 2})
    letter = DeadLetter(
        original_topic=topic,
        original_partition=0,
        original_offset=1,
        key=b"k",
        value=b"v",
        error_class="builtins.ValueError",
        reason="a test letter",
        consumer_group=f"{prefix}rules",
        failed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    producer = kafka.producer(kafka_settings, "tests.cli-context")
    producer.produce(letters, make_codec(kafka_settings).encode(letter, letters), b"k")
    assert producer.flush(30) == 0

    from services.collector.store import RunStats, RunStore, connect, migrate

    async def record_run() -> None:
        conn = await connect(DatabaseSettings(database_url=url))
        try:
            await migrate(conn, "collector")
            run = await RunStore(conn, "collector").start("vk", 1001, 16)
            await RunStore(conn, "collector").finish(run.run_id, "succeeded", RunStats(members=3))
        finally:
            await conn.close()

    asyncio.run(record_run())


@pytest.fixture
def namespaces(
    kafka_settings: KafkaSettings, database_settings: DatabaseSettings, tmp_path: Path
) -> Iterator[Namespaces]:
    tag = uuid.uuid4().hex[:8]
    full_prefix, empty_prefix = f"t.ctx{tag}.", f"t.ctx{tag}e."
    full_db, empty_db = f"t_ctx_{tag}", f"t_ctx_{tag}_e"
    stack_url = database_settings.database_url.get_secret_value()
    full_url = reset_database(database_settings, full_db)
    reset_database(database_settings, empty_db)
    # The stack's settings as ./run hands them to every command: copied from stack.env.
    stack_dir = tmp_path / "stack"
    stack_dir.mkdir()
    (stack_dir / "stack.env").write_text(
        f"export KAFKA_BOOTSTRAP_SERVERS={kafka_settings.bootstrap_servers}\n"
        f"export DATABASE_URL={stack_url}\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"TOPIC_PREFIX", "LAGMONITOR_GROUP_PREFIXES"} and "__" not in k
    }
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "DATABASE_URL": stack_url,
        "SL_STACK_DIR": str(stack_dir),
        "SL_CLI_CONTEXTS": str(stack_dir / "cli-contexts.json"),
    }
    try:
        _fill(kafka_settings, database_settings, full_url, full_prefix)
        offer = yaml.safe_load((REPO / "services/rules/examples/likes.yaml").read_text())
        path = tmp_path / "offer.yaml"
        path.write_text(yaml.safe_dump(offer | {"id": OFFER_ID}))
        cli(env, "--database-url", full_url, "offers", "create", str(path))
        cli(env, "use", "empty", "--prefix", empty_prefix, "--database", empty_db)
        cli(env, "use", "full", "--prefix", full_prefix, "--database", full_db)
        yield Namespaces(full_prefix, full_db, empty_prefix, empty_db, env)
    finally:
        admin = kafka.admin(kafka_settings, "tests.cli-context")
        topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(full_prefix)]
        topics += [t for t in admin.list_topics(timeout=30).topics if t.startswith(empty_prefix)]
        if topics:
            for future in admin.delete_topics(topics, operation_timeout=30).values():
                future.result()
        admin.delete_consumer_groups([f"{full_prefix}rules"], request_timeout=30)
        params = psycopg.conninfo.conninfo_to_dict(stack_url)
        admin_url = psycopg.conninfo.make_conninfo("", **{**params, "dbname": "postgres"})
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for name in (full_db, empty_db):
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def test_the_chosen_context_is_what_every_listing_reads(namespaces: Namespaces) -> None:
    env, prefix = namespaces.env, namespaces.full_prefix
    shown = cli(env, "use").stdout
    assert f"topic prefix: '{prefix}' (context full)" in shown
    assert f"/{namespaces.full_database} (context full)" in shown

    lag = cli(env, "lag", "show", "--samples", "1", "--plain").stdout
    assert f"{prefix}rules" in lag
    assert f"{prefix}social.events" in lag
    assert OFFER_ID in cli(env, "offers", "list").stdout
    assert "vk:1001" in cli(env, "collector", "runs").stdout
    letters = cli(env, "deadletters", "list").stdout
    assert f"{prefix}{DEADLETTER}: 1 dead letters" in letters
    assert "a test letter" in letters

    # A flag wins over the context for one command; the context stays chosen.
    other = cli(env, "--context", "empty", "use").stdout
    assert f"topic prefix: '{namespaces.empty_prefix}' (context empty)" in other
    assert f"topic prefix: '{prefix}' (context full)" in cli(env, "use").stdout


def test_an_empty_answer_says_what_was_searched_and_where_data_is(
    namespaces: Namespaces, kafka_settings: KafkaSettings, database_settings: DatabaseSettings
) -> None:
    env, empty = namespaces.env, namespaces.empty_prefix
    cli(env, "use", "empty")
    admin = kafka.admin(kafka_settings, "tests.cli-context")
    letters = f"{empty}{DEADLETTER}"
    admin.create_topics([NewTopic(letters, 1, 1)])[letters].result(30)
    bootstrap = kafka_settings.bootstrap_servers
    server = psycopg.conninfo.conninfo_to_dict(database_settings.database_url.get_secret_value())
    postgres = f"{server.get('host') or 'localhost'}:{server.get('port') or 5432}"

    def one_line(*args: str) -> str:
        out = cli(env, *args).stdout.strip()
        assert len(out.splitlines()) == 1, out
        return out

    lag = one_line("lag", "show", "--samples", "1")
    assert lag.startswith(f"no consumer groups under '{empty}' on {bootstrap}; groups exist under ")
    assert f"'{namespaces.full_prefix}' (./run cli use full)" in lag

    offers = one_line("offers", "list")
    assert offers.startswith(
        f"no offers in database '{namespaces.empty_database}' (schema rules) on {postgres}; "
        "offers exist in "
    )
    assert f"'{namespaces.full_database}' (./run cli use full)" in offers

    runs = one_line("collector", "runs")
    assert runs.startswith(
        f"no collector runs in database '{namespaces.empty_database}' (schema collector) "
        f"on {postgres}; collector runs exist in "
    )
    assert f"'{namespaces.full_database}' (./run cli use full)" in runs

    dead = one_line("deadletters", "list")
    assert dead.startswith(f"no dead letters on '{letters}' at {bootstrap}; dead letters exist ")
    assert f"'{namespaces.full_prefix}' (./run cli use full)" in dead


def test_a_namespace_half_given_never_mixes_with_the_saved_context(
    namespaces: Namespaces, database_settings: DatabaseSettings
) -> None:
    """With ``full`` saved: a command naming the prefix alone does not read full's
    database; a service's spelling of the database with the stack's value is overridden
    like DATABASE_URL; a change names the context in its target line."""
    env = namespaces.env

    def offer_ids(environ: dict[str, str]) -> list[str]:
        done = cli(environ, "offers", "list", "--output", "json")
        return [o["id"] for o in json.loads(done.stdout)]

    assert OFFER_ID in offer_ids(env)
    empty = cli(env | {"TOPIC_PREFIX": namespaces.empty_prefix}, "offers", "list", "-o", "json")
    assert OFFER_ID not in [o["id"] for o in json.loads(empty.stdout)]
    assert "not applied: $TOPIC_PREFIX given" in empty.stderr
    stack_url = database_settings.database_url.get_secret_value()
    assert OFFER_ID in offer_ids(env | {"RULES_DATABASE__DATABASE_URL": stack_url})

    changed = cli(env, "offers", "deactivate", OFFER_ID)
    assert f"context full ({env['SL_CLI_CONTEXTS']})" in changed.stderr.splitlines()[1]
