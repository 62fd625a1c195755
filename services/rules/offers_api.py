"""The offers HTTP API (FastAPI, port 8084): the same operations as ``social-loyalty offers``.

Bodies are JSON or YAML (at most 1 MiB, nested at most 64 deep, no YAML aliases, no
integer longer than ``MAX_INT_LITERAL`` characters).
An invalid offer answers 422 with ``{"error": ..., "detail": [{"field": ...,
"message": ...}], "errors": <the same list>}``. Store calls are short synchronous
transactions, run on FastAPI's thread pool so the loop keeps serving health probes.
The OpenAPI 3.1 document is at ``/openapi.json``, the docs page at ``/docs``.

    GET    /offers                      list (current versions)
    POST   /offers                      create            -> 201
    GET    /offers/{id}[?version=N]     show
    PUT    /offers/{id}                 new version
    POST   /offers/{id}/activate        activate
    POST   /offers/{id}/deactivate      deactivate
    POST   /offers/load-examples        the acceptance set (?activate=false to keep it off)

Every route above needs a signed service credential (``services.runtime.access``):
``offers:read`` for the two GETs, ``offers:admin`` for the rest (docs/security.md).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final

import yaml
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from services.contracts.bounds import MAX_TEXT, NO_NUL_PATTERN
from services.rules.offer_store import OfferExistsError, OfferNotFoundError, OfferStore
from services.rules.offers import _NAME, Offer, OfferError
from services.rules.settings import RulesSettings
from services.runtime import health
from services.runtime.access import AccessGate, require
from services.runtime.httpapi import MAX_DEPTH, ErrorResponse, create_api

MAX_BODY: Final = 1024 * 1024
MAX_VERSION: Final = 2**31 - 1
"""Versions are PostgreSQL ``integer``s."""
MAX_INT_LITERAL: Final = 64
"""Characters in an integer of a body (sign, digits, YAML's ``0x``, ``_`` and ``:``
included). An offer's largest number has 19 digits (``INT64_MAX``); a longer literal is
refused while the body is parsed, because Python will not convert one of more than 4,300
digits (a ``ValueError`` from inside the parser, which was a 500) and YAML's base-60
integers (``1:00:00``) cost time quadratic in their length."""


class _IntegerTooLongError(Exception):
    """Not a ``ValueError``: the JSON attempt must not swallow it and try YAML."""


def _too_long(literal: str) -> str:
    return (
        f"body refused: an integer of {len(literal)} characters "
        f"(at most {MAX_INT_LITERAL}; an offer's numbers have at most 19 digits)"
    )


def _json_int(literal: str) -> int:
    if len(literal) > MAX_INT_LITERAL:
        raise _IntegerTooLongError(_too_long(literal))
    return int(literal)


class _OfferLoader(yaml.SafeLoader):
    """Safe YAML that refuses aliases (no exponential documents) and deep nesting."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None,
                None,
                "aliases are not allowed",
                self.peek_event().start_mark,  # type: ignore[no-untyped-call]
            )
        depth = getattr(self, "_depth", 0)
        if depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"nested deeper than {MAX_DEPTH}",
                self.peek_event().start_mark,  # type: ignore[no-untyped-call]
            )
        self._depth = depth + 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """An integer, or ``_IntegerTooLongError`` (422) for one too long to be an offer's."""
        literal = str(self.construct_scalar(node))
        if len(literal) > MAX_INT_LITERAL:
            raise _IntegerTooLongError(_too_long(literal))
        value: int = super().construct_yaml_int(node)
        return value


_OfferLoader.add_constructor("tag:yaml.org,2002:int", _OfferLoader.construct_yaml_int)


def _string_problem(value: str) -> str | None:
    if "\x00" in value:
        return "a string contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "a string contains a lone surrogate"
    return None


def _text_problem(data: Any, depth: int = 0) -> str | None:
    """A string (or key) PostgreSQL cannot store: a NUL or a lone surrogate."""
    if depth > MAX_DEPTH:
        return "nested too deep"
    if isinstance(data, str):
        return _string_problem(data)
    items: list[Any] = []
    if isinstance(data, dict):
        items = [*data.keys(), *data.values()]
    elif isinstance(data, list):
        items = data
    for item in items:
        problem = _text_problem(item, depth + 1)
        if problem is not None:
            return problem
    return None


def _json_or_yaml(text: str) -> Any:
    try:
        return json.loads(text, parse_int=_json_int)
    except ValueError:
        try:
            return yaml.load(text, Loader=_OfferLoader)  # noqa: S506 - a SafeLoader subclass
        except (yaml.YAMLError, RecursionError) as exc:
            raise OfferError(f"body is not valid JSON/YAML: {exc}") from None
    except RecursionError:
        raise OfferError("body is nested too deep") from None


def parse_body(raw: bytes) -> dict[str, Any]:
    """The offer mapping in a JSON or YAML body, or ``OfferError`` (422)."""
    text = raw.decode("utf-8", errors="replace")
    try:
        data = _json_or_yaml(text)
    except _IntegerTooLongError as exc:
        raise OfferError(str(exc)) from None
    if not isinstance(data, dict):
        raise OfferError("the body must be an offer object")
    problem = _text_problem(data)
    if problem is not None:
        raise OfferError(f"body refused: {problem}")
    return data


class OfferSummary(BaseModel):
    id: str
    name: str
    active: bool
    current_version: int
    version: int
    trigger: list[str]
    updated_at: str


