"""Verified social identities: the proofs the link API takes and how each is checked.

The caller never names the social user id. It sends a proof, and the link service asks
the identity provider who it belongs to, server-side:

* VK ID (OAuth 2.1, authorization code + PKCE S256): the browser got ``code``,
  ``device_id`` (and ``state``) on its redirect and holds the ``code_verifier``; the
  link service exchanges them at ``https://id.vk.com/oauth2/auth`` and reads the user
  from ``https://id.vk.com/oauth2/user_info``.
* OK (OAuth 2.0 code grant): the link service exchanges ``code`` at
  ``https://api.ok.ru/oauth/token.do`` with the application's secret key, then calls
  ``users.getCurrentUser`` on ``https://api.ok.ru/fb.do``, signed as OK documents
  (``sig`` = md5 of the sorted ``k=v`` params + md5(access_token + secret key)).
* Sign in with Apple: the device got an identity token (JWT, RS256) for the
  ``nonce`` it chose; the link service verifies it against Apple's JWKS (signature,
  ``iss``, ``aud`` = our client id, ``exp``, ``nonce``) and refuses a nonce it
  has already seen (``nonce_store``).

A refused proof is ``ProofRefusedError`` (401), an unreachable provider
``ProviderUnavailableError`` (503), a provider we have no client for
``ProviderNotConfiguredError`` (501).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import httpx
import jwt
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from services.contracts import bounds
from services.contracts.models import Network

log = logging.getLogger(__name__)

# ------------------------------------------------------------------ settings


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VkIdSettings(_Settings):
    client_id: str | None = Field(default=None, description="The VK ID application id.")
    token_url: str = "https://id.vk.com/oauth2/auth"  # noqa: S105 -- a URL
    user_info_url: str = "https://id.vk.com/oauth2/user_info"


class OkSettings(_Settings):
    client_id: str | None = Field(default=None, description="The OK application id.")
    application_key: str | None = Field(
        default=None, description="The OK application's public key (application_key)."
    )
    client_secret: SecretStr | None = Field(
        default=None, description="The OK application's secret key (client_secret)."
    )
    token_url: str = "https://api.ok.ru/oauth/token.do"  # noqa: S105 -- a URL
    api_url: str = "https://api.ok.ru/fb.do"


class AppleSettings(_Settings):
    client_id: str | None = Field(
        default=None, description="Our Services ID / bundle id: the tokens' aud."
    )
    issuer: str = "https://appleid.apple.com"
    jwks_url: str = "https://appleid.apple.com/auth/keys"
    jwks_min_refresh_s: float = Field(
        default=10.0,
        ge=0,
        description="An unknown kid refreshes the JWKS at most this often.",
    )
    leeway_s: int = Field(default=30, ge=0, description="Clock skew allowed on exp/iat.")


class IdentitySettings(_Settings):
    """``LINK_IDENTITY__VK__CLIENT_ID``, ``LINK_IDENTITY__OK__CLIENT_SECRET``, ..."""

    vk: VkIdSettings = Field(default_factory=VkIdSettings)
    ok: OkSettings = Field(default_factory=OkSettings)
    apple: AppleSettings = Field(default_factory=AppleSettings)
    timeout_s: float = Field(default=10.0, gt=0, description="Per provider request.")


# ------------------------------------------------------------------ proofs


class _Proof(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VkIdProof(_Proof):
    """What the browser got back from VK ID, and the PKCE verifier it kept."""

    network: Literal["vk"]
    code: str = Field(
        min_length=1, max_length=2048, description="The authorization code from the redirect."
    )
    code_verifier: str = Field(
        min_length=43, max_length=128, description="The PKCE verifier (RFC 7636)."
    )
    device_id: str = Field(
        min_length=1, max_length=2048, description="device_id from the redirect."
    )
    redirect_uri: str = Field(
        min_length=1, max_length=2048, description="The redirect_uri of the authorize call."
    )
    state: str | None = Field(default=None, max_length=2048, description="state, if any.")


class OkProof(_Proof):
    """The code OK's authorize redirect carried."""

    network: Literal["ok"]
    code: str = Field(min_length=1, max_length=2048)
    redirect_uri: str = Field(
        min_length=1, max_length=2048, description="The redirect_uri of the authorize call."
    )


