"""Refused proofs against the simulator's providers, real Kafka and PostgreSQL: each is a
401 (or 501/503) with a clear message, and nothing is stored or published."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

from services.link.identity import OkSettings, VkIdSettings
from services.link.settings import LinkSettings
from services.simulator import identity_client as idc
from services.simulator.testing import OK_APP_KEY, OK_APP_SECRET
from tests.integration.link.test_link_api import (
    APPLE_CLIENT,
    OK_CLIENT,
    events,
    proof,
    serve,
    settings,  # noqa: F401 -- the fixture
)

UNREACHABLE_OK = OkSettings(
    client_id=OK_CLIENT,
    application_key=OK_APP_KEY,
    client_secret=SecretStr(OK_APP_SECRET),
    token_url="http://127.0.0.1:9/oauth/token.do",  # discard port: nothing listens
    api_url="http://127.0.0.1:9/fb.do",
)


async def refused(http: httpx.AsyncClient, path: str, body: dict[str, Any], match: str) -> None:
    answer = await http.post(path, json=body)
    assert answer.status_code == 401, answer.text
    assert match.lower() in answer.json()["error"].lower(), answer.text


def test_forged_expired_replayed_and_reused_proofs_are_refused_and_publish_nothing(
    settings: LinkSettings,  # noqa: F811
) -> None:
    async def body(http: httpx.AsyncClient, sim: str) -> None:
        # VK ID: a code is single use; a wrong PKCE verifier is refused.
        vk = await proof(sim, "vk", 100)
        good = await http.post("/v1/sign-in", json={"proof": vk, "register": True})
        assert good.status_code == 201, good.text
        await refused(http, "/v1/links", {"member_id": "m-x", "proof": vk}, "invalid_grant")
        wrong = {**(await proof(sim, "vk", 101)), "code_verifier": "x" * 64}
        await refused(http, "/v1/sign-in", {"proof": wrong, "register": True}, "code_verifier")

        # OK: a made-up code.
        made_up = {"network": "ok", "code": "not-a-code", "redirect_uri": "https://a.example/cb"}
        await refused(http, "/v1/links", {"member_id": "m-x", "proof": made_up}, "invalid_grant")

        # Apple: a key Apple never published, another audience, expired, replayed nonce,
        # a token for another nonce.
        sub = idc.apple_sub(7)
        forged = await idc.apple_proof(sim, sub, APPLE_CLIENT, forge=True)
        await refused(http, "/v1/sign-in", {"proof": forged, "register": True}, "Signature")
        other_aud = await idc.apple_proof(sim, sub, "com.other.app")
        await refused(http, "/v1/sign-in", {"proof": other_aud, "register": True}, "audience")
        expired = await idc.apple_proof(sim, sub, APPLE_CLIENT, expires_in=-120)
        await refused(http, "/v1/sign-in", {"proof": expired, "register": True}, "expired")
        first = await idc.apple_proof(sim, sub, APPLE_CLIENT)
        linked = await http.post("/v1/links", json={"member_id": "m-a", "proof": first})
        assert linked.status_code == 201, linked.text
        again = await idc.apple_proof(sim, sub, APPLE_CLIENT, nonce=first["nonce"])
        await refused(http, "/v1/sign-in", {"proof": again}, "replayed")
        await refused(http, "/v1/sign-in", {"proof": first}, "replayed")
        swapped = {**(await idc.apple_proof(sim, sub, APPLE_CLIENT)), "nonce": "n" * 24}
        await refused(http, "/v1/sign-in", {"proof": swapped}, "another nonce")

    serve(settings, body)
    # the two accepted proofs only (on partitions of their own: no order between them)
    got = sorted((e.network.value, type(e).__name__, e.member_id) for _, e in events(settings))
    assert len(got) == 2, got
    assert got[0] == ("apple", "ProfileLinked", "m-a")
    assert got[1][:2] == ("vk", "ProfileLinked")


async def jwks_fetches(sim: str) -> int:
    async with httpx.AsyncClient(base_url=sim) as control:
        counters = (await control.get("/_control/counters")).json()
    return int(counters["requests"].get("apple:keys", 0))


async def sign_up(http: httpx.AsyncClient, sim: str, user: int) -> None:
    apple = await idc.apple_proof(sim, idc.apple_sub(user), APPLE_CLIENT)
    answer = await http.post("/v1/sign-in", json={"proof": apple, "register": True})
    assert answer.status_code == 201, answer.text


def test_an_unknown_kid_refreshes_the_jwks_once(
    settings: LinkSettings,  # noqa: F811
) -> None:
    async def body(http: httpx.AsyncClient, sim: str) -> None:
        for user in (1, 2, 3):
            await sign_up(http, sim, user)
        assert await jwks_fetches(sim) == 1  # fetched for the first token, then cached
        await idc.rotate_apple_key(sim)
        for user in (4, 5, 6):
            await sign_up(http, sim, user)
        assert await jwks_fetches(sim) == 2  # one refresh for the new kid

    serve(settings, body)


def test_an_unconfigured_or_unreachable_provider(
    settings: LinkSettings,  # noqa: F811
) -> None:
    async def body(http: httpx.AsyncClient, sim: str) -> None:
        vk = await proof(sim, "vk", 100)
        answer = await http.post("/v1/sign-in", json={"proof": vk, "register": True})
        assert answer.status_code == 501, answer.text
        assert "VK ID is not configured" in answer.json()["error"]

    serve(settings, body, vk=VkIdSettings())

    async def down(http: httpx.AsyncClient, sim: str) -> None:
        ok = await proof(sim, "ok", 5)
        answer = await http.post("/v1/links", json={"member_id": "m-1", "proof": ok})
        assert answer.status_code == 503, answer.text
        assert "unreachable" in answer.json()["error"]

    serve(settings, down, timeout_s=2.0, ok=UNREACHABLE_OK)
    assert events(settings) == []
