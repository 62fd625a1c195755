"""Service-to-service credentials for the HTTP APIs (see docs/security.md, "API
credentials").

* server: ``AccessGate`` (passed to ``create_api(..., access=...)``) and
  ``require(scope)`` on every protected route;
* client: ``SignedAuth`` (an ``httpx.Auth``) and ``ensure_credential``;
* storage: the ``access`` migrations component, schema ``ACCESS_DB_SCHEMA``;
* operators: ``social-loyalty credentials create|list|revoke``.
"""

from services.runtime.access.client import SignedAuth, ensure_credential
from services.runtime.access.gate import AccessGate, Caller, require
from services.runtime.access.signing import SCHEME, SCOPES, CredentialError
from services.runtime.settings import AccessSettings

__all__ = [
    "SCHEME",
    "SCOPES",
    "AccessGate",
    "AccessSettings",
    "Caller",
    "CredentialError",
    "SignedAuth",
    "ensure_credential",
    "require",
]
