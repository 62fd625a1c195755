"""The link API (aiohttp) for the Personal Account, on the shared HTTP edge.

``POST /v1/links`` answers 201 only after the broker acknowledged the
``ProfileLinked`` event, so the member's points can follow within seconds; a
repeat of the same link answers 200 and sends nothing. ``/healthz``, ``/readyz``
and ``/metrics`` come from ``services.runtime.http.create_app``.

Authentication (when ``COLLECTOR_LINK_SECRET`` is set): the Personal Account sends
``X-Timestamp: <unix seconds>`` and ``X-Signature: <hex HMAC-SHA256>`` over
``"<timestamp>\\n<METHOD>\\n<path with query>\\n<body>"``; a missing, wrong or
stale signature is a 401.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from services.collector import metrics, openapi
from services.collector.links import (
    DeliveryError,
    EventSender,
    Link,
    LinkRequest,
    LinkStore,
    RegistrationRequest,
    check_social_user_id,
    utc_now_millis,
)
from services.collector.settings import CollectorSettings
from services.collector.store import migrate
from services.contracts.codec import make_codec
from services.contracts.models import Network
from services.contracts.topics import EVENTS
from services.runtime.http import create_app

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Body = TypeVar("Body", LinkRequest, RegistrationRequest)

POOL: web.AppKey[AsyncConnectionPool] = web.AppKey("pool", AsyncConnectionPool)
SENDER: web.AppKey[EventSender] = web.AppKey("sender", EventSender)


def sign(secret: str, timestamp: str, method: str, path_qs: str, body: bytes) -> str:
    """The ``X-Signature`` a Personal Account sends (also used by tests and docs)."""
    message = f"{timestamp}\n{method.upper()}\n{path_qs}\n".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _error(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _invalid(fields: list[dict[str, str]]) -> web.Response:
    return web.json_response({"error": "invalid request", "fields": fields}, status=422)


async def _parse(request: web.Request, model: type[Body]) -> Body | web.Response:
    """The validated body, or the 422 that names the offending fields."""
    try:
        raw: Any = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raw = None
    if not isinstance(raw, dict):
        return _invalid([{"field": "body", "message": "not a JSON object"}])
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        return _invalid(
            [
                {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]}
                for err in exc.errors()
            ]
        )


class LinkApi:
    """The /v1 handlers and the resources they share (a PG pool, the event sender)."""

    def __init__(self, settings: CollectorSettings, app: web.Application) -> None:
        self.settings = settings
        self.app = app
        self.store = LinkStore(settings.db_schema)
        self.secret = settings.link_secret.get_secret_value() if settings.link_secret else None
        self.timeout_s = settings.link_ack_timeout_s
        self.not_ready: str | None = "starting"

    @web.middleware
    async def authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.secret is None or not request.path.startswith("/v1/"):
            return await handler(request)
        stamp = request.headers.get("X-Timestamp", "")
        given = request.headers.get("X-Signature", "")
        if not stamp.isdigit() or not given:
            return _error(401, "missing X-Timestamp or X-Signature header")
        if abs(time.time() - int(stamp)) > self.settings.link_signature_max_age_s:
            return _error(401, "X-Timestamp is too old or in the future")
        body = await request.read()
        wanted = sign(self.secret, stamp, request.method, request.path_qs, body)
        if not hmac.compare_digest(wanted, given.lower()):
            return _error(401, "bad signature")
        return await handler(request)

    async def publish_linked(self, link: Link) -> None:
        await self.app[SENDER].send(link.linked_event(), self.timeout_s)
        async with self.app[POOL].connection() as conn:
            await self.store.mark_published(conn, link.id, "link")
        metrics.LINK_EVENTS.labels(link.network.value, "ProfileLinked").inc()

    async def publish_unlinked(self, link: Link) -> None:
        if not link.link_published:  # keep link before unlink on the user's partition
            await self.publish_linked(link)
        await self.app[SENDER].send(link.unlinked_event(), self.timeout_s)
        async with self.app[POOL].connection() as conn:
            await self.store.mark_published(conn, link.id, "unlink")
        metrics.LINK_EVENTS.labels(link.network.value, "ProfileUnlinked").inc()

    async def _link(self, body: LinkRequest) -> tuple[int, Link]:
        """Store the link and publish its event: 201 new, 200 the same link again, 409 the
        profile is another member's (that member's link). ``DeliveryError`` if no ack."""
        async with self.app[POOL].connection() as conn:
            outcome, link = await self.store.link(conn, body, utc_now_millis())
        if outcome == "conflict":
            return 409, link
        if outcome == "existing" and link.link_published:
            return 200, link
        await self.publish_linked(link)
        return 201, link

    async def post_link(self, request: web.Request) -> web.Response:
        body = await _parse(request, LinkRequest)
        if isinstance(body, web.Response):
            return body
        try:
            status, link = await self._link(body)
        except DeliveryError as exc:
            return _error(503, f"link stored but its event is not confirmed: {exc}; retry")
        if status == 409:
            return _error(
                409,
                f"{body.network.value} profile {body.social_user_id} is already linked to "
                "another member; unlink it there first",
            )
        answer = openapi.LinkResponse(
            link=openapi.LinkView.model_validate(link.public()),
            event_id=link.link_event_id,
            created=status == 201,
        )
        return web.json_response(answer.model_dump(mode="json"), status=status)

    async def post_registration(self, request: web.Request) -> web.Response:
        """A new member signs up with a social profile: ProfileLinked with registration=true."""
        body = await _parse(request, RegistrationRequest)
        if isinstance(body, web.Response):
            return body
        try:
            status, link = await self._link(body.as_link())
        except DeliveryError as exc:
            return _error(503, f"registration stored but its event is not confirmed: {exc}; retry")
        if status == 409:
            refused = openapi.ErrorResponse(
                error=f"{body.network.value} profile {body.social_user_id} is already "
                "registered to a member; sign in instead",
                member_id=link.member_id,
            )
            return web.json_response(refused.model_dump(mode="json"), status=409)
        answer = openapi.RegistrationResponse(
            member_id=link.member_id,
            link=openapi.LinkView.model_validate(link.public()),
            event_id=link.link_event_id,
            created=status == 201,
        )
        return web.json_response(answer.model_dump(mode="json"), status=status)

    async def delete_link(self, request: web.Request) -> web.Response:
        try:
            network = Network(request.match_info["network"])
        except ValueError:
            return _invalid([{"field": "network", "message": "must be vk, ok or apple"}])
        social_user_id = request.match_info["social_user_id"]
        try:
            check_social_user_id(network, social_user_id)
        except ValueError as exc:
            return _invalid([{"field": "social_user_id", "message": str(exc)}])
        async with self.app[POOL].connection() as conn:
            link = await self.store.unlink(conn, network, social_user_id, utc_now_millis())
        if link is None:
            return _error(404, f"{network.value} profile {social_user_id} is not linked")
        try:
            await self.publish_unlinked(link)
        except DeliveryError as exc:
            return _error(503, f"unlink stored but its event is not confirmed: {exc}; retry")
        assert link.unlink_event_id is not None
        answer = openapi.UnlinkResponse(
            unlinked=openapi.LinkView.model_validate(link.public()), event_id=link.unlink_event_id
        )
        return web.json_response(answer.model_dump(mode="json"))

    async def member_links(self, request: web.Request) -> web.Response:
        member_id = request.match_info["member_id"]
        async with self.app[POOL].connection() as conn:
            links = await self.store.of_member(conn, member_id)
        answer = openapi.MemberLinks(
            member_id=member_id, links=[openapi.LinkView.model_validate(x.public()) for x in links]
        )
        return web.json_response(answer.model_dump(mode="json"))

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        settings = self.settings
        pool = AsyncConnectionPool(
            settings.database.database_url.get_secret_value(),
            min_size=1,
            max_size=8,
            kwargs={"autocommit": True},
            open=False,
        )
        await pool.open(wait=True, timeout=settings.database.connect_timeout_s * 2)
        async with pool.connection() as conn:
            await migrate(conn, settings.db_schema)
        app[POOL] = pool
        app[SENDER] = EventSender(
            settings.kafka, make_codec(settings.kafka), settings.topics.name(EVENTS)
        )
        await self.resend_pending()
        self.not_ready = None
        yield
        self.not_ready = "stopping"
        app[SENDER].close()
        await pool.close()

    async def resend_pending(self) -> None:
        """Events a previous process stored but never saw acknowledged, in link order."""
        async with self.app[POOL].connection() as conn:
            pending = await self.store.pending(conn)
        for link in pending:
            try:
                if link.unlinked_at is not None:
                    await self.publish_unlinked(link)
                else:
                    await self.publish_linked(link)
            except DeliveryError as exc:
                log.warning("pending event of link %d still unsent: %s", link.id, exc)


def create_link_app(settings: CollectorSettings) -> web.Application:
    """The link API with the standard endpoints; opens PG and Kafka on startup."""
    holder: list[LinkApi] = []
    app = create_app("collector", ready=lambda: holder[0].not_ready)
    api = LinkApi(settings, app)
    holder.append(api)
    app.middlewares.append(api.authenticate)
    app.cleanup_ctx.append(api.lifecycle)
    document = openapi.document()

    async def openapi_json(_: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_post("/v1/links", api.post_link)
    app.router.add_post("/v1/registrations", api.post_registration)
    app.router.add_delete("/v1/links/{network}/{social_user_id}", api.delete_link)
    app.router.add_get("/v1/members/{member_id}/links", api.member_links)
    return app
