"""The link API's OpenAPI 3.1 document, served at ``GET /openapi.json``.

The schemas are generated from the pydantic models the handlers validate requests
with and build responses from (``LinkRequest``, ``RegistrationRequest`` and the
response models below), so the document cannot drift from what the API accepts
and answers. Only the paths, which aiohttp cannot describe, are written here; a
test checks that every route of the app is among them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from services.collector.links import MEMBER_ID, LinkRequest, RegistrationRequest


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LinkView(_Out):
    """An active link as the API shows it."""

    member_id: str
    network: Literal["vk", "ok", "apple"]
    social_user_id: str
    registration: bool = Field(description="Made when the member registered with this profile.")
    linked_at: str = Field(description="ISO 8601, UTC, milliseconds.")


class LinkResponse(_Out):
    link: LinkView
    event_id: str = Field(description="The ProfileLinked event's deterministic id.")
    created: bool = Field(description="False: the same link existed; no new event was sent.")


class RegistrationResponse(LinkResponse):
    member_id: str = Field(pattern=MEMBER_ID, description="The member the profile now belongs to.")


class UnlinkResponse(_Out):
    unlinked: LinkView
    event_id: str = Field(description="The ProfileUnlinked event's deterministic id.")


class MemberLinks(_Out):
    member_id: str
    links: list[LinkView]


class ErrorResponse(_Out):
    error: str
    member_id: str | None = Field(
        default=None, description="On a refused registration: the member who has the profile."
    )


class FieldError(_Out):
    field: str
    message: str


class ValidationErrorResponse(_Out):
    error: Literal["invalid request"]
    fields: list[FieldError]


MODELS: tuple[type[BaseModel], ...] = (
    LinkRequest,
    RegistrationRequest,
    LinkView,
    LinkResponse,
    RegistrationResponse,
    UnlinkResponse,
    MemberLinks,
    ErrorResponse,
    FieldError,
    ValidationErrorResponse,
)

_LINKED_AT = "2025-03-01T10:00:00.123000+00:00"
_EVENT_ID = "b672bd43b0b2d5b8c3e3a1d1b1f8a9e7"
_LINK = {
    "member_id": "m-1",
    "network": "vk",
    "social_user_id": "42",
    "registration": False,
    "linked_at": _LINKED_AT,
}
_INVALID = {
    "error": "invalid request",
    "fields": [{"field": "network", "message": "Input should be 'vk', 'ok' or 'apple'"}],
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str, example: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(model), "example": example}},
    }


def _error(description: str, message: str, **extra: Any) -> dict[str, Any]:
    return _json(ErrorResponse, description, {"error": message, **extra})


_UNAUTHORIZED = _error("Missing, stale or wrong signature (when a secret is set).", "bad signature")
_INVALID_RESPONSE = _json(ValidationErrorResponse, "Every invalid field, named.", _INVALID)
_NOT_CONFIRMED = _error(
    "Stored, but the broker did not acknowledge the event in time; retry the same request.",
    "link stored but its event is not confirmed: no acknowledgement; retry",
)
_PATH_NETWORK = {
    "name": "network",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "enum": ["vk", "ok", "apple"]},
}
_PATH_USER = {
    "name": "social_user_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}
_PATH_MEMBER = {
    "name": "member_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": MEMBER_ID},
}


def _paths() -> dict[str, Any]:
    registered = {**_LINK, "member_id": "m-5f0c2a9e", "registration": True}
    return {
        "/v1/links": {
            "post": {
                "operationId": "link",
                "summary": "Link a social profile to a member",
                "description": "201 once the broker acknowledged ProfileLinked on social.events.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref(LinkRequest),
                            "example": {
                                "member_id": "m-1",
                                "network": "vk",
                                "social_user_id": "42",
                            },
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        LinkResponse,
                        "Linked; the event is on the topic.",
                        {"link": _LINK, "event_id": _EVENT_ID, "created": True},
                    ),
                    "200": _json(
                        LinkResponse,
                        "The same link already existed; nothing new was sent.",
                        {"link": _LINK, "event_id": _EVENT_ID, "created": False},
                    ),
                    "401": _UNAUTHORIZED,
                    "409": _error(
                        "The profile is linked to another member.",
                        "vk profile 42 is already linked to another member; unlink it there first",
                    ),
                    "422": _INVALID_RESPONSE,
                    "503": _NOT_CONFIRMED,
                },
            }
        },
        "/v1/registrations": {
            "post": {
                "operationId": "register",
                "summary": "Register a new member through a social profile",
                "description": (
                    "Links the profile with registration=true to the given member_id, or to a "
                    "new member id the collector creates when none is given."
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref(RegistrationRequest),
                            "example": {"network": "vk", "social_user_id": "42"},
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        RegistrationResponse,
                        "Registered; ProfileLinked (registration=true) is on the topic.",
                        {
                            "member_id": "m-5f0c2a9e",
                            "link": registered,
                            "event_id": _EVENT_ID,
                            "created": True,
                        },
                    ),
                    "200": _json(
                        RegistrationResponse,
                        "A repeat with the same member_id: nothing new was sent.",
                        {
                            "member_id": "m-5f0c2a9e",
                            "link": registered,
                            "event_id": _EVENT_ID,
                            "created": False,
                        },
                    ),
                    "401": _UNAUTHORIZED,
                    "409": _error(
                        "The profile already belongs to a member (sign in instead).",
                        "vk profile 42 is already registered to a member; sign in instead",
                        member_id="m-1",
                    ),
                    "422": _INVALID_RESPONSE,
                    "503": _NOT_CONFIRMED,
                },
            }
        },
        "/v1/links/{network}/{social_user_id}": {
            "delete": {
                "operationId": "unlink",
                "summary": "Unlink a social profile",
                "parameters": [_PATH_NETWORK, _PATH_USER],
                "responses": {
                    "200": _json(
                        UnlinkResponse,
                        "Unlinked; ProfileUnlinked is on the topic.",
                        {"unlinked": _LINK, "event_id": _EVENT_ID},
                    ),
                    "401": _UNAUTHORIZED,
                    "404": _error("The profile is not linked.", "vk profile 42 is not linked"),
                    "422": _INVALID_RESPONSE,
                    "503": _NOT_CONFIRMED,
                },
            }
        },
        "/v1/members/{member_id}/links": {
            "get": {
                "operationId": "memberLinks",
                "summary": "A member's active links",
                "parameters": [_PATH_MEMBER],
                "responses": {
                    "200": _json(
                        MemberLinks, "Active links.", {"member_id": "m-1", "links": [_LINK]}
                    ),
                    "401": _UNAUTHORIZED,
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1 JSON"}},
            }
        },
        "/healthz": {
            "get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}
        },
        "/readyz": {
            "get": {
                "summary": "Readiness (PostgreSQL and Kafka opened)",
                "responses": {
                    "200": {"description": "ready"},
                    "503": {"description": "not ready, with the reason"},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text exposition format"}},
            }
        },
    }


def document() -> dict[str, Any]:
    """The whole OpenAPI document (a fresh dict on every call)."""
    _, schemas = models_json_schema(
        [(model, "validation") for model in MODELS],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "social-loyalty collector link API",
            "version": "1",
            "description": (
                "Called by the Personal Account. With COLLECTOR_LINK_SECRET set, every /v1/ "
                "request carries X-Timestamp (unix seconds) and X-Signature: hex "
                "HMAC-SHA256(secret, '<timestamp>\\n<METHOD>\\n<path?query>\\n<body>')."
            ),
        },
        "servers": [{"url": "http://127.0.0.1:8082"}],
        "paths": _paths(),
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {
                "timestamp": {"type": "apiKey", "in": "header", "name": "X-Timestamp"},
                "signature": {"type": "apiKey", "in": "header", "name": "X-Signature"},
            },
        },
        "security": [{"timestamp": [], "signature": []}],
    }
