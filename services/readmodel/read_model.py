"""The read model: who is a member of which group now, activity counts per profile,
last seen; fed from ``social.events``, queried over HTTP (port 8083).

It runs on the shared PostgreSQL-sink runtime (``services/runtime/pgsink.py``), in its
own consumer group: every batch of events, the ``event_id`` dedup rows and the group's
next offsets (``consumer_offsets``) are ONE PostgreSQL transaction, and on partition
assignment the consumer seeks to the offsets stored there. An event that does not
decode, or whose apply raises, goes to the dead-letter topic (with its source, offset
and reason, through the sink's outbox) and the next event is applied.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar

import psycopg
from fastapi import Depends, FastAPI, Path, Query
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from psycopg import sql
from pydantic import BaseModel, Field

from services.contracts import (
    EVENT_TYPES,
    DomainEvent,
    GroupJoined,
    GroupLeft,
    make_codec,
)
from services.contracts.bounds import INT64_MAX, SOCIAL_USER_ID_PATTERN, check_social_user_id
from services.contracts.models import Network
from services.contracts.topics import EVENTS
from services.readmodel.settings import ReadModelSettings
from services.runtime import db, health, httpapi, migrations
from services.runtime.access import AccessGate, require
from services.runtime.http import ReadyCheck
from services.runtime.httpapi import ApiError, ErrorResponse, create_api
from services.runtime.pgsink import (
    Emit,
    Handler,
    Item,
    PgSinkConfig,
    PgSinkWorker,
)
from services.runtime.skeleton import on_signals

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


def migrate(conn: psycopg.Connection, schema: str, group: str) -> None:
    """Bring the schema up to date (the sink runtime's tables, then
    ``services/readmodel/migrations/``; run at start). Offsets kept by the read model's
    own loop before it ran on the shared runtime (a table ``offsets`` without a group)
    become ``group``'s rows in ``consumer_offsets``: a data step that needs the group,
    which only the running service knows."""
    s = sql.Identifier(schema)
    with conn.transaction():
        migrations.migrate(conn, schema, "pgsink", "readmodel")
        legacy = conn.execute("SELECT to_regclass(%s)", (f"{schema}.offsets",)).fetchone()
        if legacy is not None and legacy[0] is not None:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.consumer_offsets (group_id, topic, partition, next_offset) "
                    "SELECT %s, topic, partition, next_offset FROM {}.offsets "
                    "ON CONFLICT DO NOTHING"
                ).format(s, s),
                (group,),
            )
            conn.execute(sql.SQL("DROP TABLE {}.offsets").format(s))


class Store:
    """The read model's tables in one schema."""

    def __init__(self, conn: psycopg.Connection, schema: str) -> None:
        self.conn = conn
        self.s = sql.Identifier(schema)

    def apply(self, events: Iterable[tuple[str, Effect]]) -> int:
        """Apply events (deduplicated by id) in the caller's transaction; returns how
        many were new."""
        fresh = 0
        for event_id, e in events:
            inserted = self.conn.execute(
                sql.SQL(
                    "INSERT INTO {}.seen_events VALUES (%s) ON CONFLICT DO NOTHING RETURNING 1"
                ).format(self.s),
                (event_id,),
            ).fetchone()
            if inserted is None:
                continue
            fresh += 1
            self._apply_one(e)
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


class ProfileGroup(BaseModel):
    group_id: int
    member_since: str


class Profile(BaseModel):
    network: str
    social_user_id: str
    last_seen: str
    groups: list[ProfileGroup]
    activity: dict[str, int]


class GroupMembers(BaseModel):
    network: str
    group_id: int
    members: list[str]
    next: str | None = Field(description="Pass as ``after`` for the next page; null at the end.")


SocialUserIdPath = Annotated[str, Path(pattern=SOCIAL_USER_ID_PATTERN)]


