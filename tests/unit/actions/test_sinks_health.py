"""The demo's message sinks on the shared HTTP edge: /readyz covers both listeners and
/metrics counts what they accepted and refused (in-process, on free local ports)."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.actions.sinks import Sinks, free_port


@pytest.fixture
def sinks() -> Iterator[Sinks]:
    running = Sinks(smtp_port=free_port(), http_port=free_port()).start()
    try:
        yield running
    finally:
        running.stop()


def series(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_ready_while_both_listeners_serve_and_metrics_count_messages(sinks: Sinks) -> None:
    base = sinks.http_url
    assert httpx.get(f"{base}/healthz").status_code == 200
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 200, ready.text

    assert httpx.post(f"{base}/sms", json={"to": "+1", "text": "hi"}).status_code == 200
    assert httpx.post(f"{base}/down/push", json={"to": "t", "text": "x"}).status_code == 503
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "lp@example.org", "m@example.org", "Bonus"
    mail.set_content("5 points")
    with smtplib.SMTP(sinks.host, sinks.smtp_port, timeout=10) as smtp:
        smtp.send_message(mail)
    assert httpx.delete(f"{base}/messages").status_code == 200  # totals are not reset

    metrics = httpx.get(f"{base}/metrics")
    assert metrics.headers["Content-Type"].startswith("text/plain")
    values = series(metrics.text)
    assert values[("social_loyalty_sinks_messages_total", (("channel", "sms"),))] == 1
    assert values[("social_loyalty_sinks_messages_total", (("channel", "email"),))] == 1
    assert values[("social_loyalty_sinks_refused_total", (("channel", "push"),))] == 1
    assert values[("social_loyalty_sinks_messages_kept", ())] == 0


def test_a_stopped_smtp_listener_makes_readyz_fail() -> None:
    sinks = Sinks(smtp_port=free_port(), http_port=free_port()).start()
    try:
        assert httpx.get(f"{sinks.http_url}/readyz").status_code == 200
        sinks._smtp.stop()  # the SMTP side alone goes away; HTTP still answers
        ready = httpx.get(f"{sinks.http_url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["reason"] == (
            f"smtp listener on {sinks.host}:{sinks.smtp_port} is not serving"
        )
    finally:
        sinks._http.stop()
