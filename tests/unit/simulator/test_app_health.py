"""The simulator on the shared HTTP edge: /healthz, /readyz and /metrics with real series."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from services.simulator.endpoints import create_app
from services.simulator.testing import VK_GROUP_TOKEN, make_simulator

Client = TestClient[web.Request, web.Application]


def series(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_probes_answer_and_metrics_count_what_was_served() -> None:
    async def main() -> None:
        simulator = make_simulator()
        async with TestClient(TestServer(create_app(simulator))) as client:
            assert (await client.get("/healthz")).status == 200
            ready = await client.get("/readyz")
            assert ready.status == 200
            assert await ready.json() == {"service": "simulator", "ready": True}

            created = await client.post(
                "/_control/groups", json={"network": "vk", "group_id": 7, "members": [1, 2]}
            )
            assert created.status == 201
            assert (await client.post("/_control/groups/vk/7/posts", json={})).status == 201
            assert (await client.get("/_control/groups/vk/404")).status == 404
            params = {"access_token": VK_GROUP_TOKEN, "v": "5.199", "group_id": "7"}
            for _ in range(2):
                assert (await client.get("/method/groups.getMembers", params=params)).status == 200

            metrics = await client.get("/metrics")
            assert metrics.headers["Content-Type"].startswith("text/plain")
            values = series(await metrics.text())

        def requests(api: str, status: str) -> float:
            key = (
                "social_loyalty_simulator_requests_total",
                (("api", api), ("status", status)),
            )
            return values.get(key, 0.0)

        assert requests("vk", "200") == 2
        assert requests("control", "201") == 2
        assert requests("control", "404") == 1
        assert requests("probe", "200") == 2
        assert values[("social_loyalty_simulator_groups", (("network", "vk"),))] == 1
        assert values[("social_loyalty_simulator_groups", (("network", "ok"),))] == 0
        assert values[("social_loyalty_simulator_posts", (("network", "vk"),))] == 1
        assert values[("social_loyalty_simulator_faults_pending", ())] == 0

    asyncio.run(main())


def test_two_simulators_in_one_process_keep_their_own_counts() -> None:
    async def main() -> tuple[str, str]:
        first, second = create_app(make_simulator()), create_app(make_simulator())
        async with (
            TestClient(TestServer(first)) as a,
            TestClient(TestServer(second)) as b,
        ):
            await a.get("/_control/faults")
            return await (await a.get("/metrics")).text(), await (await b.get("/metrics")).text()

    first, second = asyncio.run(main())
    assert 'social_loyalty_simulator_requests_total{api="control",status="200"} 1.0' in first
    assert 'api="control"' not in second
