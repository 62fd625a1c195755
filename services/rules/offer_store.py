"""Offers in PostgreSQL, with every version kept.

``offers`` holds what is live (active flag, current version); ``offer_versions``
holds every body ever saved, so replay and audits can load the exact offer a
command came from. The store assigns versions itself (1 on create, +1 on each
update) and rewrites the body's ``version`` to match: two authors cannot both
publish "version 3".

Workers notice changes by polling ``signature()`` (cheap: one row from an
aggregate) and reload only when it moved.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services.rules.advice import advise
from services.rules.offers import Offer, OfferError, load_offer_text, parse_offer
from services.runtime import migrations
from services.runtime.db import connect
from services.runtime.settings import DatabaseSettings

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"


@dataclass(frozen=True, slots=True)
class LivePeriod:
    """A span of wall-clock time in which the live worker evaluated the offer."""

    since: datetime
    until: datetime | None  # None: active now
    version: int | None  # the version activated (None: before the history was kept)


class OfferNotFoundError(LookupError):
    """No such offer (or version)."""


class OfferExistsError(ValueError):
    """``create`` of an id that is already stored (use ``update``)."""


@dataclass(frozen=True, slots=True)
class StoredOffer:
    """One offer version as stored, with its live status."""

    offer: Offer
    active: bool
    current_version: int
    created_at: datetime
    author: str | None
    comment: str | None
    updated_at: datetime

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.offer.id,
            "name": self.offer.name,
            "active": self.active,
            "current_version": self.current_version,
            "version": self.offer.version,
            "trigger": [t.value for t in self.offer.trigger],
            "updated_at": self.updated_at.isoformat(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "created_at": self.created_at.isoformat(),
            "author": self.author,
            "comment": self.comment,
            "body": self.offer.model_dump(mode="json", exclude_none=True),
        }


class OfferStore:
    """Create, update, (de)activate, list and show offers; short transactions."""

    def __init__(self, database: DatabaseSettings, schema: str = "rules") -> None:
        self._database = database
        self._schema_name = schema
        self._schema = sql.Identifier(schema)

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        conn = connect(self._database)
        try:
            conn.row_factory = dict_row  # type: ignore[assignment]
            with conn.transaction():
                yield conn  # type: ignore[misc]
        finally:
            conn.close()

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(schema=self._schema)

    def migrate(self) -> None:
        """Bring the schema up to date (``services/rules/migrations/``); safe at every
        start of every process."""
        with self._conn() as conn:
            migrations.migrate(conn, self._schema_name, "rules")

    # ------------------------------------------------------------------ writes

    def create(
        self, body: Mapping[str, Any], *, author: str | None = None, comment: str | None = None
    ) -> StoredOffer:
        offer = _validated(body, version=1)
        with self._conn() as conn:
            inserted = conn.execute(
                self._q(
                    "INSERT INTO {schema}.offers (id, current_version) VALUES (%s, 1) "
                    "ON CONFLICT (id) DO NOTHING RETURNING id"
                ),
                (offer.id,),
            ).fetchone()
            if inserted is None:
                raise OfferExistsError(f"offer {offer.id!r} exists; update it instead")
            self._insert_version(conn, offer, author, comment)
        return self.show(offer.id)

    def update(
        self,
        offer_id: str,
        body: Mapping[str, Any],
        *,
        author: str | None = None,
        comment: str | None = None,
    ) -> StoredOffer:
        given = body.get("id", offer_id)
        if given != offer_id:
            raise OfferError(
                f"body id {given!r} differs from {offer_id!r}",
                [{"field": "id", "message": f"must be {offer_id!r}"}],
            )
        with self._conn() as conn:
            row = conn.execute(
                self._q("SELECT current_version FROM {schema}.offers WHERE id = %s FOR UPDATE"),
                (offer_id,),
            ).fetchone()
            if row is None:
                raise OfferNotFoundError(f"no offer {offer_id!r}")
            offer = _validated({**body, "id": offer_id}, version=row["current_version"] + 1)
            self._insert_version(conn, offer, author, comment)
            conn.execute(
                self._q(
                    "UPDATE {schema}.offers SET current_version = %s, updated_at = now() "
                    "WHERE id = %s"
                ),
                (offer.version, offer_id),
            )
        return self.show(offer_id)

    def set_active(self, offer_id: str, active: bool) -> StoredOffer:
        """Switch an offer on or off; a real change is recorded in ``offer_activations``
        (replay --apply reads it to refuse windows the live worker already covered)."""
        with self._conn() as conn:
            row = conn.execute(
                self._q(
                    "SELECT active, current_version FROM {schema}.offers WHERE id = %s FOR UPDATE"
                ),
                (offer_id,),
            ).fetchone()
            if row is None:
                raise OfferNotFoundError(f"no offer {offer_id!r}")
            conn.execute(
                self._q("UPDATE {schema}.offers SET active = %s, updated_at = now() WHERE id = %s"),
                (active, offer_id),
            )
            if row["active"] != active:
                conn.execute(
                    self._q(
                        "INSERT INTO {schema}.offer_activations (offer_id, active, version) "
                        "VALUES (%s, %s, %s)"
                    ),
                    (offer_id, active, row["current_version"]),
                )
        return self.show(offer_id)

    def live_periods(self, offer_id: str) -> list[LivePeriod]:
        """When the offer has been active (wall-clock), oldest first; ``until`` None: still is.

        Built from ``offer_activations``. An offer switched on before that table
        existed counts as active since its creation (the safe assumption).
        """
        with self._conn() as conn:
            offer = conn.execute(
                self._q("SELECT active, created_at FROM {schema}.offers WHERE id = %s"),
                (offer_id,),
            ).fetchone()
            if offer is None:
                raise OfferNotFoundError(f"no offer {offer_id!r}")
            rows = conn.execute(
                self._q(
                    "SELECT active, version, at FROM {schema}.offer_activations "
                    "WHERE offer_id = %s ORDER BY id"
                ),
                (offer_id,),
            ).fetchall()
        periods: list[LivePeriod] = []
        since: datetime | None = None
        version: int | None = None
        if (rows and not rows[0]["active"]) or (not rows and offer["active"]):
            since = offer["created_at"]  # active before the history was kept
        for row in rows:
            if row["active"] and since is None:
                since, version = row["at"], row["version"]
            elif not row["active"] and since is not None:
                periods.append(LivePeriod(since, row["at"], version))
                since, version = None, None
        if since is not None:
            periods.append(LivePeriod(since, None, version))
        return periods

    def load_examples(self, *, activate: bool = True) -> list[str]:
        """Store the acceptance-set offers not stored yet; returns the ids created."""
        created = []
        for path in sorted(EXAMPLES_DIR.glob("*.yaml")):
            offer = load_offer_text(path.read_text(encoding="utf-8"), source=str(path))
            try:
                self.create(offer.model_dump(mode="json"), author="examples", comment=path.name)
            except OfferExistsError:
                continue
            if activate:
                self.set_active(offer.id, True)
            created.append(offer.id)
        return created

    def _insert_version(
        self, conn: psycopg.Connection[Any], offer: Offer, author: str | None, comment: str | None
    ) -> None:
        conn.execute(
            self._q(
                "INSERT INTO {schema}.offer_versions (offer_id, version, body, author, comment) "
                "VALUES (%s, %s, %s, %s, %s)"
            ),
            (offer.id, offer.version, Jsonb(offer.model_dump(mode="json")), author, comment),
        )

    # ------------------------------------------------------------------- reads

    _SELECT = (
        "SELECT o.id, o.active, o.current_version, o.updated_at, v.body, v.created_at, "
        "v.author, v.comment FROM {schema}.offers o JOIN {schema}.offer_versions v "
        "ON v.offer_id = o.id "
    )

    def show(self, offer_id: str, version: int | None = None) -> StoredOffer:
        with self._conn() as conn:
            row = conn.execute(
                self._q(self._SELECT + "WHERE o.id = %s AND v.version = %s"),
                (offer_id, version) if version is not None else (offer_id, None),
            ).fetchone()
            if row is None and version is None:
                row = conn.execute(
                    self._q(self._SELECT + "WHERE o.id = %s AND v.version = o.current_version"),
                    (offer_id,),
                ).fetchone()
        if row is None:
            what = f"offer {offer_id!r}" + (f" version {version}" if version else "")
            raise OfferNotFoundError(f"no {what}")
        return _stored(row)

    def all(self) -> list[StoredOffer]:
        with self._conn() as conn:
            rows = conn.execute(
                self._q(self._SELECT + "WHERE v.version = o.current_version ORDER BY o.id")
            ).fetchall()
        return [_stored(r) for r in rows]

    def active_offers(self) -> list[Offer]:
        """The current version of every active offer: what the worker evaluates."""
        return [s.offer for s in self.all() if s.active]

    def advice(self, offer_ids: Iterable[str], now: datetime | None = None) -> list[str]:
        """Warnings about the active offers ``offer_ids`` just made live: a window that
        has ended, or another active offer paying for the same event
        (``services.rules.advice``)."""
        active = self.active_offers()
        wanted = set(offer_ids)
        return advise([o for o in active if o.id in wanted], active, now or datetime.now(UTC))

    def signature(self) -> tuple[int, str]:
        """Changes whenever any offer is created, updated, activated or deactivated."""
        with self._conn() as conn:
            row = conn.execute(
                self._q(
                    "SELECT count(*) AS n, coalesce(max(updated_at)::text, '') AS at "
                    "FROM {schema}.offers"
                )
            ).fetchone()
        assert row is not None
        return int(row["n"]), str(row["at"])


def _validated(body: Mapping[str, Any], *, version: int) -> Offer:
    return parse_offer({**body, "version": version}, source=f"offer {body.get('id', '?')}")


def _stored(row: Mapping[str, Any]) -> StoredOffer:
    offer = parse_offer(row["body"], source=f"stored offer {row['id']}")
    return StoredOffer(
        offer=offer,
        active=row["active"],
        current_version=row["current_version"],
        created_at=row["created_at"],
        author=row["author"],
        comment=row["comment"],
        updated_at=row["updated_at"],
    )
