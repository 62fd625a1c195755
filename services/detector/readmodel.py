"""The detector's read model: who is a member of which group now, activity counts per
profile, last seen; fed from ``social.events``, queried over HTTP (port 8083).

Exactly-once in effect without Kafka transactions: every batch of events, the
``event_id`` dedup rows and the consumer's next offsets are ONE PostgreSQL
transaction, and on partition assignment the consumer seeks to the offsets stored
there. Offsets are also committed to Kafka afterwards, only so lag tools see progress.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from types import FrameType
from typing import Any

import psycopg
from aiohttp import web
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from prometheus_client import CollectorRegistry, Counter
from psycopg import sql

from services.contracts import (
    EVENT_TYPES,
    DecodeError,
    DomainEvent,
    GroupJoined,
    GroupLeft,
    make_codec,
)
from services.contracts.models import Network
from services.contracts.topics import EVENTS
from services.detector.settings import DetectorSettings
from services.runtime import db, http, kafka

log = logging.getLogger(__name__)

_EVENT_CLASSES = tuple(EVENT_TYPES.values())
MAX_LIMIT = 1000


# ------------------------------------------------------------------ pure core


@dataclass(frozen=True, slots=True)
class Effect:
    """What one event changes in the read model."""

    network: str
    social_user_id: str
    event_type: str
    seen_at: datetime
    group_id: int | None = None
    member: bool | None = None  # True: joined, False: left, None: no membership change


def effect(event: DomainEvent) -> Effect:
    """The read model's view of an event: every event counts as activity and updates
    last seen (its ``snapshot_at``); joins and leaves also move the membership."""
    member = (
        True if isinstance(event, GroupJoined) else False if isinstance(event, GroupLeft) else None
    )
    return Effect(
        event.network.value,
        event.social_user_id,
        type(event).__name__,
        event.snapshot_at,
        getattr(event, "group_id", None),
        member,
    )


# ------------------------------------------------------------------ Postgres


def migrate(conn: psycopg.Connection, schema: str) -> None:
    """Create the schema and tables if missing (idempotent, run at start)."""
    s = sql.Identifier(schema)
    statements = [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.memberships (network text NOT NULL, "
            "group_id bigint NOT NULL, social_user_id text NOT NULL, member boolean NOT NULL, "
            "as_of timestamptz NOT NULL, PRIMARY KEY (network, group_id, social_user_id))"
        ).format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.activity (network text NOT NULL, "
            "social_user_id text NOT NULL, event_type text NOT NULL, count bigint NOT NULL, "
            "PRIMARY KEY (network, social_user_id, event_type))"
        ).format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.profiles (network text NOT NULL, "
            "social_user_id text NOT NULL, last_seen timestamptz NOT NULL, "
            "PRIMARY KEY (network, social_user_id))"
        ).format(s),
        sql.SQL("CREATE TABLE IF NOT EXISTS {}.seen_events (event_id text PRIMARY KEY)").format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.offsets (topic text NOT NULL, partition int NOT NULL, "
            "next_offset bigint NOT NULL, PRIMARY KEY (topic, partition))"
        ).format(s),
    ]
    with conn.transaction():
        for statement in statements:
            conn.execute(statement)


class Store:
    """The read model's tables in one schema."""

    def __init__(self, conn: psycopg.Connection, schema: str) -> None:
        self.conn = conn
        self.s = sql.Identifier(schema)

    def stored_offsets(self, topic: str) -> dict[int, int]:
        query = sql.SQL("SELECT partition, next_offset FROM {}.offsets WHERE topic = %s")
        with self.conn.transaction():
            rows = self.conn.execute(query.format(self.s), (topic,)).fetchall()
        return {int(p): int(o) for p, o in rows}

    def apply(
        self, events: Iterable[tuple[str, Effect]], offsets: dict[tuple[str, int], int]
    ) -> int:
        """Apply events (deduplicated by id) and store the offsets, in one transaction.
        Returns how many events were new."""
        fresh = 0
        s = self.s
        with self.conn.transaction():
            for event_id, e in events:
                inserted = self.conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.seen_events VALUES (%s) ON CONFLICT DO NOTHING RETURNING 1"
                    ).format(s),
                    (event_id,),
                ).fetchone()
                if inserted is None:
                    continue
                fresh += 1
                self._apply_one(e)
            for (topic, partition), next_offset in offsets.items():
                self.conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.offsets VALUES (%s, %s, %s) ON CONFLICT (topic, partition) "
                        "DO UPDATE SET next_offset = excluded.next_offset"
                    ).format(s),
                    (topic, partition, next_offset),
                )
        return fresh

    def _apply_one(self, e: Effect) -> None:
        s = self.s
        self.conn.execute(
            sql.SQL(
                "INSERT INTO {}.activity VALUES (%s, %s, %s, 1) ON CONFLICT "
                "(network, social_user_id, event_type) DO UPDATE SET count = activity.count + 1"
            ).format(s),
            (e.network, e.social_user_id, e.event_type),
        )
        self.conn.execute(
            sql.SQL(
                "INSERT INTO {}.profiles VALUES (%s, %s, %s) ON CONFLICT (network, social_user_id) "
                "DO UPDATE SET last_seen = greatest(profiles.last_seen, excluded.last_seen)"
            ).format(s),
            (e.network, e.social_user_id, e.seen_at),
        )
        if e.member is not None and e.group_id is not None:
            # The newest snapshot wins, so an out-of-order redelivery cannot undo a move.
            self.conn.execute(
                sql.SQL(
                    "INSERT INTO {}.memberships VALUES (%s, %s, %s, %s, %s) ON CONFLICT "
                    "(network, group_id, social_user_id) DO UPDATE SET member = excluded.member, "
                    "as_of = excluded.as_of WHERE memberships.as_of <= excluded.as_of"
                ).format(s),
                (e.network, e.group_id, e.social_user_id, e.member, e.seen_at),
            )

    def profile(self, network: str, social_user_id: str) -> dict[str, Any] | None:
        s, key = self.s, (network, social_user_id)
        with self.conn.transaction():
            seen = self.conn.execute(
                sql.SQL(
                    "SELECT last_seen FROM {}.profiles WHERE network = %s AND social_user_id = %s"
                ).format(s),
                key,
            ).fetchone()
            if seen is None:
                return None
            groups = self.conn.execute(
                sql.SQL(
                    "SELECT group_id, as_of FROM {}.memberships WHERE network = %s "
                    "AND social_user_id = %s AND member ORDER BY group_id"
                ).format(s),
                key,
            ).fetchall()
            counts = self.conn.execute(
                sql.SQL(
                    "SELECT event_type, count FROM {}.activity WHERE network = %s "
                    "AND social_user_id = %s ORDER BY event_type"
                ).format(s),
                key,
            ).fetchall()
        return {
            "network": network,
            "social_user_id": social_user_id,
            "last_seen": seen[0].isoformat(),
            "groups": [{"group_id": g, "member_since": at.isoformat()} for g, at in groups],
            "activity": {t: c for t, c in counts},
        }

    def members(self, network: str, group_id: int, limit: int, after: str | None) -> list[str]:
        """Current members in ``social_user_id`` (text) order, keyset-paged by ``after``."""
        with self.conn.transaction():
            rows = self.conn.execute(
                sql.SQL(
                    "SELECT social_user_id FROM {}.memberships "
                    "WHERE network = %s AND group_id = %s AND member AND social_user_id > %s "
                    "ORDER BY social_user_id LIMIT %s"
                ).format(self.s),
                (network, group_id, after or "", limit),
            ).fetchall()
        return [r[0] for r in rows]


