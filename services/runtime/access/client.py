"""The client side of API credentials, for services, the demo and the benches."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence

import httpx
from pydantic import SecretStr

from services.runtime.access import credential_store
from services.runtime.access.signing import Secret, authorization
from services.runtime.db import connect
from services.runtime.settings import DatabaseSettings


class SignedAuth(httpx.Auth):
    """Signs every request of an ``httpx`` client with a credential's secret string
    (``sl1.<key_id>.<key>``, from ``social-loyalty credentials create`` or
    ``ensure_credential``)::

        client = httpx.Client(base_url=..., auth=SignedAuth(secret))

    Each request gets a fresh nonce and the current time, and the signature covers the
    method, the path with query and the body, so a retry is a new signed request (a
    resent copy of the same bytes is refused as a replay). Works with sync and async
    clients (``httpx``; Starlette's ``TestClient`` is ``httpx2`` and needs a real port
    instead). Raises ``CredentialError`` on a malformed secret."""

    requires_request_body = True

    def __init__(self, secret: str, *, clock: Callable[[], float] = time.time) -> None:
        self._secret = Secret.parse(secret)
        self._clock = clock

    @property
    def key_id(self) -> str:
        return self._secret.key_id

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = authorization(
            self._secret,
            request.method,
            request.url.raw_path,
            request.content,
            ts=int(self._clock()),
        )
        yield request


def ensure_credential(database_url: str, schema: str, name: str, scopes: Sequence[str]) -> str:
    """Create a fresh credential named ``name`` with ``scopes`` in ``schema`` (migrating
    the schema first) and return its secret, for the demo, the benches and tests that
    start the APIs themselves. Every call makes a new key: the secret of an existing
    one cannot be recovered (only its public half is stored). Raises
    ``DatabaseUnavailableError`` or ``CredentialError`` (an unknown scope)."""
    with connect(DatabaseSettings(database_url=SecretStr(database_url))) as conn:
        credential_store.migrate(conn, schema)
        _, secret = credential_store.create(conn, schema, name, list(scopes))
    return secret
