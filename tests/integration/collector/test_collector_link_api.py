"""The link API against a real broker and PostgreSQL: one event per new link, before 201."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka import KafkaError, TopicPartition
from pydantic import SecretStr

from services.collector.app import create_link_app, sign
from services.collector.settings import CollectorSettings
from services.contracts.codec import SingleObjectCodec
from services.contracts.models import ProfileLinked, ProfileUnlinked
from services.contracts.topics import EVENTS, TopicSettings, apply, catalog, plan
from services.runtime import kafka
from services.runtime.httpapi import running_api
from services.runtime.settings import DatabaseSettings, KafkaSettings

DEADLINE_S = 60.0


@pytest.fixture
def settings(
    kafka_settings: KafkaSettings,
    database_settings: DatabaseSettings,
    database_url: str,
    unique: Callable[[str], str],
) -> Iterator[CollectorSettings]:
    topics = TopicSettings(prefix=unique("link") + ".", partitions=2)
    specs = [s for s in catalog(topics) if s.name == topics.name(EVENTS)]
    admin = kafka.admin(kafka_settings)
    apply(admin, plan(specs, {}), fix=False)
    schema = f"t_link_{uuid.uuid4().hex[:10]}"
    yield CollectorSettings(
        kafka=kafka_settings,
        database=database_settings,
        topics=topics,
        db_schema=schema,
        http_port=0,
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    for future in admin.delete_topics([s.name for s in specs]).values():
        try:
            future.result(30)
        except Exception:
            continue


def serve(
    settings: CollectorSettings, body: Callable[[httpx.AsyncClient], Awaitable[None]]
) -> None:
    async def main() -> None:
        async with (
            running_api(create_link_app(settings), "127.0.0.1", 0) as server,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http,
        ):
            await body(http)

    asyncio.run(main())


def events(settings: CollectorSettings) -> list[tuple[bytes, ProfileLinked | ProfileUnlinked]]:
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
            out.append((msg.key() or b"", event))
    finally:
        consumer.close()
    assert at_end == set(partitions), "did not reach the end of the topic in time"
    return out


def test_link_repeat_conflict_unlink_and_relink(settings: CollectorSettings) -> None:
    seen_after_201: list[Any] = []

    async def body(http: httpx.AsyncClient) -> None:
        link = {"member_id": "m-1", "network": "vk", "social_user_id": "100", "registration": True}
        created = await http.post("/v1/links", json=link)
        assert created.status_code == 201, created.text
        # The event is on the topic when the call returns.
        seen_after_201.extend(await asyncio.to_thread(events, settings))
        event_id = created.json()["event_id"]

        again = await http.post("/v1/links", json=link)
        assert again.status_code == 200
        assert again.json()["event_id"] == event_id
        assert again.json()["created"] is False

        taken = await http.post("/v1/links", json={**link, "member_id": "m-2"})
        assert taken.status_code == 409
        assert "already linked to another member" in taken.json()["error"]

        apple = {"member_id": "m-1", "network": "apple", "social_user_id": "001234.abc.0999"}
        assert (await http.post("/v1/links", json=apple)).status_code == 201
        mine = (await http.get("/v1/members/m-1/links")).json()["links"]
        assert sorted((x["network"], x["social_user_id"]) for x in mine) == [
            ("apple", "001234.abc.0999"),
            ("vk", "100"),
        ]

        gone = await http.delete("/v1/links/vk/100")
        assert gone.status_code == 200, gone.text
        assert (await http.delete("/v1/links/vk/100")).status_code == 404
        assert (await http.get("/v1/members/m-1/links")).json()["links"][0]["network"] == "apple"

        relinked = await http.post("/v1/links", json={**link, "member_id": "m-2"})
        assert relinked.status_code == 201
        assert relinked.json()["event_id"] != event_id

    serve(settings, body)
    assert [(k, type(e).__name__, e.member_id) for k, e in seen_after_201] == [
        (b"vk:100", "ProfileLinked", "m-1")
    ]
    first = seen_after_201[0][1]
    assert first.registration is True and first.group_id is None
    on_vk_100 = [(type(e).__name__, e.member_id) for k, e in events(settings) if k == b"vk:100"]
    assert on_vk_100 == [
        ("ProfileLinked", "m-1"),
        ("ProfileUnlinked", "m-1"),
        ("ProfileLinked", "m-2"),
    ]


def test_malformed_requests_name_the_field(settings: CollectorSettings) -> None:
    async def body(http: httpx.AsyncClient) -> None:
        good = {"member_id": "m-1", "network": "vk", "social_user_id": "100"}
        cases: list[tuple[Any, str]] = [
            ({**good, "network": "fb"}, "network"),
            ({k: v for k, v in good.items() if k != "member_id"}, "member_id"),
            ({**good, "social_user_id": "abc"}, "social_user_id"),
            ({**good, "registration": "maybe"}, "registration"),
            ([1, 2], "body"),
        ]
        for payload, field in cases:
            answer = await http.post("/v1/links", json=payload)
            assert answer.status_code == 422, (payload, answer.text)
            fields = [f["field"] for f in answer.json()["fields"]]
            assert field in fields, (payload, fields)
        raw = await http.post("/v1/links", content=b"{not json")
        assert raw.status_code == 422
        assert (await http.delete("/v1/links/fb/100")).status_code == 422
        assert (await http.delete("/v1/links/ok/x1")).status_code == 422

    serve(settings, body)
    assert events(settings) == []


def test_signed_requests_when_a_secret_is_set(settings: CollectorSettings) -> None:
    secret = "pa-shared-secret"
    signed = settings.model_copy(update={"link_secret": SecretStr(secret)})

    async def body(http: httpx.AsyncClient) -> None:
        payload = json.dumps(
            {"member_id": "m-9", "network": "ok", "social_user_id": "5700001"}
        ).encode()
        stamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Timestamp": stamp}
        unsigned = await http.post("/v1/links", content=payload, headers=headers)
        assert unsigned.status_code == 401
        bad = await http.post(
            "/v1/links", content=payload, headers={**headers, "X-Signature": "0" * 64}
        )
        assert bad.status_code == 401
        good = sign(secret, stamp, "POST", "/v1/links", payload)
        ok = await http.post("/v1/links", content=payload, headers={**headers, "X-Signature": good})
        assert ok.status_code == 201, ok.text
        assert (await http.get("/healthz")).status_code == 200

    serve(signed, body)
    assert [k for k, _ in events(settings)] == [b"ok:5700001"]


def test_registration_creates_the_member_and_publishes_a_registration_link(
    settings: CollectorSettings,
) -> None:
    answers: dict[str, Any] = {}

    async def body(http: httpx.AsyncClient) -> None:
        new = await http.post("/v1/registrations", json={"network": "ok", "social_user_id": "77"})
        assert new.status_code == 201, new.text
        answers["new"] = new.json()
        answers["events_at_201"] = await asyncio.to_thread(events, settings)
        member = answers["new"]["member_id"]
        mine = (await http.get(f"/v1/members/{member}/links")).json()["links"]
        assert [(x["network"], x["social_user_id"], x["registration"]) for x in mine] == [
            ("ok", "77", True)
        ]

        again = await http.post("/v1/registrations", json={"network": "ok", "social_user_id": "77"})
        assert again.status_code == 409
        assert again.json()["member_id"] == member
        assert "sign in instead" in again.json()["error"]

        chosen = {"network": "vk", "social_user_id": "78", "member_id": "pa-500"}
        first = await http.post("/v1/registrations", json=chosen)
        repeat = await http.post("/v1/registrations", json=chosen)
        assert (first.status_code, repeat.status_code) == (201, 200)
        assert repeat.json()["event_id"] == first.json()["event_id"]
        assert first.json()["member_id"] == "pa-500"

        bad = await http.post("/v1/registrations", json={"network": "vk", "member_id": "x y"})
        assert bad.status_code == 422
        assert {f["field"] for f in bad.json()["fields"]} == {"social_user_id", "member_id"}

        served = await http.get("/openapi.json")
        assert served.status_code == 200
        assert "/v1/registrations" in served.json()["paths"]

    serve(settings, body)
    new = answers["new"]
    assert new["member_id"].startswith("m-") and new["created"] is True
    assert new["link"]["registration"] is True
    [(key, event)] = answers["events_at_201"]
    assert key == b"ok:77"
    assert isinstance(event, ProfileLinked)
    assert (event.member_id, event.registration) == (new["member_id"], True)
    assert event.event_id == new["event_id"]
    assert sorted(k for k, _ in events(settings)) == [b"ok:77", b"vk:78"]