# ------------------------------------------------------------------ HTTP


def create_http_app(settings: DetectorSettings, registry: CollectorRegistry) -> web.Application:
    """The query API on the shared HTTP edge; each request uses its own connection."""
    app = http.create_app("detector-readmodel", None, registry)

    def query(fn: str, *args: Any) -> Any:
        with db.connect(settings.database, autocommit=False) as conn:
            return getattr(Store(conn, settings.readmodel_schema), fn)(*args)

    def network_of(request: web.Request) -> str:
        network = request.match_info["network"]
        try:
            return Network(network).value
        except ValueError:
            raise web.HTTPBadRequest(
                text=f"unknown network {network!r}; one of {[n.value for n in Network]}"
            ) from None

    async def profile(request: web.Request) -> web.Response:
        network = network_of(request)
        found = await asyncio.to_thread(
            query, "profile", network, request.match_info["social_user_id"]
        )
        if found is None:
            return web.json_response({"error": "no events for this profile"}, status=404)
        return web.json_response(found)

    async def members(request: web.Request) -> web.Response:
        network = network_of(request)
        try:
            group_id = int(request.match_info["group_id"])
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return web.json_response({"error": "group_id and limit must be integers"}, status=400)
        if not 1 <= limit <= MAX_LIMIT:
            return web.json_response({"error": f"limit must be in [1, {MAX_LIMIT}]"}, status=400)
        after = request.query.get("after")
        found = await asyncio.to_thread(query, "members", network, group_id, limit, after)
        nxt = found[-1] if len(found) == limit else None
        return web.json_response(
            {"network": network, "group_id": group_id, "members": found, "next": nxt}
        )

    app.router.add_get("/v1/profiles/{network}/{social_user_id}", profile)
    app.router.add_get("/v1/groups/{network}/{group_id}/members", members)
    return app