def create_http_app(
    settings: ReadModelSettings, registry: CollectorRegistry, ready: ReadyCheck | None = None
) -> FastAPI:
    """The query API on the shared API edge; each request uses its own connection (on
    FastAPI's thread pool). A bad network, id or limit answers 400; every /v1 route
    needs a signed credential with the ``readmodel:read`` scope. ``ready`` is the
    consumer's readiness; the API adds PostgreSQL's (probed in the background: while it
    is down ``/readyz`` and every /v1 route answer 503 with ``Retry-After``)."""
    app = create_api(
        "readmodel",
        ready,
        registry,
        title="social-loyalty read model API",
        description="Who is a member of which group now, activity per profile, last seen.",
        max_body=1024,
        invalid_status=400,
        access=AccessGate(settings.access, settings.database),
        dependencies=health.Dependencies(health.probes(database=settings.database)),
    )
    guarded: dict[str, Any] = {
        "tags": ["read model"],
        "dependencies": [Depends(require("readmodel:read"))],
    }

    def query(fn: str, *args: Any) -> Any:
        with db.connect(settings.database, autocommit=False) as conn:
            return getattr(Store(conn, settings.db_schema), fn)(*args)

    @app.get(
        "/v1/profiles/{network}/{social_user_id}",
        **guarded,
        response_model=Profile,
        responses={404: {"model": ErrorResponse, "description": "No events for this profile."}},
    )
    def profile(network: Network, social_user_id: SocialUserIdPath) -> JSONResponse:
        """A profile's groups, activity counts and last seen."""
        try:
            check_social_user_id(network.value, social_user_id)
        except ValueError as exc:
            problem = [{"field": "social_user_id", "message": str(exc)}]
            raise ApiError(400, str(exc), problem) from None
        found = query("profile", network.value, social_user_id)
        if found is None:
            raise ApiError(404, "no events for this profile")
        return JSONResponse(found)

    @app.get(
        "/v1/groups/{network}/{group_id}/members",
        **guarded,
        response_model=GroupMembers,
    )
    def members(
        network: Network,
        group_id: Annotated[int, Path(ge=1, le=INT64_MAX)],
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        after: Annotated[str | None, Query(pattern=SOCIAL_USER_ID_PATTERN)] = None,
    ) -> JSONResponse:
        """Current members in ``social_user_id`` (text) order, a page at a time."""
        found = query("members", network.value, group_id, limit, after)
        nxt = found[-1] if len(found) == limit else None
        return JSONResponse(
            {"network": network.value, "group_id": group_id, "members": found, "next": nxt}
        )

    return app


# ------------------------------------------------------------------ consumer


class EventsHandler(Handler[DomainEvent]):
    """``social.events`` into the read model's tables, in the sink's transaction."""

    name: ClassVar[str] = "readmodel"
    topic: ClassVar[str] = EVENTS
    expected: ClassVar[tuple[type, ...]] = _EVENT_CLASSES

    def __init__(self, schema: str, applied: Counter) -> None:
        self.schema = schema
        self.applied = applied

    def apply(
        self, conn: psycopg.Connection, items: list[Item[DomainEvent]], performed: Any
    ) -> list[Emit]:
        events = [(item.record.event_id, effect(item.record)) for item in items]
        fresh = Store(conn, self.schema).apply(events)
        self.applied.labels("new").inc(fresh)
        self.applied.labels("duplicate").inc(len(events) - fresh)
        return []


class ReadModel:
    """The consumer side: the read model's handler on a PostgreSQL-sink worker."""

    def __init__(self, settings: ReadModelSettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        with db.connect(settings.database, autocommit=True) as conn:
            migrate(conn, settings.db_schema, settings.group)
        self.applied = Counter(
            "social_loyalty_readmodel_events_total",
            "Events applied (new) or skipped as already applied (duplicate).",
            ["result"],
            registry=registry,
        )
        self.sink: PgSinkWorker[DomainEvent] = PgSinkWorker(
            EventsHandler(settings.db_schema, self.applied),
            PgSinkConfig(
                group=settings.group,
                schema=settings.db_schema,
                batch_size=settings.batch,
                poll_timeout_s=1.0,
            ),
            kafka_settings=settings.kafka,
            database=settings.database,
            topics=settings.topics,
            codec=make_codec(settings.kafka),
            registry=registry,
        )

    def not_ready(self) -> str | None:
        return self.sink.not_ready()

    def stop(self) -> None:
        self.sink.stop.set()

    def poll_once(self, timeout: float = 1.0) -> int:
        """Consume one batch and apply it; returns how many messages were read."""
        return self.sink.step(timeout)

    def run(self) -> None:
        self.sink.run()

    def close(self) -> None:
        self.sink.close()


def run(settings: ReadModelSettings) -> None:
    """Serve the query API and consume until SIGTERM/SIGINT."""
    model = ReadModel(settings, REGISTRY)
    server = httpapi.serve_api_in_thread(
        create_http_app(settings, REGISTRY, model.not_ready),
        settings.http_host,
        settings.http_port,
    )
    on_signals(model.stop)
    log.info("read model on %s:%d", settings.http_host, settings.http_port)
    try:
        model.run()
    finally:
        server.stop()
