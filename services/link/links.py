"""Profile links: the store (PostgreSQL) and the event publisher behind the link API.

A link is written to PostgreSQL first, with its event id and ``published=false``,
then its ``ProfileLinked`` is produced and, once the broker acknowledges it,
marked published. The event's time (and so its deterministic ``event_id``) is the
stored ``linked_at``, so when the produce fails the Personal Account's retry of the
same request re-sends the very same event, and downstream drops a duplicate by id;
pending events are also re-sent when the API starts. An unlink works the same
way with ``unlinked_at``. The partial unique index on active links is what makes a
profile belong to at most one member, even under concurrent requests.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from confluent_kafka import KafkaError, Message
from psycopg import sql
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from services.contracts import bounds
from services.contracts.bounds import MEMBER_ID_PATTERN
from services.contracts.codec import Codec
from services.contracts.headers import contract_headers
from services.contracts.models import Network, ProfileLinked, ProfileUnlinked
from services.link.identity import Proof
from services.runtime import kafka
from services.runtime.settings import KafkaSettings

log = logging.getLogger(__name__)

MEMBER_ID = MEMBER_ID_PATTERN


class ProfileLink(BaseModel):
    """A verified profile to link to a member (built from a verified proof, never from a
    caller's word)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    network: Network
    social_user_id: str = Field(min_length=1, max_length=255)
    member_id: str = Field(pattern=MEMBER_ID)
    registration: bool = False

    @field_validator("social_user_id")
    @classmethod
    def _id_fits_network(cls, value: str, info: ValidationInfo) -> str:
        network = info.data.get("network")
        if isinstance(network, Network):
            check_social_user_id(network, value)
        return value


class LinkRequest(BaseModel):
    """Body of ``POST /v1/links``: link the profile the proof names to ``member_id``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    member_id: str = Field(pattern=MEMBER_ID)
    proof: Proof = Field(description="What the identity provider gave the browser or device.")


class SignInRequest(BaseModel):
    """Body of ``POST /v1/sign-in``: who is this verified profile's member? With
    ``register``, a profile linked to nobody registers a new member (``member_id`` if
    given, else a new id the link service creates)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    proof: Proof = Field(description="What the identity provider gave the browser or device.")
    register_new: bool = Field(
        default=False,
        alias="register",
        description="Register a new member when the profile has none.",
    )
    member_id: str | None = Field(
        default=None,
        pattern=MEMBER_ID,
        description="The new member's id when registering; omit it to have one created.",
    )


def new_member_id() -> str:
    """A fresh member id for a registration: random, so it says nothing about the profile."""
    return f"m-{uuid.uuid4().hex}"


def check_social_user_id(network: Network, social_user_id: str) -> None:
    bounds.check_social_user_id(network.value, social_user_id)


@dataclass(frozen=True)
class LinkRow:
    id: int
    member_id: str
    network: Network
    social_user_id: str
    registration: bool
    linked_at: datetime
    link_event_id: str
    link_published: bool
    unlinked_at: datetime | None
    unlink_event_id: str | None
    unlink_published: bool

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> LinkRow:
        return cls(**{**row, "network": Network(row["network"])})

    def linked_event(self) -> ProfileLinked:
        return ProfileLinked.build(
            network=self.network,
            social_user_id=self.social_user_id,
            member_id=self.member_id,
            registration=self.registration,
            observed_at=self.linked_at,
            snapshot_at=self.linked_at,
        )

    def unlinked_event(self) -> ProfileUnlinked:
        assert self.unlinked_at is not None
        return ProfileUnlinked.build(
            network=self.network,
            social_user_id=self.social_user_id,
            member_id=self.member_id,
            registration=self.registration,
            observed_at=self.unlinked_at,
            snapshot_at=self.unlinked_at,
        )

    def public(self) -> dict[str, object]:
        return {
            "member_id": self.member_id,
            "network": self.network.value,
            "social_user_id": self.social_user_id,
            "registration": self.registration,
            "linked_at": self.linked_at.isoformat(),
        }


LinkOutcome = Literal["created", "existing", "conflict"]


class LinkStore:
    """Links in ``<schema>.links``; every method is one short transaction."""

    def __init__(self, schema: str) -> None:
        self._links = sql.SQL("{}.links").format(sql.Identifier(schema))
        self._nonces = sql.SQL("{}.apple_nonces").format(sql.Identifier(schema))

    async def link(
        self, conn: psycopg.AsyncConnection[Any], request: ProfileLink, now: datetime
    ) -> tuple[LinkOutcome, LinkRow]:
        event_id = ProfileLinked.build(
            network=request.network,
            social_user_id=request.social_user_id,
            member_id=request.member_id,
            registration=request.registration,
            observed_at=now,
            snapshot_at=now,
        ).event_id
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                sql.SQL(
                    "INSERT INTO {} (member_id, network, social_user_id, registration, linked_at, "
                    "link_event_id) VALUES (%s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (network, social_user_id) WHERE unlinked_at IS NULL DO NOTHING "
                    "RETURNING *"
                ).format(self._links),
                (
                    request.member_id,
                    request.network.value,
                    request.social_user_id,
                    request.registration,
                    now,
                    event_id,
                ),
            )
            row = await cur.fetchone()
            if row is not None:
                return "created", LinkRow.from_row(row)
            await cur.execute(
                sql.SQL(
                    "SELECT * FROM {} WHERE network = %s AND social_user_id = %s "
                    "AND unlinked_at IS NULL"
                ).format(self._links),
                (request.network.value, request.social_user_id),
            )
            existing = await cur.fetchone()
        if existing is None:  # unlinked between the two statements: try once more
            return await self.link(conn, request, now)
        link = LinkRow.from_row(existing)
        return ("existing" if link.member_id == request.member_id else "conflict"), link

    async def unlink(
        self,
        conn: psycopg.AsyncConnection[Any],
        member_id: str,
        network: Network,
        social_user_id: str,
        now: datetime,
    ) -> LinkRow | None:
        """The member's link just ended, or the member's last ended one whose event is still
        unsent; else None (also when the profile is linked to another member)."""
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                sql.SQL(
                    "SELECT * FROM {} WHERE network = %s AND social_user_id = %s "
                    "AND member_id = %s AND unlinked_at IS NULL FOR UPDATE"
                ).format(self._links),
                (network.value, social_user_id, member_id),
            )
            active = await cur.fetchone()
            if active is not None:
                ended = LinkRow.from_row({**active, "unlinked_at": now})
                await cur.execute(
                    sql.SQL(
                        "UPDATE {} SET unlinked_at = %s, unlink_event_id = %s WHERE id = %s "
                        "RETURNING *"
                    ).format(self._links),
                    (now, ended.unlinked_event().event_id, active["id"]),
                )
                row = await cur.fetchone()
                return None if row is None else LinkRow.from_row(row)
            await cur.execute(
                sql.SQL(
                    "SELECT * FROM {} WHERE network = %s AND social_user_id = %s "
                    "AND member_id = %s AND unlinked_at IS NOT NULL AND NOT unlink_published "
                    "ORDER BY unlinked_at DESC LIMIT 1"
                ).format(self._links),
                (network.value, social_user_id, member_id),
            )
            pending = await cur.fetchone()
        return None if pending is None else LinkRow.from_row(pending)

    async def active(
        self, conn: psycopg.AsyncConnection[Any], network: Network, social_user_id: str
    ) -> LinkRow | None:
        """The profile's active link, if any."""
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                sql.SQL(
                    "SELECT * FROM {} WHERE network = %s AND social_user_id = %s "
                    "AND unlinked_at IS NULL"
                ).format(self._links),
                (network.value, social_user_id),
            )
            row = await cur.fetchone()
        return None if row is None else LinkRow.from_row(row)

    async def remember_nonce(
        self, conn: psycopg.AsyncConnection[Any], nonce: str, expires_at: datetime
    ) -> bool:
        """Record a Sign in with Apple nonce until its token expires; False if it was seen
        (and is not yet expired). Expired nonces are pruned on the way."""
        async with conn.transaction():
            await conn.execute(
                sql.SQL("DELETE FROM {} WHERE expires_at < now()").format(self._nonces)
            )
            cur = await conn.execute(
                sql.SQL(
                    "INSERT INTO {} (nonce, expires_at) VALUES (%s, %s) "
                    "ON CONFLICT (nonce) DO NOTHING"
                ).format(self._nonces),
                (nonce, expires_at),
            )
            return cur.rowcount == 1

    async def mark_published(
        self, conn: psycopg.AsyncConnection[Any], link_id: int, which: Literal["link", "unlink"]
    ) -> None:
        column = sql.Identifier(f"{which}_published")
        await conn.execute(
            sql.SQL("UPDATE {} SET {} = true WHERE id = %s").format(self._links, column),
            (link_id,),
        )

    async def of_member(self, conn: psycopg.AsyncConnection[Any], member_id: str) -> list[LinkRow]:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                sql.SQL(
                    "SELECT * FROM {} WHERE member_id = %s AND unlinked_at IS NULL "
                    "ORDER BY linked_at, id"
                ).format(self._links),
                (member_id,),
            )
            return [LinkRow.from_row(row) for row in await cur.fetchall()]

    async def pending(self, conn: psycopg.AsyncConnection[Any]) -> list[LinkRow]:
        """Links or unlinks whose event the broker never acknowledged, oldest first."""
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                sql.SQL(
                    "SELECT * FROM {} WHERE NOT link_published "
                    "OR (unlinked_at IS NOT NULL AND NOT unlink_published) ORDER BY linked_at, id"
                ).format(self._links)
            )
            return [LinkRow.from_row(row) for row in await cur.fetchall()]


