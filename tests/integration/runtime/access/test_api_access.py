"""Every route of every API, enumerated from the app's router (not from a document that
could leave one out): without a credential 401, without the route's scope 403, a
replayed signed request 401 (also against another process of the same API), with the
scope neither. A revoked key and a request from too long ago are 401 too."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Final

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry

from services.actions.ledger_api import create_api_app
from services.actions.schema import migrate as migrate_ledger
from services.actions.settings import ActionsSettings
from services.contracts.topics import TopicSettings
from services.link.link_api import create_link_app
from services.link.settings import LinkSettings
from services.readmodel.read_model import create_http_app
from services.readmodel.read_model import migrate as migrate_readmodel
from services.readmodel.settings import ReadModelSettings
from services.rules.offer_store import OfferStore
from services.rules.offers_api import create_app as create_offers_app
from services.rules.settings import RulesSettings
from services.runtime.access import SCOPES, AccessSettings, SignedAuth, ensure_credential
from services.runtime.access import credential_store as credentials
from services.runtime.access.signing import Secret, authorization
from services.runtime.db import connect
from services.runtime.httpapi import BackgroundApi, serve_api_in_thread
from services.runtime.settings import DatabaseSettings, KafkaSettings

OPEN: Final = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"})
OPEN_PREFIXES: Final = ("/docs/",)

SCOPE_OF: Final[dict[str, dict[tuple[str, str], str]]] = {
    "link": {
        ("POST", "/v1/links"): "links:write",
        ("POST", "/v1/sign-in"): "signin",
        ("DELETE", "/v1/members/{member_id}/links/{network}/{social_user_id}"): "links:write",
        ("GET", "/v1/members/{member_id}/links"): "links:read",
    },
    "offers": {
        ("GET", "/offers"): "offers:read",
        ("POST", "/offers"): "offers:admin",
        ("GET", "/offers/{offer_id}"): "offers:read",
        ("PUT", "/offers/{offer_id}"): "offers:admin",
        ("POST", "/offers/{offer_id}/activate"): "offers:admin",
        ("POST", "/offers/{offer_id}/deactivate"): "offers:admin",
        ("POST", "/offers/load-examples"): "offers:admin",
    },
    "ledger": {
        ("GET", "/v1/members/{member_id}/balance"): "ledger:read",
        ("GET", "/v1/members/{member_id}/entries"): "ledger:read",
        ("GET", "/v1/members/{member_id}/deliveries"): "ledger:read",
    },
    "readmodel": {
        ("GET", "/v1/profiles/{network}/{social_user_id}"): "readmodel:read",
        ("GET", "/v1/groups/{network}/{group_id}/members"): "readmodel:read",
    },
}
"""The scope each route must need. A new route fails the test until it is listed here."""

PARAMS: Final = {
    "member_id": "m-1",
    "network": "vk",
    "social_user_id": "1",
    "offer_id": "likes-5-then-1",
    "group_id": "5",
}


@pytest.fixture(scope="module")
def schemas(database_url: str) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:8]
    names = {k: f"t_acc_{k}_{tag}" for k in ("access", "ledger", "readmodel", "offers", "link")}
    with psycopg.connect(database_url, autocommit=True) as conn:
        migrate_ledger(conn, names["ledger"])
        migrate_readmodel(conn, names["readmodel"], f"t.acc.{tag}")
    yield names
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture(scope="module")
def access(schemas: dict[str, str]) -> AccessSettings:
    return AccessSettings(db_schema=schemas["access"])


def build(
    name: str,
    schemas: dict[str, str],
    access: AccessSettings,
    database: DatabaseSettings,
    kafka_settings: KafkaSettings,
) -> FastAPI:
    if name == "link":
        return create_link_app(
            LinkSettings(
                kafka=kafka_settings,
                database=database,
                topics=TopicSettings(prefix=f"t.acc.{uuid.uuid4().hex[:8]}."),
                db_schema=schemas["link"],
                access=access,
            )
        )
    if name == "offers":
        settings = RulesSettings(database=database, db_schema=schemas["offers"], access=access)
        store = OfferStore(database, schemas["offers"])
        store.migrate()
        return create_offers_app(store, settings)
    if name == "ledger":
        ledger = ActionsSettings(database=database, db_schema=schemas["ledger"], access=access)
        return create_api_app(ledger, lambda: None)
    readmodel = ReadModelSettings(database=database, db_schema=schemas["readmodel"], access=access)
    return create_http_app(readmodel, CollectorRegistry(), lambda: None)


@pytest.fixture(scope="module")
def served(
    schemas: dict[str, str],
    access: AccessSettings,
    database_settings: DatabaseSettings,
    kafka_settings: KafkaSettings,
) -> Iterator[dict[str, tuple[FastAPI, str]]]:
    servers: list[BackgroundApi] = []
    out: dict[str, tuple[FastAPI, str]] = {}
    try:
        for name in SCOPE_OF:
            app = build(name, schemas, access, database_settings, kafka_settings)
            server = serve_api_in_thread(app, "127.0.0.1", 0)
            servers.append(server)
            out[name] = (app, f"http://127.0.0.1:{server.port}")
        yield out
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def secrets(database_url: str, access: AccessSettings) -> dict[str, dict[str, str]]:
    """Per scope: a credential with only that scope, and one with every other scope."""
    made: dict[str, dict[str, str]] = {"only": {}, "all_but": {}}
    for scope in SCOPES:
        made["only"][scope] = ensure_credential(
            database_url, access.db_schema, f"only {scope}", [scope]
        )
        others = [s for s in SCOPES if s != scope]
        made["all_but"][scope] = ensure_credential(
            database_url, access.db_schema, f"all but {scope}", others
        )
    return made


def routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app serves outside the open endpoints."""
    found: list[tuple[str, str]] = []
    for route in app.routes:
        path = getattr(route, "path", "")
        if path in OPEN or path.startswith(OPEN_PREFIXES):
            continue
        assert isinstance(route, APIRoute), f"{path}: not an API route, cannot be checked"
        found += [(method, route.path) for method in sorted(route.methods or ())]
    return found


