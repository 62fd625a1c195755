"""The link API against a real broker and PostgreSQL and the simulator's identity providers:
every profile is proven (VK ID code + PKCE, OK code, Apple identity token), one event per
new link before 201, and a refused proof stores and publishes nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka import KafkaError, TopicPartition
from pydantic import SecretStr

from services.contracts.codec import SingleObjectCodec
from services.contracts.models import ProfileLinked, ProfileUnlinked
from services.contracts.topics import EVENTS, TopicSettings, apply, catalog, plan
from services.link.identity import AppleSettings, IdentitySettings, OkSettings, VkIdSettings
from services.link.link_api import create_link_app
from services.link.settings import LinkSettings
from services.runtime import kafka
from services.runtime.access import SCOPES, AccessSettings, SignedAuth, ensure_credential
from services.runtime.httpapi import running_api
from services.runtime.settings import DatabaseSettings, KafkaSettings
from services.simulator import identity_client as idc
from services.simulator.testing import OK_APP_KEY, OK_APP_SECRET, make_simulator, running

DEADLINE_S = 60.0


@pytest.fixture
def settings(
    kafka_settings: KafkaSettings,
    database_settings: DatabaseSettings,
    database_url: str,
    access_settings: AccessSettings,
    unique: Callable[[str], str],
) -> Iterator[LinkSettings]:
    topics = TopicSettings(prefix=unique("link") + ".", partitions=2)
    specs = [s for s in catalog(topics) if s.name == topics.name(EVENTS)]
    admin = kafka.admin(kafka_settings)
    apply(admin, plan(specs, {}), fix=False)
    schema = f"t_link_{uuid.uuid4().hex[:10]}"
    yield LinkSettings(
        kafka=kafka_settings,
        database=database_settings,
        topics=topics,
        db_schema=schema,
        http_port=0,
        access=access_settings,
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    for future in admin.delete_topics([s.name for s in specs]).values():
        try:
            future.result(30)
        except Exception:
            continue


VK_CLIENT = "54000001"
OK_CLIENT = "512000000001"  # the simulator's OkApp.application_id
APPLE_CLIENT = "com.example.loyalty"


def identity_for(sim_base_url: str, **changes: Any) -> IdentitySettings:
    """Real-looking identity settings with every provider's endpoints at the simulator."""
    configured = IdentitySettings(
        vk=VkIdSettings(
            client_id=VK_CLIENT,
            token_url=f"{sim_base_url}/vkid/oauth2/auth",
            user_info_url=f"{sim_base_url}/vkid/oauth2/user_info",
        ),
        ok=OkSettings(
            client_id=OK_CLIENT,
            application_key=OK_APP_KEY,
            client_secret=SecretStr(OK_APP_SECRET),
            token_url=f"{sim_base_url}/oauth/token.do",
            api_url=f"{sim_base_url}/fb.do",
        ),
        apple=AppleSettings(
            client_id=APPLE_CLIENT, jwks_url=f"{sim_base_url}/apple/auth/keys", jwks_min_refresh_s=0
        ),
    )
    return configured.model_copy(update=changes)


Body = Callable[[httpx.AsyncClient, str], Awaitable[None]]


