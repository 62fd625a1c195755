"""A clean, private namespace for a demo or benchmark run: its own topics, groups, database.

The demo prefixes every topic, consumer group and Faust app id with ``demo.`` and
keeps its rows in its own database (the system benchmark does the same with
``bench.``), so running it again starts from the same empty state, and it never
touches what the services keep outside it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from services.contracts.topics import TopicSettings, catalog, ensure
from services.ops.system import app_stem
from services.rules.offers import Offer, load_offer
from services.runtime import kafka
from services.runtime.settings import DatabaseSettings, KafkaSettings

PREFIX = "demo."
DATABASE = "social_loyalty_demo"


def reset_database(settings: DatabaseSettings, database: str = DATABASE) -> str:
    """Drop and re-create ``database`` next to the stack's; returns its connection string."""
    params = conninfo_to_dict(settings.database_url.get_secret_value())
    admin_url = make_conninfo("", **{**params, "dbname": "postgres"})
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return make_conninfo(settings.database_url.get_secret_value(), dbname=database)


def _delete_groups(admin: AdminClient, prefix: str, timeout_s: float = 90.0) -> None:
    """Delete the namespace's consumer groups, waiting out members of a killed run.

    A process killed with -9 (the chaos run) stays a group member until its session
    times out, and the broker refuses to delete a non-empty group until then.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        listed = admin.list_consumer_groups(request_timeout=30).result()
        groups = [g.group_id for g in listed.valid if g.group_id.startswith(prefix)]
        if not groups:
            return
        busy = []
        for group, future in admin.delete_consumer_groups(groups, request_timeout=30).items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.NON_EMPTY_GROUP:
                    raise
                busy.append(group)
        if not busy:
            return
        if time.monotonic() > deadline:
            raise SetupError(f"consumer groups still have live members: {', '.join(busy)}")
        time.sleep(1.0)


def _delete_topics(admin: AdminClient, prefix: str) -> None:
    names = [name for name in admin.list_topics(timeout=30).topics if name.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=60).values():
            future.result()


def reset_kafka(settings: KafkaSettings, topics: TopicSettings) -> None:
    """Delete the groups and topics under ``topics.prefix``, then create the catalog afresh."""
    if not topics.prefix:
        raise ValueError("refusing to reset Kafka without a topic prefix")
    admin = kafka.admin(settings, "namespace-reset")
    _delete_groups(admin, topics.prefix)
    _delete_topics(admin, topics.prefix)
    stem = app_stem(topics.prefix)
    specs = catalog(topics, rules_app_id=f"{stem}.rules", detector_app_id=f"{stem}.detector")
    for _attempt in range(60):
        # Topic deletion is asynchronous on the broker: retry creation until it is accepted.
        try:
            ensure(admin, specs, fix=True)
            return
        except KafkaException as exc:
            # TOPIC_ALREADY_EXISTS until the deletion completes; UNKNOWN_TOPIC_OR_PART
            # when a topic listed a moment ago finished being deleted meanwhile.
            reason = str(exc).lower()
            if not any(s in reason for s in ("exist", "marked for deletion", "unknown topic")):
                raise
            time.sleep(0.5)
    raise RuntimeError("the demo topics could not be re-created after deleting the old ones")


class SetupError(RuntimeError):
    """Preparing the namespace failed; the message quotes the failing command's output."""


def _cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        detail = done.stderr or done.stdout
        raise SetupError(f"social-loyalty {' '.join(args)} failed: {detail}")


def load_offers(env: dict[str, str], directory: Path) -> list[Offer]:
    """Create and activate every offer file of ``directory`` through the operators' CLI."""
    offers = []
    for path in sorted(directory.glob("*.yaml")):
        offer = load_offer(path)
        _cli(env, "offers", "create", str(path), "--author", "setup")
        _cli(env, "offers", "activate", offer.id)
        offers.append(offer)
    return offers


def reset_state_dir(path: Path) -> Path:
    """Empty the demo's local state folder (Faust's RocksDB stores, logs)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
