"""Drive the simulated providers' sign-in flows as a browser or device would.

Each helper plays the user's side and the Personal Account's browser code: it
makes the PKCE pair (VK ID) or the nonce (Apple) client-side, follows the
provider's consent to the redirect and returns the ``proof`` object the
link service's ``POST /v1/links`` and ``POST /v1/sign-in`` take. Async, over real
HTTP; ``sim_base_url`` is the simulator's root (``RunningSimulator.base_url``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from typing import Any

import httpx

from services.simulator.providers import s256

DEFAULT_REDIRECT_URI = "https://account.example/social/callback"


def pkce_pair() -> tuple[str, str]:
    """A fresh (code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    return verifier, s256(verifier)


def _redirect_query(response: httpx.Response) -> dict[str, str]:
    if response.status_code != 302:
        raise RuntimeError(
            f"the provider refused the consent: {response.status_code} {response.text}"
        )
    return dict(httpx.URL(response.headers["location"]).params)


async def vk_id_proof(
    sim_base_url: str,
    user_id: int,
    client_id: str,
    redirect_uri: str = DEFAULT_REDIRECT_URI,
) -> dict[str, Any]:
    """The VK ID proof of ``user_id``: ``{network, code, code_verifier, device_id,
    redirect_uri, state}``, as the browser gets them back from VK ID."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    async with httpx.AsyncClient(base_url=sim_base_url, timeout=10) as http:
        answer = _redirect_query(
            await http.get(
                "/vkid/authorize",
                params={
                    "response_type": "code",
                    "client_id": client_id,
                    "redirect_uri": redirect_uri,
                    "state": state,
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                    "scope": "vkid.personal_info",
                    "sim_user_id": str(user_id),
                },
            )
        )
    if answer.get("state") != state:
        raise RuntimeError("VK ID answered another state")
    return {
        "network": "vk",
        "code": answer["code"],
        "code_verifier": verifier,
        "device_id": answer["device_id"],
        "redirect_uri": redirect_uri,
        "state": state,
    }


async def ok_proof(
    sim_base_url: str,
    user_id: int,
    client_id: str,
    redirect_uri: str = DEFAULT_REDIRECT_URI,
) -> dict[str, Any]:
    """The OK proof of ``user_id``: ``{network, code, redirect_uri}``. ``client_id`` is
    the OK application id (the simulator's ``OkApp.application_id``)."""
    state = secrets.token_urlsafe(16)
    async with httpx.AsyncClient(base_url=sim_base_url, timeout=10) as http:
        answer = _redirect_query(
            await http.get(
                "/ok/oauth/authorize",
                params={
                    "client_id": client_id,
                    "scope": "VALUABLE_ACCESS",
                    "response_type": "code",
                    "redirect_uri": redirect_uri,
                    "state": state,
                    "sim_user_id": str(user_id),
                },
            )
        )
    return {"network": "ok", "code": answer["code"], "redirect_uri": redirect_uri}


def apple_sub(seed: int) -> str:
    """A stable Apple user identifier for a world user, shaped like Apple's."""
    digest = hashlib.sha256(f"apple-user-{seed}".encode()).hexdigest()
    return f"{seed:06d}.{digest[:32]}.{seed % 10000:04d}"


async def apple_proof(
    sim_base_url: str,
    sub: str,
    client_id: str,
    *,
    nonce: str | None = None,
    expires_in: int = 600,
    forge: bool = False,
) -> dict[str, Any]:
    """The Sign in with Apple proof for ``sub``: ``{network, id_token, nonce}``; a fresh
    nonce unless given. ``expires_in`` < 0 gives an expired token, ``forge`` one signed
    with a key Apple never published."""
    nonce = nonce or base64.urlsafe_b64encode(secrets.token_bytes(18)).decode()
    async with httpx.AsyncClient(base_url=sim_base_url, timeout=10) as http:
        response = await http.post(
            "/_control/apple/id-token",
            json={
                "sub": sub,
                "aud": client_id,
                "nonce": nonce,
                "expires_in": expires_in,
                "forge": forge,
            },
        )
        response.raise_for_status()
    return {"network": "apple", "id_token": response.json()["id_token"], "nonce": nonce}


async def rotate_apple_key(sim_base_url: str) -> str:
    """Make the simulated Apple sign with a new key; its kid."""
    async with httpx.AsyncClient(base_url=sim_base_url, timeout=10) as http:
        response = await http.post("/_control/apple/keys")
        response.raise_for_status()
    return str(response.json()["kid"])


def vk_id_proof_sync(
    sim_base_url: str, user_id: int, client_id: str, redirect_uri: str = DEFAULT_REDIRECT_URI
) -> dict[str, Any]:
    """``vk_id_proof`` for sync callers (the demo); not from inside a running event loop."""
    return asyncio.run(vk_id_proof(sim_base_url, user_id, client_id, redirect_uri))


def ok_proof_sync(
    sim_base_url: str, user_id: int, client_id: str, redirect_uri: str = DEFAULT_REDIRECT_URI
) -> dict[str, Any]:
    """``ok_proof`` for sync callers."""
    return asyncio.run(ok_proof(sim_base_url, user_id, client_id, redirect_uri))


def apple_proof_sync(
    sim_base_url: str,
    sub: str,
    client_id: str,
    *,
    nonce: str | None = None,
    expires_in: int = 600,
    forge: bool = False,
) -> dict[str, Any]:
    """``apple_proof`` for sync callers."""
    return asyncio.run(
        apple_proof(sim_base_url, sub, client_id, nonce=nonce, expires_in=expires_in, forge=forge)
    )
