"""The HTTP edge of the APIs other services call (FastAPI on uvicorn).

``create_api`` builds a FastAPI application with the same ``/healthz``, ``/readyz``
and ``/metrics`` as ``services.runtime.http.create_app`` (the aiohttp edge of the
workers), plus what every API needs at its door, in one place:

* one error shape, valid JSON, for every refusal: ``{"error": "...", "detail":
  [{"field", "message"}]}`` (``RequestValidationError``, ``HTTPException``, the
  guard below, and a last-resort handler that answers a JSON 500);
* a guard (``RequestGuard``) that refuses, before any handler or database sees
  them, a NUL byte or invalid UTF-8 in the path or the query, a NUL byte in a
  header value (400; header values are Latin-1 by HTTP's rules), a body over the
  API's limit (413), a body that is not UTF-8, holds a NUL byte or a ``\\u0000``
  escape, or nests deeper than ``MAX_DEPTH`` (400);
* honest health: with ``dependencies`` (``services.runtime.health.Dependencies``,
  probed in the background from the app's lifespan on), ``/readyz`` is 503 with the
  reason while one is unreachable, and every other route answers 503 at once
  (``DependencyGuard``) instead of waiting on a pool; a request that meets PostgreSQL
  down anyway (``OperationalError``, a pool timeout, ``DatabaseUnavailableError``)
  answers 503 too, never 500, and every 503 carries ``Retry-After``.

``start_api`` serves an app on the running loop, ``serve_api_in_thread`` on a
background thread (the synchronous services); both bind the socket first, so a
port in use raises in the caller, and both return once the app's lifespan
(pools, producers) has started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Final
from urllib.parse import unquote_to_bytes

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.runtime.access.gate import AccessGate, document
from services.runtime.health import Dependencies
from services.runtime.http import ReadyCheck
from services.runtime.pgpool import UNAVAILABLE

log = logging.getLogger(__name__)

MAX_DEPTH: Final = 64
"""Deepest nesting of ``[``/``{`` a body may have (offers need fewer than ten)."""
DEFAULT_MAX_BODY: Final = 64 * 1024
RETRY_AFTER_S: Final = 5
"""``Retry-After`` of every 503: the probes see a dependency back within a second or two."""
OPEN_PATHS: Final = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
)
"""Routes that answer whatever the dependencies do."""
RETRY_AFTER_DOC: Final = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer"},
    }
}
"""The OpenAPI ``headers`` of a 503 answer."""

Lifespan = Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]


class FieldProblem(BaseModel):
    """One thing wrong with a request: where (a dotted field name) and what."""

    model_config = ConfigDict(frozen=True)

    field: str
    message: str


class ErrorResponse(BaseModel):
    """Every refusal of every API: ``error`` says what went wrong, ``detail`` lists
    the offending fields (empty when the request as a whole is refused)."""

    model_config = ConfigDict(frozen=True)

    error: str
    detail: list[FieldProblem] = Field(default_factory=list)
    fields: list[FieldProblem] | None = Field(
        default=None, description="Link API only: the same list as detail (older clients)."
    )
    errors: list[FieldProblem] | None = Field(
        default=None, description="Offers API only: the same list as detail (older clients)."
    )
    member_id: str | None = Field(
        default=None, description="On a refused registration: the member who has the profile."
    )


class ApiError(Exception):
    """Raised by a handler to answer ``status`` with the common error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        detail: Sequence[FieldProblem | dict[str, str]] = (),
        **extra: str,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = [FieldProblem.model_validate(d) for d in detail]
        self.extra = extra


def error_body(
    message: str,
    detail: Sequence[FieldProblem] = (),
    *,
    list_alias: str | None = None,
    **extra: str,
) -> dict[str, Any]:
    problems = [p.model_dump() for p in detail]
    body: dict[str, Any] = {"error": message, "detail": problems, **extra}
    if list_alias is not None and problems:
        body[list_alias] = problems
    return body


def _field_of(loc: Sequence[int | str], kind: str) -> str:
    if kind == "json_invalid" or not loc:
        return "body"
    where, *rest = loc
    if where == "body":
        return ".".join(str(part) for part in rest) or "body"
    return ".".join(str(part) for part in rest) or str(where)


def install_error_handlers(app: FastAPI, invalid_status: int, list_alias: str | None) -> None:
    """Route every error FastAPI or a handler raises through the one shape."""

    def respond(status: int, body: dict[str, Any]) -> JSONResponse:
        response = JSONResponse(body, status_code=status)
        if status == 503:
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    async def invalid(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = [
            FieldProblem(field=_field_of(e.get("loc", ()), e.get("type", "")), message=e["msg"])
            for e in exc.errors()
        ]
        return respond(
            invalid_status, error_body("invalid request", problems, list_alias=list_alias)
        )

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        response = respond(exc.status_code, error_body(message))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def unavailable(request: Request, exc: Exception) -> Response:
        log.warning(
            "PostgreSQL unavailable on %s %s: %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
            str(exc).strip(),
        )
        return respond(503, error_body("PostgreSQL is unavailable; retry later"))

    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        body = error_body(exc.message, exc.detail, list_alias=list_alias, **exc.extra)
        return respond(exc.status, body)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return respond(500, error_body(f"internal error ({type(exc).__name__})"))

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ApiError, api_error)
    for kind in UNAVAILABLE:
        app.add_exception_handler(kind, unavailable)
    app.add_exception_handler(Exception, unexpected)


# ------------------------------------------------------------------ the guard

_INTERESTING = re.compile(rb'[\[\]{}"]')
_STRING_REST = re.compile(rb'(?:[^"\\]|\\.)*"', re.DOTALL)


def nesting_depth(body: bytes, limit: int = MAX_DEPTH) -> int:
    """The deepest ``[``/``{`` nesting outside JSON strings, counted up to ``limit + 1``.

    Linear in the body: the regex jumps between brackets and quotes, and a string
    that never ends stops the count (the parser will refuse the body anyway)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return 0
    depth = deepest = 0
    position = 0
    while (found := _INTERESTING.search(body, position)) is not None:
        char = found.group()
        position = found.end()
        if char == b'"':
            rest = _STRING_REST.match(body, position)
            if rest is None:
                break
            position = rest.end()
        elif char in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth = max(depth - 1, 0)
    return deepest


def has_nul_escape(body: bytes) -> bool:
    """A ``\\u0000`` escape (an odd run of backslashes before ``u0000``): JSON's NUL."""
    at = body.find(b"u0000")
    while at != -1:
        start = at
        while start > 0 and body[start - 1] == 0x5C:  # backslash
            start -= 1
        if (at - start) % 2 == 1:
            return True
        at = body.find(b"u0000", at + 5)
    return False


def _clean_text(raw: bytes) -> str | None:
    """Why ``raw`` (already percent-decoded) cannot reach a handler, or None."""
    if b"\x00" in raw:
        return "contains a NUL byte"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "is not valid UTF-8"
    return None


class RequestGuard:
    """Pure ASGI middleware: refuse malformed requests with the common error shape
    before routing, so no handler, parser or database sees them."""

    def __init__(self, app: ASGIApp, max_body: int, max_depth: int = MAX_DEPTH) -> None:
        self.app = app
        self.max_body = max_body
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = self._check_head(scope)
        if problem is not None:
            await self._refuse(send, 400, *problem)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and (len(declared) > 18 or int(declared) > self.max_body):
            await self._refuse(send, 413, "body", f"the body is larger than {self.max_body} bytes")
            return
        chunks = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks += message.get("body", b"")
            more = message.get("more_body", False)
            if len(chunks) > self.max_body:
                await self._refuse(
                    send, 413, "body", f"the body is larger than {self.max_body} bytes"
                )
                return
        body = bytes(chunks)
        why = self._check_body(body)
        if why is not None:
            await self._refuse(send, 400, "body", why)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _check_head(self, scope: Scope) -> tuple[str, str] | None:
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogatepass")
        why = _clean_text(unquote_to_bytes(raw_path))
        if why is not None or "\x00" in scope["path"]:
            return "path", f"the path {why or 'contains a NUL byte'}"
        query: bytes = scope.get("query_string", b"")
        why = _clean_text(unquote_to_bytes(query.replace(b"+", b" ")))
        if why is not None:
            return "query", f"the query {why}"
        for name, value in scope.get("headers", []):
            if b"\x00" in value:
                return name.decode("latin-1"), "a header value contains a NUL byte"
        return None

    def _check_body(self, body: bytes) -> str | None:
        if not body:
            return None
        why = _clean_text(body)
        if why is not None:
            return f"the body {why}"
        if has_nul_escape(body):
            return "the body contains a \\u0000 escape (NUL)"
        if nesting_depth(body, self.max_depth) > self.max_depth:
            return f"the body nests deeper than {self.max_depth} levels"
        return None

    async def _refuse(self, send: Send, status: int, field: str, message: str) -> None:
        response = JSONResponse(
            error_body(message, [FieldProblem(field=field, message=message)]), status_code=status
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": response.body})


class DependencyGuard:
    """Pure ASGI middleware: while a dependency is down, every route but the open ones
    answers 503 with the reason and ``Retry-After`` at once, instead of waiting for a
    pool's timeout or failing half-way through its work."""

    def __init__(self, app: ASGIApp, dependencies: Dependencies) -> None:
        self.app = app
        self.dependencies = dependencies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            down = self.dependencies.not_ready()
            if down is not None:
                response = JSONResponse(
                    error_body(f"{down}; retry later"),
                    status_code=503,
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# ------------------------------------------------------------------ the app


class Health(BaseModel):
    service: str
    status: str


class Readiness(BaseModel):
    service: str
    ready: bool
    reason: str | None = None


async def first_answers(dependencies: Dependencies) -> None:
    """Wait (at most one probe's interval and timeout) until every dependency answered
    once, so a service that just started does not refuse its first requests as "not
    probed yet"; one still down after that stays on ``/readyz``."""
    deadline = time.monotonic() + dependencies.interval_s + dependencies.timeout_s
    while dependencies.not_ready() is not None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def _composed(
    access: AccessGate | None, dependencies: Dependencies | None, inner: Lifespan | None
) -> Lifespan | None:
    """The app's lifespan: the probes start first and stop last, then the gate's pool,
    then the service's own lifespan."""
    if access is None and dependencies is None:
        return inner

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if dependencies is not None:
                dependencies.start()
                stack.callback(dependencies.stop)
                await first_answers(dependencies)
            if access is not None:
                await stack.enter_async_context(access.opened())
            if inner is not None:
                await stack.enter_async_context(inner(app))
            yield

    return lifespan


def document_unavailable(openapi: dict[str, Any]) -> dict[str, Any]:
    """Add the 503 with ``Retry-After`` to every operation but the open routes' (in
    place; returns the document); a route's own 503 keeps its description."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for path, operations in openapi.get("paths", {}).items():
        if path in OPEN_PATHS:
            continue
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            answer = operation.setdefault("responses", {}).setdefault(
                "503",
                {
                    "description": "PostgreSQL or the broker is unreachable; retry after the "
                    "seconds in Retry-After.",
                    "content": error,
                },
            )
            answer.setdefault("headers", {}).update(RETRY_AFTER_DOC)
    return openapi


def create_api(
    service: str,
    ready: ReadyCheck | None = None,
    registry: CollectorRegistry = REGISTRY,
    *,
    title: str,
    description: str = "",
    lifespan: Lifespan | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    invalid_status: int = 422,
    list_alias: str | None = None,
    access: AccessGate | None = None,
    dependencies: Dependencies | None = None,
) -> FastAPI:
    """A FastAPI app for ``service`` with ``/healthz``, ``/readyz``, ``/metrics``, the
    error shape and the guard. ``invalid_status`` is what a request that fails
    validation answers (422, or 400 where the API always said 400); ``list_alias``
    repeats ``detail`` under an older key (``fields``, ``errors``) for old clients.

    ``access`` is the gate of the routes that have ``Depends(require(scope))``: its
    pool opens before ``lifespan`` and closes after it, and the OpenAPI document lists
    their 401 and 403 answers. The health routes, ``/metrics`` and the documents stay
    open.

    ``dependencies`` are what the service needs to make progress (PostgreSQL, the
    brokers): probed from the lifespan on, they make ``/readyz`` false while one is
    down (``ready`` is asked only while none is), and every other route 503 meanwhile."""
    app = FastAPI(
        title=title,
        description=description,
        version="1",
        lifespan=_composed(access, dependencies, lifespan),
        responses={
            invalid_status: {"model": ErrorResponse, "description": "Invalid request"},
            400: {"model": ErrorResponse, "description": "Malformed request (NUL, UTF-8, depth)"},
            413: {"model": ErrorResponse, "description": "Body too large"},
        },
    )
    install_error_handlers(app, invalid_status, list_alias)
    if dependencies is not None:
        app.state.dependencies = dependencies
        app.add_middleware(DependencyGuard, dependencies=dependencies)
    app.add_middleware(RequestGuard, max_body=max_body)
    if access is not None:
        app.state.access = access
    if access is not None or dependencies is not None:

        def openapi() -> dict[str, Any]:
            if app.openapi_schema is None:
                built = FastAPI.openapi(app)
                if access is not None:
                    built = document(built)
                app.openapi_schema = document_unavailable(built)
            return app.openapi_schema

        app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/healthz", tags=["health"], response_model=Health)
    async def healthz() -> JSONResponse:
        """Liveness: the process answers."""
        return JSONResponse({"service": service, "status": "ok"})

    @app.get(
        "/readyz",
        tags=["health"],
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready, with the reason"}},
    )
    async def readyz() -> JSONResponse:
        """Readiness: the service can do its job now."""
        reason = dependencies.not_ready() if dependencies is not None else None
        if reason is None and ready is not None:  # not while down: it may wait on one
            reason = ready()
        if reason is None:
            return JSONResponse({"service": service, "ready": True})
        return JSONResponse({"service": service, "ready": False, "reason": reason}, 503)

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}},
    )
    async def metrics() -> Response:
        """Prometheus metrics of this process."""
        return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return app


# ------------------------------------------------------------------ serving


class _Server(uvicorn.Server):
    """uvicorn that leaves signals to the service and reports a failed startup as an
    exception (uvicorn calls ``sys.exit``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        except SystemExit as exc:
            raise RuntimeError("the API's startup failed (see the log)") from exc


class ApiServer:
    """A running uvicorn server on the current loop."""

    def __init__(self, server: _Server, task: asyncio.Task[None], port: int) -> None:
        self._server, self._task, self.port = server, task, port

    async def stop(self) -> None:
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._task), 30)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


async def start_api(app: FastAPI, host: str, port: int) -> ApiServer:
    """Serve ``app`` on the running loop; returns once it accepts requests (its
    lifespan has run). ``port=0`` picks a free port (``ApiServer.port``)."""
    sock = _bind(host, port)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=10
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            sock.close()
            task.result()
            raise RuntimeError("the API stopped while starting")
        await asyncio.sleep(0.01)
    return ApiServer(server, task, int(sock.getsockname()[1]))


@contextlib.asynccontextmanager
async def running_api(app: FastAPI, host: str, port: int) -> AsyncIterator[ApiServer]:
    """``start_api`` as a context manager that stops the server on exit."""
    server = await start_api(app, host, port)
    try:
        yield server
    finally:
        await server.stop()


class BackgroundApi:
    """Serves a FastAPI app from a daemon thread with its own event loop."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self._app, self._host, self._port = app, host, port
        self._loop = asyncio.new_event_loop()
        self._server: ApiServer | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="http-api", daemon=True)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.port

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                start_api(self._app, self._host, self._port)
            )
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_until_complete(self._server._task)

    def start(self) -> None:
        self._thread.start()
        self._started.wait(timeout=60)
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._server is not None:
            self._server._server.should_exit = True
        self._thread.join(timeout=30)


def serve_api_in_thread(app: FastAPI, host: str, port: int) -> BackgroundApi:
    """Start ``app`` on a background thread; raises if the port cannot be bound or the
    app's startup fails."""
    server = BackgroundApi(app, host, port)
    server.start()
    return server
