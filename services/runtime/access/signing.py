"""The pure core of API credentials: the secret string, the signed ``Authorization``
header and the canonical string it signs. No database, no HTTP framework.

A credential is an Ed25519 key pair. Its secret, shown once, is one string::

    sl1.<key_id>.<base64url of the 32-byte private seed>

A request carries::

    Authorization: SL-Ed25519 key=<key_id>, ts=<unix seconds>, nonce=<random>, sig=<base64url>

where ``sig`` is the Ed25519 signature of ``canonical(ts, nonce, method, target, body)``:
the lines ts, nonce, METHOD, the path with its query exactly as sent, and the SHA-256
of the body in hex. Signing the body and the query means a captured signature cannot
be moved to another request; the nonce and the time window make it single-use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SCHEME: Final = "SL-Ed25519"
"""The ``Authorization`` scheme, and the ``WWW-Authenticate`` challenge of a 401."""

SCOPES: Final = (
    "links:write",
    "links:read",
    "signin",
    "offers:read",
    "offers:admin",
    "ledger:read",
    "readmodel:read",
)
"""Every scope a route may require; a credential holds a subset."""

SECRET_PREFIX: Final = "sl1"  # noqa: S105 (the format tag, not a secret)
KEY_ID: Final = re.compile(r"^[a-f0-9]{16}$")
NONCE: Final = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_TS: Final = re.compile(r"^[0-9]{1,12}$")
_SIG: Final = re.compile(r"^[A-Za-z0-9_-]{86}$")
_PARAM: Final = re.compile(r"\s*([a-z]+)=([^,\s]*)\s*")


class CredentialError(ValueError):
    """A secret string or an ``Authorization`` header that cannot be used; the message
    says why (it goes into the 401 body, so it names no key material)."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise CredentialError("not base64url") from exc


def check_scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The scopes, deduplicated in catalog order; an unknown one is an error."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise CredentialError(f"unknown scope {', '.join(unknown)} (known: {', '.join(SCOPES)})")
    if not scopes:
        raise CredentialError("a credential needs at least one scope")
    return tuple(s for s in SCOPES if s in scopes)


@dataclass(frozen=True)
class NewKey:
    """A freshly made key pair: the public half for the database, the secret once."""

    key_id: str
    public_key: bytes
    secret: str


def new_key() -> NewKey:
    key_id = secrets.token_hex(8)
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return NewKey(key_id, public, f"{SECRET_PREFIX}.{key_id}.{b64url(seed)}")


@dataclass(frozen=True)
class Secret:
    """A parsed secret string: the key id and the private key."""

    key_id: str
    private_key: Ed25519PrivateKey

    @classmethod
    def parse(cls, text: str) -> Secret:
        parts = text.strip().split(".")
        if len(parts) != 3 or parts[0] != SECRET_PREFIX:
            raise CredentialError(f"a secret looks like {SECRET_PREFIX}.<key id>.<key>")
        if KEY_ID.match(parts[1]) is None:
            raise CredentialError("the secret's key id is malformed")
        seed = unb64url(parts[2])
        if len(seed) != 32:
            raise CredentialError("the secret's key is not 32 bytes")
        return cls(parts[1], Ed25519PrivateKey.from_private_bytes(seed))

    def __repr__(self) -> str:  # never print the key
        return f"Secret(key_id={self.key_id!r})"


def canonical(ts: int, nonce: str, method: str, target: bytes, body: bytes) -> bytes:
    """What is signed: ts, nonce, METHOD, the path with query as sent (``target``,
    still percent-encoded), and the body's SHA-256 in hex, one per line."""
    return b"\n".join(
        [
            str(ts).encode(),
            nonce.encode(),
            method.upper().encode(),
            target,
            hashlib.sha256(body).hexdigest().encode(),
        ]
    )


def authorization(
    secret: Secret, method: str, target: bytes, body: bytes, *, ts: int, nonce: str | None = None
) -> str:
    """The ``Authorization`` header value for one request (a fresh nonce unless given)."""
    nonce = nonce or secrets.token_urlsafe(18)
    sig = secret.private_key.sign(canonical(ts, nonce, method, target, body))
    return f"{SCHEME} key={secret.key_id}, ts={ts}, nonce={nonce}, sig={b64url(sig)}"


@dataclass(frozen=True)
class Signed:
    """A parsed ``Authorization`` header, not yet verified."""

    key_id: str
    ts: int
    nonce: str
    sig: bytes

    @classmethod
    def parse(cls, header: str | None) -> Signed:
        """Strict: the scheme, then exactly key, ts, nonce and sig, each once."""
        if not header:
            raise CredentialError(f"no credential (Authorization: {SCHEME} ...)")
        scheme, _, rest = header.strip().partition(" ")
        if scheme.lower() != SCHEME.lower():
            raise CredentialError(f"the Authorization scheme must be {SCHEME}")
        params: dict[str, str] = {}
        for part in rest.split(","):
            match = _PARAM.fullmatch(part)
            if match is None or match[1] in params:
                raise CredentialError("the Authorization header is malformed")
            params[match[1]] = match[2]
        if sorted(params) != ["key", "nonce", "sig", "ts"]:
            raise CredentialError("the Authorization header needs key, ts, nonce and sig")
        if KEY_ID.match(params["key"]) is None:
            raise CredentialError("the key id is malformed")
        if _TS.match(params["ts"]) is None:
            raise CredentialError("ts is not a unix time in seconds")
        if NONCE.match(params["nonce"]) is None:
            raise CredentialError("the nonce must be 16-128 characters of [A-Za-z0-9_-]")
        if _SIG.match(params["sig"]) is None:
            raise CredentialError("the signature is malformed")
        return cls(params["key"], int(params["ts"]), params["nonce"], unb64url(params["sig"]))

    def fresh(self, now: float, skew_s: int) -> bool:
        return abs(now - self.ts) <= skew_s

    def verifies(self, public_key: bytes, method: str, target: bytes, body: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(
                self.sig, canonical(self.ts, self.nonce, method, target, body)
            )
        except (InvalidSignature, ValueError):
            return False
        return True