class AppleProof(_Proof):
    """The identity token the device received and the nonce it asked it for."""

    network: Literal["apple"]
    id_token: str = Field(min_length=1, max_length=8192, description="A JWT (RS256).")
    nonce: str = Field(min_length=16, max_length=256, description="The nonce in the token.")


Proof = Annotated[VkIdProof | OkProof | AppleProof, Field(discriminator="network")]


class Identity(BaseModel):
    model_config = ConfigDict(frozen=True)

    network: Network
    social_user_id: str


# ------------------------------------------------------------------ errors


class IdentityError(Exception):
    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProofRefusedError(IdentityError):
    status = 401


class ProviderUnavailableError(IdentityError):
    status = 503


class ProviderNotConfiguredError(IdentityError):
    status = 501


NonceStore = Callable[[str, datetime], Awaitable[bool]]
"""Remember an Apple nonce until the given time; False when it was seen before."""


def ok_signature(params: dict[str, str], access_token: str, secret_key: str) -> str:
    """OK's ``sig``: md5(sorted ``k=v`` without access_token + md5(token + secret))."""
    secret = hashlib.md5((access_token + secret_key).encode()).hexdigest()  # noqa: S324
    text = "".join(f"{k}={params[k]}" for k in sorted(params) if k not in {"sig", "access_token"})
    return hashlib.md5((text + secret).encode()).hexdigest()  # noqa: S324


def _identity(network: Network, raw: object) -> Identity:
    value = str(raw) if raw is not None else ""
    try:
        bounds.check_social_user_id(network.value, value)
    except ValueError as exc:
        raise ProofRefusedError(f"{network.value} returned an unusable user id: {exc}") from None
    return Identity(network=network, social_user_id=value)