def concrete(path: str) -> str:
    return path.format(**PARAMS)


def body_of(method: str) -> bytes | None:
    return b"{}" if method in ("POST", "PUT") else None


def send(
    base: str, method: str, path: str, auth: httpx.Auth | None = None, signed: str | None = None
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signed is not None:
        headers["Authorization"] = signed
    return httpx.request(
        method,
        f"{base}{concrete(path)}",
        content=body_of(method),
        headers=headers,
        auth=auth,
        timeout=30,
    )


def assert_unauthenticated(response: httpx.Response, what: str) -> None:
    assert response.status_code == 401, (what, response.status_code, response.text)
    assert response.headers["www-authenticate"] == "SL-Ed25519", what
    body = response.json()
    assert isinstance(body["error"], str) and body["detail"] == [], what


@pytest.mark.parametrize("name", sorted(SCOPE_OF))
def test_every_route_needs_a_signed_request_with_its_scope(
    name: str,
    served: dict[str, tuple[FastAPI, str]],
    secrets: dict[str, dict[str, str]],
) -> None:
    app, base = served[name]
    found = routes(app)
    assert sorted(found) == sorted(SCOPE_OF[name]), "a route without a listed scope"
    document = httpx.get(f"{base}/openapi.json").json()
    for method, path in found:
        scope = SCOPE_OF[name][(method, path)]
        what = f"{name}: {method} {path}"
        operation = document["paths"][path][method.lower()]
        assert operation["security"] == [{"SL-Ed25519": [scope]}], what
        assert {"401", "403"} <= set(operation["responses"]), what

        assert_unauthenticated(send(base, method, path), f"{what} without a credential")

        wrong = send(base, method, path, SignedAuth(secrets["all_but"][scope]))
        assert wrong.status_code == 403, (what, wrong.text)
        assert scope in wrong.json()["error"], what

        secret = Secret.parse(secrets["only"][scope])
        target = concrete(path).encode()
        header = authorization(secret, method, target, body_of(method) or b"", ts=int(time.time()))
        first = send(base, method, path, signed=header)
        assert first.status_code not in (401, 403), (what, first.status_code, first.text)
        assert_unauthenticated(send(base, method, path, signed=header), f"{what} replayed")

        right = send(base, method, path, SignedAuth(secrets["only"][scope]))
        assert right.status_code not in (401, 403), (what, right.status_code, right.text)


def test_open_endpoints_need_nothing(served: dict[str, tuple[FastAPI, str]]) -> None:
    for name, (_, base) in served.items():
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
            assert httpx.get(f"{base}{path}").status_code == 200, (name, path)


def test_a_replay_is_refused_by_another_process_of_the_same_api(
    *,
    schemas: dict[str, str],
    access: AccessSettings,
    database_settings: DatabaseSettings,
    kafka_settings: KafkaSettings,
    served: dict[str, tuple[FastAPI, str]],
    secrets: dict[str, dict[str, str]],
) -> None:
    other = serve_api_in_thread(
        build("ledger", schemas, access, database_settings, kafka_settings), "127.0.0.1", 0
    )
    try:
        path = "/v1/members/m-1/balance"
        secret = Secret.parse(secrets["only"]["ledger:read"])
        header = {
            "Authorization": authorization(secret, "GET", path.encode(), b"", ts=int(time.time()))
        }
        _, base = served["ledger"]
        assert httpx.get(f"{base}{path}", headers=header).status_code == 200
        again = httpx.get(f"http://127.0.0.1:{other.port}{path}", headers=header)
        assert_unauthenticated(again, "replayed to another process")
    finally:
        other.stop()


def test_signature_time_and_revocation(
    served: dict[str, tuple[FastAPI, str]],
    database_settings: DatabaseSettings,
    access: AccessSettings,
    database_url: str,
) -> None:
    _, base = served["ledger"]
    url = f"{base}/v1/members/m-1/entries?limit=3"
    secret = ensure_credential(database_url, access.db_schema, "to revoke", ["ledger:read"])
    assert httpx.get(url, auth=SignedAuth(secret)).status_code == 200

    late = SignedAuth(secret, clock=lambda: time.time() - access.clock_skew_s - 5)
    assert_unauthenticated(httpx.get(url, auth=late), "ts too old")
    early = SignedAuth(secret, clock=lambda: time.time() + access.clock_skew_s + 5)
    assert_unauthenticated(httpx.get(url, auth=early), "ts in the future")

    # Signed for another query: the signature covers the path with its query.
    parsed = Secret.parse(secret)
    other_query = authorization(
        parsed, "GET", b"/v1/members/m-1/entries?limit=4", b"", ts=int(time.time())
    )
    assert_unauthenticated(httpx.get(url, headers={"Authorization": other_query}), "moved")
    # Another key's name on this key's signature.
    forged = authorization(parsed, "GET", url[len(base) :].encode(), b"", ts=int(time.time()))
    forged = forged.replace(f"key={parsed.key_id}", "key=0123456789abcdef")
    assert_unauthenticated(httpx.get(url, headers={"Authorization": forged}), "unknown key")
    assert_unauthenticated(httpx.get(url, headers={"Authorization": "Bearer x"}), "bearer")

    with connect(database_settings) as conn:
        revoked = credentials.revoke(conn, access.db_schema, parsed.key_id)
    assert revoked is not None and revoked.revoked_at is not None
    assert_unauthenticated(httpx.get(url, auth=SignedAuth(secret)), "revoked")
