"""HTTP face of the monitor: /metrics, /api/lag, /api/history, /api/services,
/api/stream (SSE), /healthz, /readyz and the dashboard page at /."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from importlib import resources

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.lagmonitor.monitor import LagMonitor
from services.lagmonitor.page import render_page
from services.lagmonitor.throughput import services_to_json

MONITOR: web.AppKey[LagMonitor] = web.AppKey("monitor", LagMonitor)
KEEPALIVE_S = 15.0


def _dashboard_html() -> str:
    return (resources.files("services.lagmonitor") / "static" / "dashboard.html").read_text(
        encoding="utf-8"
    )


async def _index(request: web.Request) -> web.Response:
    """The page with the current groups, statuses and services in it (``page.py``), so
    it says something before (or without) its script; the script keeps it live."""
    monitor = request.app[MONITOR]
    text = render_page(_dashboard_html(), monitor.document(), monitor.kafka_json())
    response = web.Response(text=text, content_type="text/html", charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    return response


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[MONITOR].metrics.registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def _lag(request: web.Request) -> web.Response:
    monitor = request.app[MONITOR]
    document = monitor.document()
    if document is None:
        return web.json_response(
            {
                "error": monitor.last_error or "no sample yet",
                "current": False,
                "kafka": monitor.kafka_json(),
                "groups": [],
                "topics": [],
                "services": services_to_json(monitor.services),
            },
            status=503,
        )
    return web.json_response(document)


async def _services(request: web.Request) -> web.Response:
    """Throughput and up/down of the scraped services, also when Kafka cannot be sampled."""
    return web.json_response({"services": services_to_json(request.app[MONITOR].services)})


async def _history(request: web.Request) -> web.Response:
    return web.json_response(request.app[MONITOR].history_json())


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    reason = request.app[MONITOR].not_ready()
    if reason is None:
        return web.json_response({"service": "lagmonitor", "ready": True, "status": "ready"})
    return web.json_response(
        {"service": "lagmonitor", "ready": False, "status": "not ready", "reason": reason},
        status=503,
    )


async def _stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: a ``lag`` event per sample; a comment every 15 s keeps proxies open."""
    monitor = request.app[MONITOR]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    queue = monitor.subscribe()
    try:
        document = monitor.document()
        if document is not None or monitor.last_attempt_at is not None:
            first = {"snapshot": document, "point": None, "kafka": monitor.kafka_json()}
            await response.write(f"event: lag\ndata: {json.dumps(first)}\n\n".encode())
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if message is None:
                break
            await response.write(f"event: lag\ndata: {json.dumps(message)}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        monitor.unsubscribe(queue)
    return response


def create_app(monitor: LagMonitor, *, sample: bool = True) -> web.Application:
    """The web app; with ``sample`` it also runs the sampling loop for its lifetime."""
    app = web.Application()
    app[MONITOR] = monitor
    app.router.add_get("/", _index)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/api/lag", _lag)
    app.router.add_get("/api/history", _history)
    app.router.add_get("/api/services", _services)
    app.router.add_get("/api/stream", _stream)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)

    async def end_streams(app: web.Application) -> None:
        monitor.close_listeners()

    app.on_shutdown.append(end_streams)

    if sample:

        async def sampling(app: web.Application) -> AsyncIterator[None]:
            task = asyncio.create_task(monitor.run(), name="lagmonitor-sampling")
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await monitor.close()

        app.cleanup_ctx.append(sampling)
    return app