class DeliveryError(RuntimeError):
    """The broker did not acknowledge an event in time, or refused it."""


class EventSender:
    """An idempotent producer whose sends can be awaited until the broker's ack."""

    def __init__(self, settings: KafkaSettings, codec: Codec, topic: str) -> None:
        self._producer = kafka.producer(settings, "link-api")
        self._codec = codec
        self.topic = topic
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="link-api-producer", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def send(self, event: ProfileLinked | ProfileUnlinked, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[None] = loop.create_future()

        def settle(err: KafkaError | None) -> None:
            if acked.done():
                return
            if err is None:
                acked.set_result(None)
            else:
                acked.set_exception(DeliveryError(f"the broker refused the event: {err.str()}"))

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            loop.call_soon_threadsafe(settle, err)

        self._producer.produce(
            self.topic,
            key=event.key().to_bytes(),
            value=self._codec.encode(event, self.topic),
            headers=contract_headers(event, "link-api"),
            on_delivery=delivered,
        )
        try:
            await asyncio.wait_for(acked, timeout_s)
        except TimeoutError as exc:
            raise DeliveryError(f"no acknowledgement from the broker within {timeout_s}s") from exc

    def close(self) -> None:
        self._stop.set()
        self._poller.join(timeout=5)
        self._producer.flush(10)


def utc_now_millis() -> datetime:
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)
