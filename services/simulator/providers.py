"""Simulated identity providers: VK ID (OAuth 2.1 + PKCE), OK OAuth 2.0 and Sign in with Apple.

Pure logic (no HTTP): ``endpoints.py`` maps the provider endpoints onto these methods.
Each provider checks what the real one checks, so the collector's verification
runs on the same code paths against the simulator as against the networks:

* VK ID: ``authorize`` (the simulated user consents; ``sim_user_id`` chooses who)
  issues a single-use code bound to client_id, redirect_uri, device_id and the
  S256 code challenge; ``token`` (``/oauth2/auth``) checks all of them and the
  code's expiry; ``user_info`` answers for the access token.
* OK: ``authorize`` issues a single-use code bound to client_id and redirect_uri;
  ``token`` (``/oauth/token.do``) checks them and the application secret key; the
  access token it returns is accepted by ``/fb.do`` (signed as OK signs), where
  ``users.getCurrentUser`` answers the token's ``uid``.
* Apple: a JWKS of the simulator's own RSA keys (``rotate`` adds a new current key),
  and ``mint`` makes an identity token (RS256) as a device would receive it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

CODE_TTL_S = 600
"""VK ID and OK codes expire 10 minutes after they are issued."""
APPLE_ISSUER = "https://appleid.apple.com"


class OAuthError(Exception):
    """An OAuth error answer: ``{"error": ..., "error_description": ...}``."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def s256(verifier: str) -> str:
    """The PKCE S256 code challenge of ``verifier`` (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class _Code:
    user_id: int
    client_id: str
    redirect_uri: str
    issued_at: float
    challenge: str = ""
    device_id: str = ""


def _need(params: Mapping[str, str], *names: str) -> list[str]:
    missing = [n for n in names if not params.get(n)]
    if missing:
        raise OAuthError("invalid_request", f"missing parameter(s): {', '.join(missing)}")
    return [params[n] for n in names]


@dataclass
class VkIdProvider:
    """VK ID: authorization code flow with PKCE (S256) and the user-info endpoint."""

    clock: Callable[[], float] = time.time
    codes: dict[str, _Code] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)

    def authorize(self, params: Mapping[str, str]) -> dict[str, str]:
        """What the redirect to ``redirect_uri`` carries: code, state, device_id, ..."""
        client_id, redirect_uri, challenge, user = _need(
            params, "client_id", "redirect_uri", "code_challenge", "sim_user_id"
        )
        if params.get("response_type", "code") != "code":
            raise OAuthError("unsupported_response_type", "response_type must be code")
        if params.get("code_challenge_method", "S256") != "S256":
            raise OAuthError("invalid_request", "code_challenge_method must be S256")
        if not user.isdigit() or int(user) <= 0:
            raise OAuthError("invalid_request", "sim_user_id must be a positive integer")
        code = "vk2." + secrets.token_urlsafe(24)
        device_id = secrets.token_urlsafe(16)
        self.codes[code] = _Code(
            int(user), client_id, redirect_uri, self.clock(), challenge, device_id
        )
        return {
            "code": code,
            "state": params.get("state", ""),
            "device_id": device_id,
            "type": "code_v2",
            "expires_in": str(CODE_TTL_S),
        }

    def token(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``POST /oauth2/auth`` with grant_type=authorization_code."""
        if params.get("grant_type") != "authorization_code":
            raise OAuthError("unsupported_grant_type", "grant_type must be authorization_code")
        code, verifier, client_id, redirect_uri, device_id = _need(
            params, "code", "code_verifier", "client_id", "redirect_uri", "device_id"
        )
        issued = self.codes.pop(code, None)  # single use, also when refused below
        if issued is None:
            raise OAuthError("invalid_grant", "code is invalid or already used")
        if self.clock() - issued.issued_at > CODE_TTL_S:
            raise OAuthError("invalid_grant", "code is expired")
        if client_id != issued.client_id or redirect_uri != issued.redirect_uri:
            raise OAuthError("invalid_grant", "client_id or redirect_uri does not match the code")
        if device_id != issued.device_id:
            raise OAuthError("invalid_grant", "device_id does not match the code")
        if s256(verifier) != issued.challenge:
            raise OAuthError("invalid_grant", "code_verifier is invalid")
        access = "vk2.a." + secrets.token_urlsafe(24)
        self.tokens[access] = issued.user_id
        answer: dict[str, Any] = {
            "access_token": access,
            "refresh_token": "vk2.r." + secrets.token_urlsafe(24),
            "id_token": "",
            "token_type": "Bearer",
            "expires_in": 3600,
            "user_id": issued.user_id,
            "scope": "vkid.personal_info",
        }
        if params.get("state"):
            answer["state"] = params["state"]
        return answer

    def user_info(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``POST /oauth2/user_info`` (client_id, access_token)."""
        _, access = _need(params, "client_id", "access_token")
        user = self.tokens.get(access)
        if user is None:
            raise OAuthError("invalid_token", "access token is invalid or expired", 401)
        return {"user": {"user_id": str(user), "first_name": "Sim", "last_name": f"User{user}"}}


@dataclass
class OkOAuthProvider:
    """OK: the authorization code grant at ``/oauth/token.do``."""

    application_id: str
    application_secret_key: str
    clock: Callable[[], float] = time.time
    codes: dict[str, _Code] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    """Access tokens issued, with the user each belongs to (accepted by ``/fb.do``)."""

    def authorize(self, params: Mapping[str, str]) -> dict[str, str]:
        client_id, redirect_uri, user = _need(params, "client_id", "redirect_uri", "sim_user_id")
        if client_id != self.application_id:
            raise OAuthError("invalid_client", "unknown client_id")
        if not user.isdigit() or int(user) <= 0:
            raise OAuthError("invalid_request", "sim_user_id must be a positive integer")
        code = secrets.token_urlsafe(24)
        self.codes[code] = _Code(int(user), client_id, redirect_uri, self.clock())
        return {"code": code, "state": params.get("state", "")}

    def token(self, params: Mapping[str, str]) -> dict[str, Any]:
        if params.get("grant_type") != "authorization_code":
            raise OAuthError("unsupported_grant_type", "grant_type must be authorization_code")
        code, client_id, secret, redirect_uri = _need(
            params, "code", "client_id", "client_secret", "redirect_uri"
        )
        if client_id != self.application_id or not secrets.compare_digest(
            secret, self.application_secret_key
        ):
            raise OAuthError("invalid_client", "client_id or client_secret is wrong", 401)
        issued = self.codes.pop(code, None)
        if issued is None:
            raise OAuthError("invalid_grant", "Expired code")
        if self.clock() - issued.issued_at > CODE_TTL_S:
            raise OAuthError("invalid_grant", "Expired code")
        if redirect_uri != issued.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the code")
        access = "ok." + secrets.token_urlsafe(24)
        self.tokens[access] = issued.user_id
        return {
            "access_token": access,
            "token_type": "session",
            "refresh_token": "ok.r." + secrets.token_urlsafe(24),
            "expires_in": 1800,
        }


@dataclass
class _Key:
    kid: str
    private: rsa.RSAPrivateKey


def _new_key() -> _Key:
    return _Key(
        "sim" + secrets.token_hex(4), rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )


@dataclass
class AppleProvider:
    """Sign in with Apple: the JWKS (``/auth/keys``) and identity tokens for devices."""

    clock: Callable[[], float] = time.time
    keys: list[_Key] = field(default_factory=lambda: [_new_key()])
    jwks_served: int = 0

    def jwks(self) -> dict[str, Any]:
        self.jwks_served += 1
        out = []
        for key in self.keys:
            jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.private.public_key(), as_dict=True)
            out.append({**jwk, "kid": key.kid, "use": "sig", "alg": "RS256"})
        return {"keys": out}

    def rotate(self) -> str:
        """A new current signing key (the old ones stay published); its kid."""
        key = _new_key()
        self.keys.append(key)
        return key.kid

    def mint(
        self,
        sub: str,
        aud: str,
        nonce: str,
        *,
        expires_in: int = 600,
        forge: bool = False,
        issuer: str = APPLE_ISSUER,
    ) -> str:
        """An identity token as Apple hands it to the device. ``forge``: signed with a key
        Apple never published, under the current kid."""
        key = self.keys[-1]
        signer = rsa.generate_private_key(public_exponent=65537, key_size=2048) if forge else None
        now = int(self.clock())
        claims = {
            "iss": issuer,
            "aud": aud,
            "exp": now + expires_in,
            "iat": now,
            "sub": sub,
            "nonce": nonce,
            "nonce_supported": True,
            "c_hash": secrets.token_urlsafe(16),
            "auth_time": now,
        }
        return jwt.encode(
            claims, signer or key.private, algorithm="RS256", headers={"kid": key.kid}
        )


@dataclass
class Providers:
    vk_id: VkIdProvider = field(default_factory=VkIdProvider)
    ok: OkOAuthProvider | None = None
    apple: AppleProvider = field(default_factory=AppleProvider)
