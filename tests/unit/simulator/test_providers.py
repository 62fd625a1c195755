"""The simulated identity providers check what the real ones check."""

from __future__ import annotations

import jwt
import pytest

from services.simulator.ok_api import expected_signature
from services.simulator.providers import (
    CODE_TTL_S,
    AppleProvider,
    OAuthError,
    OkOAuthProvider,
    VkIdProvider,
    s256,
)

REDIRECT = "https://account.example/cb"
VERIFIER = "v" * 50


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _vk_code(vk: VkIdProvider, user: int = 42) -> dict[str, str]:
    return vk.authorize(
        {
            "response_type": "code",
            "client_id": "1",
            "redirect_uri": REDIRECT,
            "state": "s1",
            "code_challenge": s256(VERIFIER),
            "code_challenge_method": "S256",
            "sim_user_id": str(user),
        }
    )


def _vk_exchange(answer: dict[str, str], **changes: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": answer["code"],
        "code_verifier": VERIFIER,
        "client_id": "1",
        "device_id": answer["device_id"],
        "redirect_uri": REDIRECT,
        "state": "s1",
        **changes,
    }


def test_s256_is_rfc7636() -> None:  # the RFC's appendix B example
    assert s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == (
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


def test_vk_id_code_flow_and_its_refusals() -> None:
    clock = Clock()
    vk = VkIdProvider(clock=clock)
    answer = _vk_code(vk)
    assert answer["state"] == "s1" and answer["type"] == "code_v2"
    tokens = vk.token(_vk_exchange(answer))
    assert tokens["user_id"] == 42 and tokens["state"] == "s1"
    info = vk.user_info({"client_id": "1", "access_token": tokens["access_token"]})
    assert info["user"]["user_id"] == "42"
    with pytest.raises(OAuthError, match="already used"):
        vk.token(_vk_exchange(answer))
    for change, message in (
        ({"code_verifier": "w" * 50}, "code_verifier"),
        ({"client_id": "2"}, "client_id"),
        ({"redirect_uri": REDIRECT + "x"}, "redirect_uri"),
        ({"device_id": "other"}, "device_id"),
    ):
        with pytest.raises(OAuthError, match=message) as refused:
            vk.token(_vk_exchange(_vk_code(vk), **change))
        assert refused.value.error == "invalid_grant"
    late = _vk_code(vk)
    clock.now += CODE_TTL_S + 1
    with pytest.raises(OAuthError, match="expired"):
        vk.token(_vk_exchange(late))
    with pytest.raises(OAuthError) as bad_token:
        vk.user_info({"client_id": "1", "access_token": "nope"})
    assert bad_token.value.status == 401


def test_ok_code_grant_checks_the_secret_and_the_code() -> None:
    ok = OkOAuthProvider("512", "secret")
    code = ok.authorize({"client_id": "512", "redirect_uri": REDIRECT, "sim_user_id": "7"})
    grant = {
        "code": code["code"],
        "client_id": "512",
        "client_secret": "secret",
        "redirect_uri": REDIRECT,
        "grant_type": "authorization_code",
    }
    with pytest.raises(OAuthError, match="client_secret"):
        ok.token({**grant, "client_secret": "wrong"})
    tokens = ok.token(grant)
    assert ok.tokens[tokens["access_token"]] == 7
    with pytest.raises(OAuthError, match="Expired code"):
        ok.token(grant)
    with pytest.raises(OAuthError, match="Expired code"):
        ok.token({**grant, "code": "made-up"})


def test_collector_signs_ok_requests_as_the_simulator_checks() -> None:
    from services.link.identity import ok_signature

    params = {"application_key": "K", "format": "json", "method": "users.getCurrentUser"}
    assert ok_signature(params, "tok", "sec") == expected_signature(params, "tok", "sec")


def test_apple_tokens_verify_against_the_jwks_and_rotation_keeps_old_keys() -> None:
    apple = AppleProvider()
    token = apple.mint("001.abc.002", "com.example", "n" * 20)
    first = jwt.PyJWKSet.from_dict(apple.jwks())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in first.keys if k.key_id == kid)
    claims = jwt.decode(token, key, algorithms=["RS256"], audience="com.example")
    assert claims["sub"] == "001.abc.002" and claims["nonce"] == "n" * 20
    assert claims["iss"] == "https://appleid.apple.com"
    new_kid = apple.rotate()
    assert jwt.get_unverified_header(apple.mint("s", "a", "n" * 20))["kid"] == new_kid
    assert {k["kid"] for k in apple.jwks()["keys"]} == {kid, new_kid}
    forged = apple.mint("s", "com.example", "n" * 20, forge=True)
    newest = next(k for k in jwt.PyJWKSet.from_dict(apple.jwks()).keys if k.key_id == new_kid)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, newest, algorithms=["RS256"], audience="com.example")
