"""The offers HTTP API (port 8084): the same operations as ``social-loyalty offers``.

Bodies are JSON or YAML. An invalid offer
answers 422 with ``{"error": ..., "errors": [{"field": ..., "message": ...}]}``.
Store calls are short synchronous transactions, run on a thread so the loop
keeps serving health probes.

    GET    /offers                      list (current versions)
    POST   /offers                      create            -> 201
    GET    /offers/{id}[?version=N]     show
    PUT    /offers/{id}                 new version
    POST   /offers/{id}/activate        activate
    POST   /offers/{id}/deactivate      deactivate
    POST   /offers/load-examples        the acceptance set (?activate=false to keep it off)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import yaml
from aiohttp import web

from services.rules.offers import OfferError
from services.rules.store import OfferExistsError, OfferNotFoundError, OfferStore
from services.runtime.http import create_app as create_base_app

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, errors: list[dict[str, str]] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if errors is not None:
        body["errors"] = errors
    return web.json_response(body, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OfferError as exc:
        return _error(422, str(exc), exc.errors)
    except OfferNotFoundError as exc:
        return _error(404, str(exc))
    except OfferExistsError as exc:
        return _error(409, str(exc))


async def _body(request: web.Request) -> dict[str, Any]:
    text = await request.text()
    try:
        data = yaml.safe_load(text)  # JSON is a subset of YAML
    except yaml.YAMLError as exc:
        raise OfferError(f"body is not valid JSON/YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise OfferError("the body must be an offer object")
    return data


def create_app(store: OfferStore) -> web.Application:
    """The API on top of the shared /healthz /readyz /metrics app."""

    def ready() -> str | None:
        try:
            store.signature()
        except Exception as exc:
            return f"offer store: {exc}"
        return None

    # A probe costs one short query; with PG down it answers 503 within the connect timeout.
    app = create_base_app("rules-api", ready=ready)
    app.middlewares.append(_errors)

    async def list_offers(_: web.Request) -> web.Response:
        offers = await asyncio.to_thread(store.all)
        return web.json_response([o.summary() for o in offers])

    async def create(request: web.Request) -> web.Response:
        body = await _body(request)
        stored = await asyncio.to_thread(
            store.create,
            body,
            author=request.headers.get("X-Author"),
            comment=request.query.get("comment"),
        )
        return web.json_response(stored.to_dict(), status=201)

    async def show(request: web.Request) -> web.Response:
        raw_version = request.query.get("version")
        if raw_version is not None and not raw_version.isdigit():
            raise OfferError("version must be a number", [{"field": "version", "message": "int"}])
        version = int(raw_version) if raw_version is not None else None
        stored = await asyncio.to_thread(store.show, request.match_info["id"], version)
        return web.json_response(stored.to_dict())

    async def update(request: web.Request) -> web.Response:
        body = await _body(request)
        stored = await asyncio.to_thread(
            store.update,
            request.match_info["id"],
            body,
            author=request.headers.get("X-Author"),
            comment=request.query.get("comment"),
        )
        return web.json_response(stored.to_dict())

    def switch(active: bool) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            stored = await asyncio.to_thread(store.set_active, request.match_info["id"], active)
            return web.json_response(stored.summary())

        return handler

    async def load_examples(request: web.Request) -> web.Response:
        activate = request.query.get("activate", "true") != "false"
        created = await asyncio.to_thread(store.load_examples, activate=activate)
        return web.json_response({"created": created})

    app.router.add_post("/offers/load-examples", load_examples)
    app.router.add_get("/offers", list_offers)
    app.router.add_post("/offers", create)
    app.router.add_get("/offers/{id}", show)
    app.router.add_put("/offers/{id}", update)
    app.router.add_post("/offers/{id}/activate", switch(True))
    app.router.add_post("/offers/{id}/deactivate", switch(False))
    return app