# ------------------------------------------------------------------ consumer


class ReadModel:
    """The consumer side: decode, dedup, apply, store offsets, in PG transactions."""

    def __init__(self, settings: DetectorSettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.topic = settings.topics.name(EVENTS)
        self.conn = db.connect(settings.database)
        migrate(self.conn, settings.readmodel_schema)
        self.store = Store(self.conn, settings.readmodel_schema)
        self.codec = make_codec(settings.kafka)
        self.applied = Counter(
            "social_loyalty_detector_readmodel_events_total",
            "Events applied (new) or skipped.",
            ["result"],
            registry=registry,
        )
        self.consumer: Consumer = kafka.consumer(settings.kafka, settings.readmodel_group)
        self.consumer.subscribe([self.topic], on_assign=self._on_assign)
        self._stop = threading.Event()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        stored = self.store.stored_offsets(self.topic)
        for tp in partitions:
            tp.offset = stored.get(tp.partition, OFFSET_BEGINNING)
        consumer.assign(partitions)

    def stop(self) -> None:
        self._stop.set()

    def poll_once(self, timeout: float = 1.0) -> int:
        """Consume one batch and apply it; returns how many messages were read."""
        messages = self.consumer.consume(self.settings.readmodel_batch, timeout)
        batch: list[tuple[str, Effect]] = []
        offsets: dict[tuple[str, int], int] = {}
        for msg in messages:
            if msg.error():
                log.warning("consumer error: %s", msg.error())
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if topic is None or partition is None or offset is None:
                continue
            offsets[(topic, partition)] = offset + 1
            decoded = self._decode(msg)
            if decoded is not None:
                batch.append((decoded.event_id, effect(decoded)))
        if not offsets:
            return 0
        fresh = self.store.apply(batch, offsets)
        self.applied.labels("new").inc(fresh)
        self.applied.labels("duplicate").inc(len(batch) - fresh)
        self.consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=True
        )
        return len(messages)

    def _decode(self, msg: Message) -> DomainEvent | None:
        try:
            event = self.codec.decode(msg.value(), self.topic, _EVENT_CLASSES)
        except DecodeError as exc:
            # The detector's own dead-letter path is for snapshots; a bad event here is
            # counted and skipped so the read model keeps up (the log itself is the record).
            log.warning(
                "skipping undecodable event at %s[%d]@%d: %s",
                msg.topic(),
                msg.partition(),
                msg.offset(),
                exc,
            )
            self.applied.labels("undecodable").inc()
            return None
        if not isinstance(event, _EVENT_CLASSES):
            return None
        return event

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                self.poll_once()
        finally:
            self.consumer.close()
            self.conn.close()


def run(settings: DetectorSettings | None = None) -> None:
    """Serve the query API and consume until SIGTERM/SIGINT."""
    settings = settings or DetectorSettings()
    registry = CollectorRegistry()
    model = ReadModel(settings, registry)
    server = http.serve_in_thread(
        create_http_app(settings, registry), settings.readmodel_host, settings.readmodel_port
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        model.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("read model on %s:%d", settings.readmodel_host, settings.readmodel_port)
    try:
        model.run()
    finally:
        server.stop()
