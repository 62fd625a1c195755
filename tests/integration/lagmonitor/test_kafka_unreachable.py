"""Kafka unreachable: the monitor says so on ``/readyz``, in ``/metrics`` and on its page.

The monitor is pointed at a closed port on 127.0.0.1 (a port just bound and
released, nobody listening), so the shared broker and the other tests are not
disturbed. Within two sampling intervals its ``/readyz`` must fail with a
reason, ``lagmonitor_kafka_up`` must be 0 with no success recorded, and the
page (in a real Chromium) must say that Kafka is unreachable instead of
"every partition is caught up". The other way round, against the real broker,
is in ``test_server_live.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import sync_playwright
from prometheus_client.parser import text_string_to_metric_families

from services.lagmonitor.monitor import LagMonitor
from services.lagmonitor.settings import LagMonitorSettings
from services.lagmonitor.web import create_app
from services.runtime.http import serve_in_thread
from services.runtime.settings import KafkaSettings
from tests.integration.lagmonitor.test_dashboard_browser import chromium_executable, free_port

INTERVAL_S = 1.0
# Thread hand-offs and HTTP round trips on top of the two intervals.
SLACK_S = 0.5


@pytest.fixture
def unreachable_monitor() -> Iterator[tuple[str, str, float]]:
    """A monitor (sampling loop and HTTP) whose only broker is a closed port."""
    closed = f"127.0.0.1:{free_port()}"
    settings = LagMonitorSettings(
        kafka=KafkaSettings(bootstrap_servers=closed),
        sample_interval_s=INTERVAL_S,
        request_timeout_s=INTERVAL_S,
        host="127.0.0.1",
        port=free_port(),
        history_db=False,
    )
    started = time.monotonic()
    server = serve_in_thread(create_app(LagMonitor(settings)), settings.host, settings.port)
    try:
        yield f"http://{settings.host}:{settings.port}", closed, started
    finally:
        server.stop()


def series(text: str) -> dict[str, float]:
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_unreachable_kafka_fails_readyz_zeroes_up_and_is_on_the_page(
    unreachable_monitor: tuple[str, str, float],
) -> None:
    base, closed, started = unreachable_monitor
    while True:
        ready = httpx.get(f"{base}/readyz", timeout=5)
        body: dict[str, Any] = ready.json()
        if ready.status_code == 503 and "Kafka unreachable" in body["reason"]:
            break
        assert time.monotonic() - started < 2 * INTERVAL_S + SLACK_S, body
        time.sleep(0.05)
    assert body["ready"] is False
    assert closed in body["reason"]
    assert "no successful sample since the monitor started" in body["reason"]
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200

    metrics = series(httpx.get(f"{base}/metrics", timeout=5).text)
    assert metrics["lagmonitor_kafka_up"] == 0
    assert metrics["lagmonitor_last_success_timestamp_seconds"] == 0
    assert metrics["lagmonitor_last_sample_timestamp_seconds"] > 0
    assert metrics["lagmonitor_poll_errors_total"] >= 1
    assert not [name for name in metrics if name.startswith("kafka_")]

    lag = httpx.get(f"{base}/api/lag", timeout=5)
    assert lag.status_code == 503
    document = lag.json()
    assert document["current"] is False
    assert document["kafka"]["reachable"] is False
    assert document["kafka"]["last_success_at"] is None
    assert "Kafka unreachable" in document["kafka"]["error"]
    assert document["kafka"]["bootstrap_servers"] == closed

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable(),
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            page = browser.new_page()
            page.goto(f"{base}/", wait_until="domcontentloaded")
            page.wait_for_selector("#kafka-down:not([hidden])", timeout=10_000)
            banner = page.inner_text("#kafka-down")
            kafka_state = page.evaluate("document.body.dataset.kafka")
        finally:
            browser.close()
    assert banner.startswith(f"Kafka is unreachable ({closed})"), banner
    assert "Last successful sample: never" in banner
    assert kafka_state == "down"
