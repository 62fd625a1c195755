"""The HTTP routes over hand-made samples (the real-broker version is in integration)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.lagmonitor.core import ClusterSample, GroupObservation
from services.lagmonitor.monitor import LagMonitor
from services.lagmonitor.settings import LagMonitorSettings
from services.lagmonitor.web import create_app

Client = TestClient[web.Request, web.Application]
T = "social.events"
SAMPLE = ClusterSample(
    time=1_700_000_000.0,
    groups=(GroupObservation("social-loyalty.rules", committed={(T, 0): 3}),),
    end_offsets={(T, 0): 8},
)


def with_client(test: Callable[[Client, LagMonitor], Awaitable[None]]) -> None:
    async def main() -> None:
        monitor = LagMonitor(LagMonitorSettings())
        async with TestClient(TestServer(create_app(monitor, sample=False))) as client:
            await test(client, monitor)

    asyncio.run(main())


def test_health_is_alive_and_ready_only_after_a_sample() -> None:
    async def check(client: Client, monitor: LagMonitor) -> None:
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/readyz")).status == 503
        assert (await client.get("/api/lag")).status == 503
        monitor.apply(SAMPLE)
        assert (await client.get("/readyz")).status == 200
        lag = await (await client.get("/api/lag")).json()
        assert lag["groups"][0]["partitions"][0]["lag"] == 5
        history = await (await client.get("/api/history")).json()
        assert history["points"][0]["groups"]["social-loyalty.rules"]["lag"] == 5

    with_client(check)


def test_metrics_endpoint_speaks_prometheus_text() -> None:
    async def check(client: Client, monitor: LagMonitor) -> None:
        monitor.apply(SAMPLE)
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        body = await response.text()
        assert (
            'kafka_consumergroup_lag{cluster_name="local",consumergroup="social-loyalty.rules",'
            'partition="0",replay="false",topic="social.events"} 5.0' in body
        )

    with_client(check)


def test_stream_pushes_each_new_sample() -> None:
    async def check(client: Client, monitor: LagMonitor) -> None:
        response = await client.get("/api/stream")
        assert response.headers["Content-Type"] == "text/event-stream"
        await asyncio.sleep(0.05)  # let the handler subscribe
        monitor.apply(SAMPLE)
        event = b""
        while not event.endswith(b"\n\n"):
            event += await asyncio.wait_for(response.content.readline(), 5)
        assert event.startswith(b"event: lag\ndata: ")
        message = json.loads(event.split(b"data: ", 1)[1])
        assert message["snapshot"]["sampled_at"] == SAMPLE.time
        assert message["point"]["groups"]["social-loyalty.rules"]["lag"] == 5
        response.close()

    with_client(check)


def test_dashboard_is_one_self_contained_page_with_stable_hooks() -> None:
    async def check(client: Client, monitor: LagMonitor) -> None:
        response = await client.get("/")
        assert response.status == 200
        html = await response.text()
        for hook in (
            'id="groups-body"',
            'id="worst-body"',
            'id="chart-lag"',
            'id="chart-time-lag"',
            'id="updated"',
            "data-updated=",
        ):
            assert hook in html
        assert "dataset.updated" in html  # live data changes the attribute
        # No external assets: the machine that shows it may have no internet.
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
        assert "@import" not in html

    with_client(check)


def _group_rows(html: str) -> dict[str, str]:
    """``data-group`` -> ``data-status`` of every row of the groups table."""
    body = html.split('id="groups-body"', 1)[1].split("</tbody>", 1)[0]
    return dict(re.findall(r'<tr [^>]*data-group="([^"]+)" data-status="([A-Z]+)"', body))


def test_the_first_response_shows_groups_and_status_without_a_script() -> None:
    """``curl /``: the groups with their status, the summary and the worst partition are
    in the HTML; the script's placeholders are gone."""
    busy = ClusterSample(
        time=1_700_000_000.0,
        groups=(
            GroupObservation("social-loyalty.rules", committed={(T, 0): 8}),
            GroupObservation("social-loyalty.actions.<bonus>", committed={(T, 0): 3}),
            GroupObservation("social-loyalty.detector", error="Broker: Group authorization failed"),
        ),
        end_offsets={(T, 0): 8},
    )

    async def check(client: Client, monitor: LagMonitor) -> None:
        before = await (await client.get("/")).text()
        assert _group_rows(before) == {}
        assert "No sample of Kafka yet." in before
        assert 'id="worst-empty">Every partition' not in before  # nothing sampled: no claim
        monitor.apply(busy)
        response = await client.get("/")
        assert response.headers["Cache-Control"] == "no-store"
        html = await response.text()
        assert _group_rows(html) == {
            "social-loyalty.actions.&lt;bonus&gt;": "OK",  # escaped, never markup
            "social-loyalty.detector": "ERR",
            "social-loyalty.rules": "OK",
        }
        assert 'data-updated="1700000000.0"' in html
        assert 'data-kafka="up"' in html
        assert '<span id="updated">22:13:20 UTC</span>' in html
        assert "3 groups, 1 not OK" in html
        assert '<div class="empty" id="groups-empty" hidden>' in html
        assert 'updated <span id="updated">never' not in html
        worst = html.split('id="worst-body"', 1)[1].split("</tbody>", 1)[0]
        assert 'data-group="social-loyalty.actions.&lt;bonus&gt;"' in worst
        assert "<li>social-loyalty.detector: Broker: Group authorization failed</li>" in html
        assert "<script>" in html  # and the script still makes it live

    with_client(check)


def test_the_first_response_says_kafka_is_unreachable() -> None:
    async def check(client: Client, monitor: LagMonitor) -> None:
        monitor.fail("Kafka unreachable: no broker at 127.0.0.1:1 answered")
        html = await (await client.get("/")).text()
        assert 'data-kafka="down"' in html
        assert "<title>Kafka unreachable · Consumer lag" in html
        assert '<div id="kafka-down" role="alert">Kafka is unreachable (' in html
        assert "Last successful sample: never." in html
        assert "Kafka is unreachable: no consumer group figures." in html
        assert 'id="worst-empty">No current figures: Kafka is unreachable.<' in html

    with_client(check)