class IdentityVerifier:
    """Checks proofs against the providers; one per API process (holds the JWKS cache)."""

    def __init__(self, settings: IdentitySettings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._http = http or httpx.AsyncClient(timeout=settings.timeout_s)
        self._jwks: dict[str, jwt.PyJWK] = {}
        self._jwks_at = float("-inf")
        self._jwks_lock = asyncio.Lock()
        self.jwks_fetches = 0

    async def close(self) -> None:
        await self._http.aclose()

    async def verify(self, proof: VkIdProof | OkProof | AppleProof, nonces: NonceStore) -> Identity:
        if isinstance(proof, VkIdProof):
            return await self.verify_vk(proof)
        if isinstance(proof, OkProof):
            return await self.verify_ok(proof)
        return await self.verify_apple(proof, nonces)

    # -- transport

    async def _post(self, provider: str, url: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.post(url, **kwargs)
        except httpx.HTTPError as exc:
            raise ProviderUnavailableError(f"{provider} is unreachable: {exc!r}") from exc
        return self._json(provider, response)

    async def _get(self, provider: str, url: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.get(url, **kwargs)
        except httpx.HTTPError as exc:
            raise ProviderUnavailableError(f"{provider} is unreachable: {exc!r}") from exc
        return self._json(provider, response)

    @staticmethod
    def _json(provider: str, response: httpx.Response) -> Any:
        if response.status_code >= 500:
            raise ProviderUnavailableError(f"{provider} answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise ProviderUnavailableError(f"{provider} answered no JSON") from None
        if isinstance(body, dict) and "error" in body:
            description = body.get("error_description") or ""
            raise ProofRefusedError(f"{provider} refused the proof: {body['error']} {description}")
        if response.status_code >= 400:
            raise ProofRefusedError(f"{provider} refused the proof: HTTP {response.status_code}")
        return body

    # -- VK ID

    async def verify_vk(self, proof: VkIdProof) -> Identity:
        conf = self.settings.vk
        if not conf.client_id:
            raise ProviderNotConfiguredError("VK ID is not configured (LINK_IDENTITY__VK__*)")
        form = {
            "grant_type": "authorization_code",
            "code": proof.code,
            "code_verifier": proof.code_verifier,
            "client_id": conf.client_id,
            "device_id": proof.device_id,
            "redirect_uri": proof.redirect_uri,
        }
        if proof.state:
            form["state"] = proof.state
        tokens = await self._post("VK ID", conf.token_url, data=form)
        access = tokens.get("access_token") if isinstance(tokens, dict) else None
        if not isinstance(access, str) or not access:
            raise ProofRefusedError("VK ID returned no access token")
        info = await self._post(
            "VK ID",
            conf.user_info_url,
            data={"client_id": conf.client_id, "access_token": access},
        )
        user = info.get("user") if isinstance(info, dict) else None
        user_id = user.get("user_id") if isinstance(user, dict) else None
        if "user_id" in tokens and str(tokens["user_id"]) != str(user_id):
            raise ProofRefusedError("VK ID token and user info name different users")
        return _identity(Network.VK, user_id)

    # -- OK

    async def verify_ok(self, proof: OkProof) -> Identity:
        conf = self.settings.ok
        if not conf.client_id or not conf.client_secret or not conf.application_key:
            raise ProviderNotConfiguredError("OK is not configured (LINK_IDENTITY__OK__*)")
        secret = conf.client_secret.get_secret_value()
        tokens = await self._post(
            "OK",
            conf.token_url,
            params={
                "code": proof.code,
                "client_id": conf.client_id,
                "client_secret": secret,
                "redirect_uri": proof.redirect_uri,
                "grant_type": "authorization_code",
            },
        )
        access = tokens.get("access_token") if isinstance(tokens, dict) else None
        if not isinstance(access, str) or not access:
            raise ProofRefusedError("OK returned no access token")
        params = {
            "application_key": conf.application_key,
            "format": "json",
            "method": "users.getCurrentUser",
            "fields": "uid",
        }
        params["sig"] = ok_signature(params, access, secret)
        params["access_token"] = access
        user = await self._post("OK", conf.api_url, data=params)
        if isinstance(user, dict) and "error_code" in user:
            raise ProofRefusedError(f"OK refused the token: {user.get('error_msg')}")
        return _identity(Network.OK, user.get("uid") if isinstance(user, dict) else None)

    # -- Apple

    async def _apple_key(self, kid: str) -> jwt.PyJWK:
        key = self._jwks.get(kid)
        if key is not None:
            return key
        conf = self.settings.apple
        async with self._jwks_lock:
            key = self._jwks.get(kid)
            if key is None and time.monotonic() - self._jwks_at >= conf.jwks_min_refresh_s:
                body = await self._get("Apple", conf.jwks_url)
                self.jwks_fetches += 1
                self._jwks_at = time.monotonic()
                try:
                    keys = jwt.PyJWKSet.from_dict(body)
                except jwt.PyJWTError as exc:
                    raise ProviderUnavailableError(f"Apple's JWKS is unusable: {exc}") from None
                self._jwks = {k.key_id: k for k in keys.keys if k.key_id}
                key = self._jwks.get(kid)
        if key is None:
            raise ProofRefusedError(f"Apple identity token signed with an unknown key ({kid})")
        return key

    async def verify_apple(self, proof: AppleProof, nonces: NonceStore) -> Identity:
        conf = self.settings.apple
        if not conf.client_id:
            raise ProviderNotConfiguredError("Apple is not configured (LINK_IDENTITY__APPLE__*)")
        try:
            header = jwt.get_unverified_header(proof.id_token)
        except jwt.PyJWTError as exc:
            raise ProofRefusedError(f"Apple identity token is malformed: {exc}") from None
        if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str):
            raise ProofRefusedError("Apple identity token must be RS256 with a kid")
        key = await self._apple_key(header["kid"])
        try:
            claims = jwt.decode(
                proof.id_token,
                key,
                algorithms=["RS256"],
                audience=conf.client_id,
                issuer=conf.issuer,
                leeway=conf.leeway_s,
                options={"require": ["iss", "aud", "exp", "iat", "sub", "nonce"]},
            )
        except jwt.PyJWTError as exc:
            raise ProofRefusedError(f"Apple identity token refused: {exc}") from None
        if claims["nonce"] != proof.nonce:
            raise ProofRefusedError("Apple identity token was issued for another nonce")
        expires = datetime.fromtimestamp(int(claims["exp"]) + conf.leeway_s, UTC)
        if not await nonces(proof.nonce, expires):
            raise ProofRefusedError("Apple identity token replayed: its nonce was used before")
        return _identity(Network.APPLE, claims["sub"])
