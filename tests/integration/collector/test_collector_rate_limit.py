"""The collector against VK's own rule: 3 requests in any one second, per token.

Each run is a brand-new Python process (``cold_collect``): its first request pays
for the connection and whatever the process has not loaded yet, which is exactly
when a limiter that clocks requests before they leave lets the server see four
inside one second. The simulator enforces the limit with no margin, as VK does,
and records when each request arrived, so the rate is measured where VK
measures it. Runs use a token each, so a few can go at once without sharing a
limit; no Kafka or PostgreSQL is involved.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from services.simulator.enforcement import Reply, Simulator, VkToken
from services.simulator.testing import make_simulator, running
from services.simulator.world import World

LIMIT = 3
RUNS = 20
AT_ONCE = 4
GROUP = 4242
POSTS = 60
"""Enough posts for a run of several requests: members, wall, then ``execute`` batches."""


class ClockedSimulator(Simulator):
    """The simulator, noting when each VK request arrived, by token."""

    def __init__(self, base: Simulator) -> None:
        super().__init__(base.world, vk_tokens=base.vk_tokens, ok_app=base.ok_app)
        self.arrivals: defaultdict[str, list[float]] = defaultdict(list)

    def vk(self, method: str, params: Mapping[str, str]) -> Reply:
        self.arrivals[params.get("access_token", "")].append(time.monotonic())
        return super().vk(method, params)


def _world() -> World:
    world = World()
    world.add_group("vk", GROUP, range(1, 2_001))
    for n in range(POSTS):
        post = world.add_post("vk", GROUP)
        for user in range(1 + n, 40 + n):
            world.like("vk", GROUP, post, user)
    return world


async def _cold_run(base_url: str, token: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.collector.cold_collect",
        base_url,
        token,
        str(GROUP),
        str(POSTS),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


def test_cold_collector_runs_never_draw_error_6_and_use_the_limit() -> None:
    tokens = [f"cold-run-{n}" for n in range(RUNS)]
    simulator = ClockedSimulator(
        make_simulator(
            _world(), extra_vk_tokens={token: VkToken("user", LIMIT) for token in tokens}
        )
    )

    async def main() -> list[dict[str, Any]]:
        async with running(simulator) as server:
            results: list[dict[str, Any]] = []
            for start in range(0, RUNS, AT_ONCE):
                batch = tokens[start : start + AT_ONCE]
                results += await asyncio.gather(
                    *(_cold_run(server.vk_base_url, token) for token in batch)
                )
            return results

    began = time.monotonic()
    results = asyncio.run(main())
    elapsed = time.monotonic() - began

    refused = sum(simulator.rejected.values())
    errors_6 = sum(int(r["errors"].get("6", 0)) for r in results)
    assert refused == 0 and errors_6 == 0, f"error 6 in cold runs: {results}"
    rates = []
    for token in tokens:
        arrivals = simulator.arrivals[token]
        assert len(arrivals) > 2 * LIMIT, f"{token}: only {len(arrivals)} requests"
        # Under the limit, n requests span at least floor((n - 1) / LIMIT) seconds.
        floor_s = (len(arrivals) - 1) // LIMIT
        rates.append(floor_s / (arrivals[-1] - arrivals[0]))
    print(
        f"\n{RUNS} cold runs in {elapsed:.1f}s; requests per run "
        f"{sorted({len(simulator.arrivals[t]) for t in tokens})}; share of the limit used: "
        f"min {min(rates):.3f}, mean {sum(rates) / len(rates):.3f}"
    )
    assert min(rates) >= 0.9, f"share of the limit used per run: {rates}"
