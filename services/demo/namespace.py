"""A clean, private namespace for each demo run: its own topics, groups and database.

The demo prefixes every topic, consumer group and Faust app id with ``demo.`` and
keeps its rows in its own database, so running it again starts from the same
empty state, and it never touches what the services keep outside the demo.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import psycopg
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from services.contracts.topics import TopicSettings, apply, catalog, observe, plan
from services.runtime import kafka
from services.runtime.settings import DatabaseSettings, KafkaSettings

PREFIX = "demo."
DATABASE = "social_loyalty_demo"


def demo_database_url(settings: DatabaseSettings) -> str:
    """The stack's connection string pointed at the demo's own database."""
    return make_conninfo(settings.database_url.get_secret_value(), dbname=DATABASE)


def reset_database(settings: DatabaseSettings) -> str:
    """Drop and re-create the demo database; returns its connection string."""
    params = conninfo_to_dict(settings.database_url.get_secret_value())
    admin_url = make_conninfo("", **{**params, "dbname": "postgres"})
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    return demo_database_url(settings)


def _delete_groups(admin: AdminClient) -> None:
    listed = admin.list_consumer_groups(request_timeout=30).result()
    groups = [g.group_id for g in listed.valid if g.group_id.startswith(PREFIX)]
    if groups:
        for future in admin.delete_consumer_groups(groups, request_timeout=30).values():
            future.result()


def _delete_topics(admin: AdminClient) -> None:
    names = [name for name in admin.list_topics(timeout=30).topics if name.startswith(PREFIX)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=60).values():
            future.result()


def reset_kafka(settings: KafkaSettings, topics: TopicSettings) -> None:
    """Delete the demo's groups and topics, then create the catalog afresh."""
    admin = kafka.admin(settings, "demo-reset")
    _delete_groups(admin)
    _delete_topics(admin)
    specs = catalog(topics)
    for _attempt in range(60):
        # Topic deletion is asynchronous on the broker: retry creation until it is accepted.
        try:
            apply(admin, plan(specs, observe(admin, [s.name for s in specs])), fix=True)
            return
        except KafkaException as exc:  # TOPIC_ALREADY_EXISTS until the deletion completes
            if "exist" not in str(exc).lower() and "marked for deletion" not in str(exc).lower():
                raise
            time.sleep(0.5)
    raise RuntimeError("the demo topics could not be re-created after deleting the old ones")


def reset_state_dir(path: Path) -> Path:
    """Empty the demo's local state folder (Faust's RocksDB stores, logs)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
