"""Local message sinks for the demo and the tests: an SMTP server (aiosmtpd) and an
HTTP provider endpoint that record every message they accept.

* ``POST /<channel>`` (sms, push, viber, ...): accepted, answers ``{"id": ...}``.
* ``POST /flaky/<n>/<channel>``: answers 503 to the first ``n`` requests of each
  idempotency key, then accepts (a provider having a bad minute).
* ``POST /down/<channel>``: always 503 (a provider that is gone).
* ``GET /messages`` (JSON list, emails included), ``GET /counts``, ``DELETE /messages``.
* ``GET /healthz``, ``/readyz`` (ready while both listeners serve) and ``/metrics``
  (messages accepted and attempts refused by channel, since start: ``DELETE
  /messages`` does not reset them), from the shared HTTP edge.

Only accepted messages are recorded as delivered; refused attempts are counted
apart, so a test can tell "retried" from "delivered twice".
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from services.runtime.http import BackgroundServer, ReadyCheck, create_app


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for tests that run sinks in-process)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class MessageLog:
    """Thread-safe record of accepted messages and refused attempts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[dict[str, Any]] = []
        self._refused: Counter[str] = Counter()
        # Since start, by channel; ``clear`` leaves them, so /metrics only counts up.
        self._accepted_total: Counter[str] = Counter()
        self._refused_total: Counter[str] = Counter()

    def add(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._messages.append({**message, "received_at": datetime.now(UTC).isoformat()})
            self._accepted_total[str(message.get("channel"))] += 1

    def refuse(self, key: str, channel: str = "unknown") -> int:
        """Count a refused attempt for ``key``; returns how many were refused so far."""
        with self._lock:
            self._refused[key] += 1
            self._refused_total[channel] += 1
            return self._refused[key]

    def totals(self) -> tuple[dict[str, int], dict[str, int], int]:
        """Accepted and refused since start by channel, and how many messages are kept now."""
        with self._lock:
            return dict(self._accepted_total), dict(self._refused_total), len(self._messages)

    def refused(self, key: str) -> int:
        with self._lock:
            return self._refused[key]

    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._refused.clear()

    def counts(self) -> dict[str, Any]:
        messages = self.messages()
        keys = Counter(str(m.get("key")) for m in messages)
        return {
            "total": len(messages),
            "by_channel": dict(Counter(str(m["channel"]) for m in messages)),
            "duplicate_keys": sorted(key for key, n in keys.items() if n > 1),
            "refused_attempts": sum(self._refused.values()),
        }


class SinkCollector(Collector):
    """The message log's totals, read at scrape time."""

    def __init__(self, log: MessageLog) -> None:
        self._log = log

    def collect(self) -> Iterator[Metric]:
        accepted, refused, kept = self._log.totals()
        received = CounterMetricFamily(
            "social_loyalty_sinks_messages",
            "Messages the sinks accepted (recorded as delivered), by channel.",
            labels=["channel"],
        )
        for channel, n in sorted(accepted.items()):
            received.add_metric([channel], n)
        refusals = CounterMetricFamily(
            "social_loyalty_sinks_refused",
            "Attempts the sinks refused on purpose (/flaky, /down), by channel.",
            labels=["channel"],
        )
        for channel, n in sorted(refused.items()):
            refusals.add_metric([channel], n)
        stored = GaugeMetricFamily(
            "social_loyalty_sinks_messages_kept", "Messages GET /messages returns now."
        )
        stored.add_metric([], kept)
        yield from (received, refusals, stored)

    def describe(self) -> Iterator[Metric]:
        return iter(())


class _SmtpHandler:
    def __init__(self, log: MessageLog) -> None:
        self.log = log

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        mail: Message = message_from_bytes(envelope.content)
        payload = mail.get_payload(decode=True)
        body = payload.decode(errors="replace") if isinstance(payload, bytes) else ""
        self.log.add(
            {
                "channel": "email",
                "key": mail.get("X-Idempotency-Key"),
                "to": list(envelope.rcpt_tos),
                "subject": str(mail.get("Subject", "")),
                "text": body,
                "template_id": mail.get("X-Template-Id"),
            }
        )
        return "250 Message accepted"


def sink_app(log: MessageLog, ready: ReadyCheck | None = None) -> web.Application:
    """The HTTP provider sink; ``ready`` adds what else must be up (the SMTP listener)."""
    registry = CollectorRegistry()
    registry.register(SinkCollector(log))
    app = create_app("sinks", ready, registry)

    async def accept(request: web.Request, channel: str) -> web.Response:
        try:
            payload = await request.json()
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        except ConnectionResetError:  # the sender went away mid-request (e.g. kill -9)
            return web.json_response({"error": "connection lost"}, status=400)
        provider_id = uuid.uuid4().hex
        log.add(
            {
                "channel": channel,
                "key": request.headers.get("Idempotency-Key"),
                "to": payload.get("to"),
                "subject": payload.get("subject"),
                "text": payload.get("text"),
                "template_id": payload.get("template_id"),
                "id": provider_id,
            }
        )
        return web.json_response({"id": provider_id})

    async def plain(request: web.Request) -> web.Response:
        return await accept(request, request.match_info["channel"])

    async def flaky(request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        if log.refused(key) < int(request.match_info["n"]):
            log.refuse(key, request.match_info["channel"])
            return web.json_response({"error": "try again"}, status=503)
        return await accept(request, request.match_info["channel"])

    async def down(request: web.Request) -> web.Response:
        log.refuse(request.headers.get("Idempotency-Key", ""), request.match_info["channel"])
        return web.json_response({"error": "provider down"}, status=503)

    async def messages(_: web.Request) -> web.Response:
        return web.json_response(log.messages())

    async def counts(_: web.Request) -> web.Response:
        return web.json_response(log.counts())

    async def clear(_: web.Request) -> web.Response:
        log.clear()
        return web.json_response({"cleared": True})

    app.router.add_get("/messages", messages)
    app.router.add_delete("/messages", clear)
    app.router.add_get("/counts", counts)
    app.router.add_post(r"/flaky/{n:\d+}/{channel}", flaky)
    app.router.add_post("/down/{channel}", down)
    app.router.add_post("/{channel}", plain)
    return app


class Sinks:
    """Both sinks, started and stopped together; usable in-process from tests."""

    def __init__(self, host: str = "127.0.0.1", smtp_port: int = 8025, http_port: int = 8087):
        self.host, self.smtp_port, self.http_port = host, smtp_port, http_port
        self.log = MessageLog()
        self._smtp = Controller(_SmtpHandler(self.log), hostname=host, port=smtp_port)
        self._http = BackgroundServer(sink_app(self.log, self.not_ready), host, http_port)

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def not_ready(self) -> str | None:
        """The HTTP sink answers this itself; the SMTP listener must be serving too."""
        server = self._smtp.server
        if server is None or not server.is_serving():
            return f"smtp listener on {self.host}:{self.smtp_port} is not serving"
        return None

    def start(self) -> Sinks:
        self._smtp.start()
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()
        self._smtp.stop()

    def __enter__(self) -> Sinks:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def run_forever(sinks: Sinks, stop: threading.Event) -> None:
    """Serve until ``stop`` (SIGTERM) is set."""
    with sinks:
        while not stop.wait(1.0):
            continue
