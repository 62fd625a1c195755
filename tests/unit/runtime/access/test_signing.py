"""The signed Authorization header: what is signed, what a server refuses to parse."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.runtime.access import SignedAuth
from services.runtime.access.gate import document
from services.runtime.access.signing import (
    SCOPES,
    CredentialError,
    Secret,
    Signed,
    authorization,
    canonical,
    check_scopes,
    new_key,
)

NONCE = "n" * 24


def test_canonical_string_is_ts_nonce_method_target_and_body_hash_one_per_line() -> None:
    body = b'{"a":1}'
    assert canonical(1700000000, NONCE, "post", b"/v1/links?x=1", body) == (
        b"1700000000\n"
        + NONCE.encode()
        + b"\nPOST\n/v1/links?x=1\n"
        + hashlib.sha256(body).hexdigest().encode()
    )


def test_a_signed_header_verifies_and_any_change_to_the_request_breaks_it() -> None:
    key = new_key()
    secret = Secret.parse(key.secret)
    assert secret.key_id == key.key_id
    header = authorization(secret, "POST", b"/v1/links?a=1", b"{}", ts=1700000000, nonce=NONCE)
    signed = Signed.parse(header)
    assert (signed.key_id, signed.ts, signed.nonce) == (key.key_id, 1700000000, NONCE)
    assert signed.verifies(key.public_key, "POST", b"/v1/links?a=1", b"{}")
    assert not signed.verifies(key.public_key, "PUT", b"/v1/links?a=1", b"{}")
    assert not signed.verifies(key.public_key, "POST", b"/v1/links?a=2", b"{}")
    assert not signed.verifies(key.public_key, "POST", b"/v1/links", b"{}")
    assert not signed.verifies(key.public_key, "POST", b"/v1/links?a=1", b"{ }")
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert not signed.verifies(other, "POST", b"/v1/links?a=1", b"{}")
    assert not signed.verifies(b"short", "POST", b"/v1/links?a=1", b"{}")


def test_each_request_gets_a_new_nonce() -> None:
    secret = Secret.parse(new_key().secret)
    one = Signed.parse(authorization(secret, "GET", b"/", b"", ts=1))
    two = Signed.parse(authorization(secret, "GET", b"/", b"", ts=1))
    assert one.nonce != two.nonce


def test_the_time_window_is_plus_or_minus_the_skew() -> None:
    signed = Signed(key_id="0" * 16, ts=1000, nonce=NONCE, sig=b"")
    assert signed.fresh(1300, 300) and signed.fresh(700, 300)
    assert not signed.fresh(1301, 300) and not signed.fresh(699, 300)


SIG = "A" * 86


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        f"Bearer key={'a' * 16}, ts=1, nonce={NONCE}, sig={SIG}",
        f"SL-Ed25519 key={'a' * 16}, ts=1, nonce={NONCE}",
        f"SL-Ed25519 key={'a' * 16}, ts=1, nonce={NONCE}, sig={SIG}, extra=1",
        f"SL-Ed25519 key={'a' * 16}, key={'a' * 16}, ts=1, nonce={NONCE}, sig={SIG}",
        f"SL-Ed25519 key=ABC, ts=1, nonce={NONCE}, sig={SIG}",
        f"SL-Ed25519 key={'a' * 16}, ts=-1, nonce={NONCE}, sig={SIG}",
        f"SL-Ed25519 key={'a' * 16}, ts=1.5, nonce={NONCE}, sig={SIG}",
        f"SL-Ed25519 key={'a' * 16}, ts=1, nonce=short, sig={SIG}",
        f"SL-Ed25519 key={'a' * 16}, ts=1, nonce={NONCE}, sig={SIG[:-1]}",
        f"SL-Ed25519 key={'a' * 16}, ts=1, nonce={NONCE}, sig={SIG[:-1]}=",
        f"SL-Ed25519 key={'a' * 16} ts=1 nonce={NONCE} sig={SIG}",
    ],
)
def test_a_malformed_header_is_refused_with_a_reason(header: str | None) -> None:
    with pytest.raises(CredentialError):
        Signed.parse(header)


def test_the_scheme_is_case_insensitive_and_spaces_are_allowed() -> None:
    signed = Signed.parse(f"sl-ed25519 key={'a' * 16} ,ts=1,  nonce={NONCE} , sig={SIG}")
    assert signed.ts == 1


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sl1",
        "sl2.0123456789abcdef.AAAA",
        "sl1.xyz.AAAA",
        "sl1.0123456789abcdef.AAAA",
        "sl1.0123456789abcdef.!!!",
        "sl1.0123456789abcdef.a.b",
    ],
)
def test_a_malformed_secret_is_refused(text: str) -> None:
    with pytest.raises(CredentialError):
        Secret.parse(text)


def test_a_secret_never_shows_its_key() -> None:
    key = new_key()
    assert key.secret.split(".")[2] not in repr(Secret.parse(key.secret))


def test_scopes_are_checked_and_kept_in_catalog_order() -> None:
    assert check_scopes(["signin", "links:write", "signin"]) == ("links:write", "signin")
    with pytest.raises(CredentialError, match="unknown scope links:admin"):
        check_scopes(["links:admin"])
    with pytest.raises(CredentialError):
        check_scopes([])
    assert len(set(SCOPES)) == len(SCOPES)


def test_signed_auth_signs_the_path_with_query_and_the_body_as_sent() -> None:
    key = new_key()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    client = httpx.Client(
        transport=httpx.MockTransport(handler), auth=SignedAuth(key.secret, clock=lambda: 1234.9)
    )
    client.post("http://api/v1/x y?limit=5&a=%2F", json={"k": "v"})
    request = seen[0]
    signed = Signed.parse(request.headers["authorization"])
    assert signed.ts == 1234 and signed.key_id == key.key_id
    assert signed.verifies(key.public_key, "POST", b"/v1/x%20y?limit=5&a=%2F", request.content)


def test_the_document_lists_401_and_403_on_secured_operations_only() -> None:
    doc: dict[str, Any] = {
        "paths": {
            "/open": {"get": {"responses": {"200": {"description": "ok"}}}},
            "/closed": {
                "post": {
                    "security": [{"SL-Ed25519": ["offers:admin"]}],
                    "responses": {"401": {"description": "Proof refused."}},
                }
            },
        }
    }
    document(doc)
    assert set(doc["paths"]["/open"]["get"]["responses"]) == {"200"}
    closed = doc["paths"]["/closed"]["post"]["responses"]
    assert closed["401"]["description"].startswith("Proof refused. Or: No valid signed")
    assert "offers:admin" in closed["403"]["description"]
