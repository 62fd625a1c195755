"""The link API while PostgreSQL or the broker is away (real PostgreSQL behind a switch
the test turns off and on; a broker address where nothing listens), against the
simulator's VK ID: 503 with ``Retry-After`` and ``/readyz`` false within 5 s, the
member's one-time code not spent (the same proof links once the dependency is back),
200 again within 30 s and never a 500; connections killed between requests are
replaced, not handed out."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
import psycopg
from pydantic import SecretStr

from services.link.settings import LinkSettings
from services.runtime.settings import DatabaseSettings
from services.simulator.testing import make_simulator, running
from tests.integration.link.test_link_api import (
    events,
    link_api,
    proof,
    settings,  # noqa: F401 -- the fixture
)
from tests.integration.outage import (
    TcpSwitch,
    assert_unavailable,
    terminate_backends,
    with_application_name,
)

NOWHERE = "127.0.0.1:9"
"""The discard port: nothing listens."""


async def within(check: Callable[[], Awaitable[bool]], what: str, timeout: float) -> float:
    """Seconds until ``check()`` is true; fails with ``what`` after ``timeout``."""
    began = time.monotonic()
    while not await check():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        await asyncio.sleep(0.1)
    return time.monotonic() - began


def readiness(http: httpx.AsyncClient, want: bool) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        answer = await http.get("/readyz")
        assert answer.status_code in (200, 503), answer.text
        return (answer.status_code == 200) == want

    return check


def with_database(configured: LinkSettings, url: str) -> LinkSettings:
    return configured.model_copy(update={"database": DatabaseSettings(database_url=SecretStr(url))})


def test_postgres_away_is_503_and_the_code_stays_usable(
    settings: LinkSettings,  # noqa: F811
    database_url: str,
) -> None:
    switch = TcpSwitch.before(database_url)

    async def main() -> None:
        async with (
            running(make_simulator()) as sim,
            link_api(with_database(settings, switch.url(database_url)), sim.base_url) as http,
        ):
            assert (await http.get("/readyz")).status_code == 200
            code = await proof(sim.base_url, "vk", 501)
            link = {"member_id": "m-outage", "proof": code}

            switch.off()
            # At once, before the probes notice: the pools find their connections dead.
            first, took = await asyncio.gather(
                http.post("/v1/links", json=link),
                within(readiness(http, False), "/readyz false after PostgreSQL went", 5),
            )
            assert_unavailable(first)
            assert took <= 5
            reason = (await http.get("/readyz")).json()["reason"]
            assert "PostgreSQL unreachable" in reason, reason
            assert_unavailable(await http.post("/v1/links", json=link))
            assert_unavailable(await http.get("/v1/members/m-outage/links"))

            switch.on()
            await within(readiness(http, True), "/readyz true after PostgreSQL came back", 30)
            statuses: list[int] = []

            async def linked() -> bool:
                answer = await http.post("/v1/links", json=link)
                statuses.append(answer.status_code)
                return answer.status_code != 503

            await within(linked, "an answer other than 503 once PostgreSQL is back", 30)
            assert statuses[-1] == 201, statuses  # the very code the outage refused
            again = await http.post("/v1/links", json=link)
            assert again.status_code == 401, again.text  # it is one-time: now it is spent
            listed = await http.get("/v1/members/m-outage/links")
            assert listed.status_code == 200, listed.text
            assert [x["social_user_id"] for x in listed.json()["links"]] == ["501"]

    try:
        asyncio.run(main())
    finally:
        switch.close()
    assert [(type(e).__name__, e.member_id) for _, e in events(settings)] == [
        ("ProfileLinked", "m-outage")
    ]


def test_broker_away_is_503_before_the_code_is_spent(
    settings: LinkSettings,  # noqa: F811
) -> None:
    nowhere = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": NOWHERE})}
    )

    async def main() -> None:
        async with running(make_simulator()) as sim:
            code = await proof(sim.base_url, "vk", 502)
            link = {"member_id": "m-no-broker", "proof": code}
            async with link_api(nowhere, sim.base_url) as http:
                await within(readiness(http, False), "/readyz false without a broker", 5)
                reason = (await http.get("/readyz")).json()["reason"]
                assert "Kafka unreachable" in reason, reason
                assert_unavailable(await http.post("/v1/links", json=link))
            async with link_api(settings, sim.base_url) as http:
                linked = await http.post("/v1/links", json=link)
                assert linked.status_code == 201, linked.text

    asyncio.run(main())


def test_connections_killed_between_requests_are_replaced_not_a_500(
    settings: LinkSettings,  # noqa: F811
    database_url: str,
) -> None:
    name = f"t-link-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        async with (
            running(make_simulator()) as sim,
            link_api(
                with_database(settings, with_application_name(database_url, name)), sim.base_url
            ) as http,
        ):
            with psycopg.connect(database_url, autocommit=True) as admin:
                for user in (601, 602, 603):
                    # the credentials pool and the link pool each hold one at least
                    assert terminate_backends(admin, name) >= 2
                    code = await proof(sim.base_url, "vk", user)
                    linked = await http.post(
                        "/v1/links", json={"member_id": f"m-{user}", "proof": code}
                    )
                    assert linked.status_code == 201, linked.text
                    assert terminate_backends(admin, name) >= 2
                    listed = await http.get(f"/v1/members/m-{user}/links")
                    assert listed.status_code == 200, listed.text

    asyncio.run(main())
