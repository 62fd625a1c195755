"""The actions consumers on the shared PostgreSQL-sink runtime (``services/runtime/pgsink.py``).

What is actions-specific lives here: handlers take commands (:class:`CommandHandler`),
publish outcomes on ``loyalty.outcomes`` keyed by member (:func:`emit_outcome`),
record commands deliberately not applied in ``skipped_commands``, and run with the
settings of ``ACTIONS_*`` (:func:`worker`). The loop, the offsets, the outbox and the
bad-record policy are the runtime's.
"""

from __future__ import annotations

import threading
from typing import TypeAlias

import psycopg
from prometheus_client import REGISTRY, CollectorRegistry

from services.actions.command_metrics import CommandMetrics
from services.actions.settings import ActionsSettings
from services.contracts.codec import Codec
from services.contracts.models import Command, Record
from services.contracts.topics import OUTCOMES
from services.runtime.pgsink import Emit, Handler, Item, PgSinkConfig, PgSinkWorker

CommandItem: TypeAlias = Item[Command]


def emit_outcome(record: Record, member_id: str) -> Emit:
    """An outcome to publish after the commit, keyed by the member like the commands."""
    return Emit(OUTCOMES, member_id.encode(), record)


class CommandHandler(Handler[Command]):
    """A command topic's logic (one of the four consumers)."""

    registry: CollectorRegistry = REGISTRY
    """Where its metrics go: the process's registry unless the service sets another."""

    @property
    def metrics(self) -> CommandMetrics:
        return CommandMetrics.on(self.registry)

    def first_time(self, conn: psycopg.Connection, items: list[CommandItem]) -> list[CommandItem]:
        """The items whose command id was never applied before (recorded now in
        ``applied_commands``), in order, each id once; the others are counted as
        duplicates."""
        ids = list(dict.fromkeys(item.record.command_id for item in items))
        fresh = {
            row[0]
            for row in conn.execute(
                "INSERT INTO applied_commands (command_id, kind) "
                "SELECT id, %s FROM unnest(%s::text[]) AS u(id) "
                "ON CONFLICT (command_id) DO NOTHING RETURNING command_id",
                (self.name, ids),
            )
        }
        chosen: list[CommandItem] = []
        for item in items:
            if item.record.command_id in fresh:
                fresh.discard(item.record.command_id)
                chosen.append(item)
        if len(chosen) < len(items):
            self.metrics.duplicates.labels(self.name).inc(len(items) - len(chosen))
        return chosen

    def record_skipped(
        self, conn: psycopg.Connection, items: list[CommandItem], reason: str
    ) -> int:
        """Record ``items`` in ``skipped_commands`` with ``reason``, each command id once
        (an id already there is left as it is); returns how many rows were new."""
        return len(
            conn.execute(
                "INSERT INTO skipped_commands (command_id, kind, reason, source_topic, "
                "source_partition, source_offset) "
                "SELECT id, %s, %s, t, p, o "
                "FROM unnest(%s::text[], %s::text[], %s::int[], %s::bigint[]) AS u(id, t, p, o) "
                "ON CONFLICT (command_id) DO NOTHING RETURNING command_id",
                (
                    self.name,
                    reason,
                    [item.record.command_id for item in items],
                    [item.topic for item in items],
                    [item.partition for item in items],
                    [item.offset for item in items],
                ),
            ).fetchall()
        )


def sink_config(settings: ActionsSettings, name: str) -> PgSinkConfig:
    return PgSinkConfig(
        group=settings.group(name),
        schema=settings.db_schema,
        instance_id=settings.instance_id,
        batch_size=settings.batch_size,
        poll_timeout_s=settings.poll_timeout_s,
        session_timeout_ms=settings.session_timeout_ms,
        scheduler_interval_s=settings.scheduler_interval_s,
        outbox_retry_after_s=settings.outbox_retry_after_s,
    )


def worker(
    settings: ActionsSettings,
    handler: CommandHandler,
    codec: Codec,
    stop: threading.Event | None = None,
) -> PgSinkWorker[Command]:
    """The runtime worker that runs ``handler`` with the service's settings."""
    return PgSinkWorker(
        handler,
        sink_config(settings, handler.name),
        kafka_settings=settings.kafka,
        database=settings.database,
        topics=settings.topics,
        codec=codec,
        stop=stop,
    )