@asynccontextmanager
async def link_api(
    settings: LinkSettings, sim_base_url: str, **identity: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The link API (its providers at the simulator) and a client that signs with an
    all-scopes credential."""
    secret = ensure_credential(
        settings.database.database_url.get_secret_value(),
        settings.access.db_schema,
        "link API tests",
        SCOPES,
    )
    configured = settings.model_copy(update={"identity": identity_for(sim_base_url, **identity)})
    async with (
        running_api(create_link_app(configured), "127.0.0.1", 0) as server,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{server.port}", auth=SignedAuth(secret), timeout=30
        ) as http,
    ):
        yield http


def serve(settings: LinkSettings, body: Body, **identity: Any) -> None:
    """Run the simulator and the link API, then ``body(http, sim_base_url)``."""

    async def main() -> None:
        async with (
            running(make_simulator()) as sim,
            link_api(settings, sim.base_url, **identity) as http,
        ):
            await body(http, sim.base_url)

    asyncio.run(main())


async def proof(sim: str, network: str, user: int | str) -> dict[str, Any]:
    if network == "vk":
        return await idc.vk_id_proof(sim, int(user), VK_CLIENT)
    if network == "ok":
        return await idc.ok_proof(sim, int(user), OK_CLIENT)
    return await idc.apple_proof(sim, str(user), APPLE_CLIENT)


def events(settings: LinkSettings) -> list[tuple[bytes, ProfileLinked | ProfileUnlinked]]:
    """Everything on the events topic now, to the end of every partition."""
    topic = settings.topics.name(EVENTS)
    consumer = kafka.consumer(
        settings.kafka, f"t.links.{uuid.uuid4().hex[:8]}", extra={"enable.partition.eof": True}
    )
    partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    codec = SingleObjectCodec()
    out: list[tuple[bytes, ProfileLinked | ProfileUnlinked]] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline and at_end != set(partitions):
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                partition = msg.partition()
                if error.code() == KafkaError._PARTITION_EOF and partition is not None:
                    at_end.add(partition)
                continue
            at_end.discard(msg.partition() or 0)
            event = codec.decode(msg.value(), topic)
            assert isinstance(event, ProfileLinked | ProfileUnlinked)
            headers = dict(msg.headers() or [])
            assert (headers["ce_id"], headers["ce_type"], headers["ce_source"]) == (
                event.event_id.encode(),
                event.avro_name.encode(),
                b"social-loyalty/link-api",
            )
            out.append((msg.key() or b"", event))
    finally:
        consumer.close()
    assert at_end == set(partitions), "did not reach the end of the topic in time"
    return out


APPLE_SUB = idc.apple_sub(4242)


@pytest.mark.parametrize(("network", "user"), [("vk", 100), ("ok", 77), ("apple", APPLE_SUB)])
def test_each_provider_registers_signs_in_links_and_unlinks(
    settings: LinkSettings, network: str, user: int | str
) -> None:
    async def body(http: httpx.AsyncClient, sim: str) -> None:
        nobody = await http.post("/v1/sign-in", json={"proof": await proof(sim, network, user)})
        assert nobody.status_code == 404, nobody.text
        assert "register" in nobody.json()["error"]

        new = await http.post(
            "/v1/sign-in", json={"proof": await proof(sim, network, user), "register": True}
        )
        assert new.status_code == 201, new.text
        member = new.json()["member_id"]
        assert member.startswith("m-") and new.json()["registered"] is True
        assert new.json()["link"]["registration"] is True
        assert new.json()["link"]["social_user_id"] == str(user)

        back = await http.post(
            "/v1/sign-in", json={"proof": await proof(sim, network, user), "register": True}
        )
        assert back.status_code == 200, back.text
        assert back.json()["member_id"] == member and back.json()["registered"] is False

        same = await http.post(
            "/v1/links", json={"member_id": member, "proof": await proof(sim, network, user)}
        )
        assert same.status_code == 200 and same.json()["created"] is False
        taken = await http.post(
            "/v1/links", json={"member_id": "m-2", "proof": await proof(sim, network, user)}
        )
        assert taken.status_code == 409, taken.text

        path = f"/v1/members/{{}}/links/{network}/{user}"
        assert (await http.delete(path.format("m-2"))).status_code == 404
        gone = await http.delete(path.format(member))
        assert gone.status_code == 200, gone.text
        assert (await http.delete(path.format(member))).status_code == 404

        moved = await http.post(
            "/v1/links", json={"member_id": "m-2", "proof": await proof(sim, network, user)}
        )
        assert moved.status_code == 201, moved.text
        assert moved.json()["link"]["registration"] is False
        listed = (await http.get("/v1/members/m-2/links")).json()["links"]
        assert [(x["network"], x["social_user_id"]) for x in listed] == [(network, str(user))]
        assert (await http.get(f"/v1/members/{member}/links")).json()["links"] == []

    serve(settings, body)
    got = [(type(e).__name__, e.member_id, e.registration) for _, e in events(settings)]
    member = got[0][1]
    assert got == [
        ("ProfileLinked", member, True),
        ("ProfileUnlinked", member, True),
        ("ProfileLinked", "m-2", False),
    ]
