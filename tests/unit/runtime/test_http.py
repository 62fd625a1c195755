"""The shared HTTP edge answers probes and exposes metrics."""

from __future__ import annotations

import socket

import httpx
from prometheus_client import CollectorRegistry, Counter

from services.runtime.http import create_app, serve_in_thread


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_probes_and_metrics_are_served() -> None:
    registry = CollectorRegistry()
    Counter("demo_things", "Things seen.", registry=registry).inc(3)
    state: dict[str, str | None] = {"reason": "warming up"}
    app = create_app("demo", ready=lambda: state["reason"], registry=registry)
    port = _free_port()
    server = serve_in_thread(app, "127.0.0.1", port)
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz").json() == {"service": "demo", "status": "ok"}
        not_ready = httpx.get(f"{base}/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["reason"] == "warming up"
        state["reason"] = None
        assert httpx.get(f"{base}/readyz").status_code == 200
        assert "demo_things_total 3.0" in httpx.get(f"{base}/metrics").text
    finally:
        server.stop()
