"""The HTTP edge every service shares: ``/healthz``, ``/readyz`` and ``/metrics``.

Services add their own routes to the application this builds, so probes and
Prometheus scrape configs look the same for all of them. Synchronous services
(the actions consumers) run it on a background thread with ``serve_in_thread``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

ReadyCheck = Callable[[], str | None]
"""Returns ``None`` when ready, otherwise a short reason shown by ``/readyz``."""


def create_app(
    service: str, ready: ReadyCheck | None = None, registry: CollectorRegistry = REGISTRY
) -> web.Application:
    """An aiohttp application with the three standard endpoints for ``service``."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"service": service, "status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        reason = ready() if ready is not None else None
        if reason is None:
            return web.json_response({"service": service, "ready": True})
        return web.json_response({"service": service, "ready": False, "reason": reason}, status=503)

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def start(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving ``app`` on the running loop; call ``runner.cleanup()`` to stop."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


class BackgroundServer:
    """Serves an aiohttp application from a daemon thread with its own event loop."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._app, self._host, self._port = app, host, port
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._runner = self._loop.run_until_complete(start(self._app, self._host, self._port))
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        self._started.wait(timeout=30)
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._runner is not None:
            future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            future.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def serve_in_thread(app: web.Application, host: str, port: int) -> BackgroundServer:
    """Start ``app`` on a background thread; raises if the port cannot be bound."""
    server = BackgroundServer(app, host, port)
    server.start()
    return server
