"""The offers API under fuzzing (its own OpenAPI document, real PostgreSQL): no 5xx,
every route answers 2xx to at least one valid request; plus the requests that used
to answer 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import yaml

from services.rules.offer_store import EXAMPLES_DIR
from services.rules.offers import OfferError
from services.rules.offers_api import MAX_BODY, parse_body
from services.runtime.access import SignedAuth
from tests.integration.api_fuzz import FuzzReport, call, fuzz_served_api

EXAMPLES = 40


def _offer() -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((EXAMPLES_DIR / "likes-5-then-1.yaml").read_text())
    return body


def test_fuzz_offers_api(base: str, api_secret: str) -> None:
    report = FuzzReport(secret=api_secret)
    offer = _offer()
    one = "/offers/{offer_id}"
    assert call(base, report, "POST", "/offers", json=offer).status_code == 201
    assert call(base, report, "PUT", "/offers/likes-5-then-1", route=one, json=offer).is_success
    assert call(base, report, "GET", "/offers/likes-5-then-1?version=1", route=one).is_success
    for action in ("activate", "deactivate"):
        path = f"/offers/likes-5-then-1/{action}"
        assert call(base, report, "POST", path, route=f"{one}/{action}").is_success
    loaded = call(
        base, report, "POST", "/offers/load-examples?activate=false", route="/offers/load-examples"
    )
    assert loaded.is_success
    fuzz_served_api("offers API", base, report, examples=EXAMPLES)


@pytest.mark.parametrize(
    ("method", "path", "content", "status"),
    [
        ("GET", "/offers/likes%00", None, 400),
        ("GET", "/offers/likes-5-then-1?version=%C2%B2", None, 422),  # ²: isdigit() but not int
        ("GET", "/offers/likes-5-then-1?version=" + "9" * 5000, None, 422),
        ("GET", "/offers/likes-5-then-1?version=0", None, 422),
        ("POST", "/offers?comment=a%00b", b"{}", 400),
        ("POST", "/offers", b"[" * 100_000, 400),
        ("POST", "/offers", b"- " * 1000 + b"x", 422),  # YAML nesting, not brackets
        ("POST", "/offers", b"a: &x [1]\nb: *x\n", 422),  # a YAML alias
        ("POST", "/offers", b"\xff\xfe{}", 400),  # invalid UTF-8
        ("POST", "/offers", b'{"id": "x", "name": "a\\u0000"}', 400),
        ("POST", "/offers", b'id: x\nname: "a\\0"\n', 422),  # a YAML NUL escape
        ("POST", "/offers", b'{"id": "x", "name": "\\ud800"}', 422),  # a lone surrogate
        ("POST", "/offers", b"x" * (MAX_BODY + 1), 413),
        ("PUT", "/offers/likes", b"{not: json: or yaml", 422),
    ],
)
def test_requests_that_used_to_fail_are_refused_with_json(
    base: str, method: str, path: str, content: bytes | None, status: int, *, api_auth: SignedAuth
) -> None:
    response = httpx.request(method, f"{base}{path}", content=content, timeout=30, auth=api_auth)
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str) and isinstance(body["detail"], list)


def test_a_body_is_json_or_yaml() -> None:
    offer = _offer()
    assert parse_body(json.dumps(offer).encode()) == offer
    assert parse_body(yaml.safe_dump(offer).encode()) == offer
    with pytest.raises(OfferError):
        parse_body(b"[1]")