class StoredOfferView(OfferSummary):
    created_at: str
    author: str | None
    comment: str | None
    body: dict[str, Any] = Field(description="The offer as stored (see the Offer schema).")


class LoadedExamples(BaseModel):
    created: list[str]


OfferId = Annotated[str, Path(pattern=_NAME, description="The offer's id.")]
Author = Annotated[
    str | None,
    Header(alias="X-Author", max_length=200, pattern=NO_NUL_PATTERN, description="Who saves it."),
]
Comment = Annotated[
    str | None,
    Query(max_length=MAX_TEXT, pattern=NO_NUL_PATTERN, description="Why (kept with the version)."),
]
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "An offer, as JSON or YAML (application/yaml).",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Offer"}}},
    }
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such offer (or version)."}
}
_INVALID_OFFER: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "An invalid offer, per field."}
}


def create_app(store: OfferStore, settings: RulesSettings) -> FastAPI:
    """The API with /healthz /readyz /metrics from the shared API edge. Reading offers
    needs a signed credential with ``offers:read``, changing them ``offers:admin``
    (``settings.access`` says where the credentials are)."""

    def ready() -> str | None:
        try:
            store.signature()
        except Exception as exc:
            return f"offer store: {exc}"
        return None

    # PostgreSQL is probed in the background (readiness and a 503 with Retry-After for
    # every route while it is down); ``ready`` then checks the store's schema answers.
    app = create_api(
        "rules-api",
        ready=ready,
        dependencies=health.Dependencies(health.probes(database=settings.database)),
        title="social-loyalty offers API",
        description="Create, version, activate and list offers (the rules' configuration).",
        max_body=MAX_BODY,
        invalid_status=422,
        list_alias="errors",
        access=AccessGate(settings.access, settings.database),
    )
    read: dict[str, Any] = {"tags": ["offers"], "dependencies": [Depends(require("offers:read"))]}
    admin: dict[str, Any] = {
        "tags": ["offers"],
        "dependencies": [Depends(require("offers:admin"))],
    }

    async def offer_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, OfferError)
        return JSONResponse(
            {"error": str(exc), "detail": exc.errors, "errors": exc.errors}, status_code=422
        )

    async def not_found(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc), "detail": []}, status_code=404)

    async def exists(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc), "detail": []}, status_code=409)

    app.add_exception_handler(OfferError, offer_error)
    app.add_exception_handler(OfferNotFoundError, not_found)
    app.add_exception_handler(OfferExistsError, exists)

    base_openapi = app.openapi

    def offer_schema() -> dict[str, Any]:
        document = base_openapi()
        schema = Offer.model_json_schema(ref_template="#/components/schemas/{model}")
        definitions = schema.pop("$defs", {})
        document["components"]["schemas"].update({**definitions, "Offer": schema})
        return document

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = offer_schema()
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/offers", **read, response_model=list[OfferSummary])
    def list_offers() -> JSONResponse:
        """Every offer's current version."""
        return JSONResponse([o.summary() for o in store.all()])

    @app.post(
        "/offers",
        **admin,
        status_code=201,
        response_model=StoredOfferView,
        openapi_extra=_BODY,
        responses={
            409: {"model": ErrorResponse, "description": "The id exists; update it instead."},
            **_INVALID_OFFER,
        },
    )
    async def create(request: Request, author: Author = None, comment: Comment = None) -> Any:
        """Create an offer (version 1, inactive)."""
        body = await run_in_threadpool(parse_body, await request.body())
        stored = await run_in_threadpool(store.create, body, author=author, comment=comment)
        return JSONResponse(stored.to_dict(), status_code=201)

    @app.get(
        "/offers/{offer_id}",
        **read,
        response_model=StoredOfferView,
        responses=_NOT_FOUND,
    )
    def show(
        offer_id: OfferId,
        version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
    ) -> JSONResponse:
        """The current version, or ``version``."""
        return JSONResponse(store.show(offer_id, version).to_dict())

    @app.put(
        "/offers/{offer_id}",
        **admin,
        response_model=StoredOfferView,
        openapi_extra=_BODY,
        responses={**_NOT_FOUND, **_INVALID_OFFER},
    )
    async def update(
        offer_id: OfferId, request: Request, author: Author = None, comment: Comment = None
    ) -> Any:
        """Save a new version (the store numbers it)."""
        body = await run_in_threadpool(parse_body, await request.body())
        stored = await run_in_threadpool(
            store.update, offer_id, body, author=author, comment=comment
        )
        return JSONResponse(stored.to_dict())

    @app.post(
        "/offers/{offer_id}/activate",
        **admin,
        response_model=OfferSummary,
        responses=_NOT_FOUND,
    )
    def activate(offer_id: OfferId) -> JSONResponse:
        return JSONResponse(store.set_active(offer_id, True).summary())

    @app.post(
        "/offers/{offer_id}/deactivate",
        **admin,
        response_model=OfferSummary,
        responses=_NOT_FOUND,
    )
    def deactivate(offer_id: OfferId) -> JSONResponse:
        return JSONResponse(store.set_active(offer_id, False).summary())

    @app.post("/offers/load-examples", **admin, response_model=LoadedExamples)
    def load_examples(activate: bool = True) -> JSONResponse:
        """The acceptance set; offers already there are left alone."""
        return JSONResponse({"created": store.load_examples(activate=activate)})

    return app
