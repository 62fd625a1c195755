"""The server side of API credentials: ``AccessGate`` checks a signed request against
the database, ``require(scope)`` is the FastAPI dependency every protected route has.

``create_api(..., access=AccessGate(...))`` opens the gate's connection pool in the
app's lifespan (and migrates the credentials schema), so every API verifies the same
way whatever its own handlers do (async pools, sync stores on the thread pool).

Refusals: no, malformed or badly signed ``Authorization``, an unknown or revoked key,
a ``ts`` more than ``ACCESS_CLOCK_SKEW_S`` from the server's clock, or a nonce that key
used before: 401 with ``WWW-Authenticate: SL-Ed25519``. A valid credential without the
route's scope: 403. The checks run before the handler, and the nonce is recorded only
once the signature verified (nobody can burn another key's nonces). The credentials
store unreachable: 503 (with ``Retry-After``, like every 503 of the API edge).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from fastapi import HTTPException, Request, Security
from fastapi.security.http import HTTPBase
from psycopg_pool import AsyncConnectionPool
from starlette.types import Scope

from services.runtime.access import credential_store
from services.runtime.access.signing import SCHEME, SCOPES, CredentialError, Signed
from services.runtime.pgpool import UNAVAILABLE, api_pool
from services.runtime.settings import AccessSettings, DatabaseSettings

log = logging.getLogger(__name__)

PURGE_EVERY_S: Final = 60.0
CHALLENGE: Final = {"WWW-Authenticate": SCHEME}


@dataclass(frozen=True)
class Caller:
    """Who signed the request (``request.state.caller`` in a handler)."""

    key_id: str
    name: str
    scopes: tuple[str, ...]


def refused(reason: str) -> HTTPException:
    return HTTPException(401, f"not authenticated: {reason}", headers=CHALLENGE)


def request_target(scope: Scope) -> bytes:
    """The path with its query as the client sent them (what the client signed)."""
    path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    query: bytes = scope.get("query_string", b"")
    return path + b"?" + query if query else path


class AccessGate:
    """Verifies signed requests for one API process; its pool lives in the app's lifespan."""

    def __init__(
        self,
        settings: AccessSettings,
        database: DatabaseSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.database = database
        self._clock = clock
        self._pool: AsyncConnectionPool | None = None
        self._purged_at = 0.0

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[None]:
        """Open the pool and bring the credentials schema up to date."""
        pool = api_pool(self.database, name="access", max_size=4)
        await pool.open(wait=True, timeout=self.database.connect_timeout_s * 2)
        try:
            async with pool.connection() as conn:
                await credential_store.migrate_async(conn, self.settings.db_schema)
            self._pool = pool
            yield
        finally:
            self._pool = None
            await pool.close()

    async def authenticate(
        self, authorization: str | None, method: str, target: bytes, body: bytes
    ) -> Caller:
        """The caller, or an ``HTTPException`` 401 (503 when the store is down)."""
        try:
            signed = Signed.parse(authorization)
        except CredentialError as exc:
            raise refused(str(exc)) from None
        skew = self.settings.clock_skew_s
        if not signed.fresh(self._clock(), skew):
            raise refused(f"ts is more than {skew} s from the server's clock")
        if self._pool is None:
            raise HTTPException(503, "the API has not started")
        schema = self.settings.db_schema
        try:
            async with self._pool.connection() as conn:
                found = await credential_store.lookup(conn, schema, signed.key_id)
                if found is None or found.revoked_at is not None:
                    raise refused("unknown or revoked key")
                if not signed.verifies(found.public_key, method, target, body):
                    raise refused("the signature does not match the request")
                if not await credential_store.use_nonce(
                    conn, schema, signed.key_id, signed.nonce, signed.ts + skew
                ):
                    raise refused("this nonce was used before (a replayed request)")
                await self._purge(conn)
        except UNAVAILABLE as exc:  # answered 503 with Retry-After (services.runtime.httpapi)
            log.warning("credential check failed: %s", exc)
            raise HTTPException(503, "the credentials store is unavailable") from None
        return Caller(found.key_id, found.name, found.scopes)

    async def _purge(self, conn: psycopg.AsyncConnection[Any]) -> None:
        now = time.monotonic()
        if now - self._purged_at < PURGE_EVERY_S:
            return
        self._purged_at = now
        gone = await credential_store.purge_nonces(
            conn, self.settings.db_schema, self.settings.clock_skew_s
        )
        log.debug("purged %d expired nonces", gone)


class _SignedScheme(HTTPBase):
    """The OpenAPI security scheme; yields the raw header (the gate parses it)."""

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        return request.headers.get("authorization")


SIGNED: Final = _SignedScheme(
    scheme=SCHEME,
    scheme_name=SCHEME,
    auto_error=False,
    description=(
        "`Authorization: SL-Ed25519 key=<key id>, ts=<unix seconds>, nonce=<random>, "
        "sig=<base64url>`: an Ed25519 signature over the lines ts, nonce, METHOD, path with "
        "query and the SHA-256 (hex) of the body. Credentials are made with `social-loyalty "
        "credentials create`; each route lists the scope it needs. Scopes: "
        + ", ".join(f"`{s}`" for s in SCOPES)
        + ". See docs/security.md."
    ),
)


def require(scope: str) -> Callable[..., Awaitable[Caller]]:
    """The dependency of a route that needs ``scope``:
    ``dependencies=[Depends(require("links:write"))]``. 401 without a valid signed
    request, 403 when the credential lacks the scope. The app must be built with
    ``create_api(..., access=AccessGate(...))``."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    # A default, not Annotated: the annotation is a string here and cannot see ``scope``.
    async def check(
        request: Request,
        authorization: str | None = Security(SIGNED, scopes=[scope]),
    ) -> Caller:
        gate = getattr(request.app.state, "access", None)
        if not isinstance(gate, AccessGate):
            raise RuntimeError("this API was built without an AccessGate")
        body = await request.body()
        caller = await gate.authenticate(
            authorization, request.method, request_target(request.scope), body
        )
        if scope not in caller.scopes:
            raise HTTPException(403, f"this credential lacks the scope {scope}")
        request.state.caller = caller
        return caller

    check.__name__ = f"require_{scope.replace(':', '_')}"
    return check


_UNAUTHENTICATED: Final = (
    "No valid signed request: none, malformed or a bad signature, an unknown or revoked "
    "key, a time too far off, or a replayed nonce."
)


def document(openapi: dict[str, Any]) -> dict[str, Any]:
    """Add the 401 and 403 answers to every operation that has a security requirement
    (in place; returns the document). A route that already answers 401 for its own
    reason (a refused identity proof) keeps it, with this reason added."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for operations in openapi.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or not operation.get("security"):
                continue
            scopes = sorted({s for req in operation["security"] for v in req.values() for s in v})
            responses = operation.setdefault("responses", {})
            for status, why in (
                ("401", _UNAUTHENTICATED),
                ("403", f"The credential lacks the scope {', '.join(scopes)}."),
            ):
                if status in responses:
                    responses[status]["description"] += f" Or: {why}"
                else:
                    responses[status] = {"description": why, "content": error}
    return openapi
