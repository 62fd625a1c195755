"""The read model (on the PostgreSQL-sink runtime) against real Kafka and PostgreSQL,
queried over HTTP."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from confluent_kafka import TopicPartition
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.contracts import GroupJoined, GroupLeft, PostLiked, make_codec
from services.contracts.models import DeadLetter, DomainEvent, Network
from services.contracts.topics import DEADLETTER, EVENTS, TopicSettings, apply, catalog, plan
from services.readmodel.read_model import ReadModel, create_http_app
from services.readmodel.settings import ReadModelSettings
from services.runtime import httpapi, kafka
from services.runtime.access import AccessSettings, SignedAuth
from services.runtime.settings import DatabaseSettings, KafkaSettings
from tests.integration.detector.conftest import at


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings(
    kafka_bootstrap: str, database_url: str, access_settings: AccessSettings
) -> Iterator[ReadModelSettings]:
    tag = uuid.uuid4().hex[:8]
    topics = TopicSettings(prefix=f"t.detrm.{tag}.", partitions=2)
    kafka_settings = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    apply(kafka.admin(kafka_settings), plan(catalog(topics), {}), fix=False)
    schema = f"t_detrm_{tag}"
    yield ReadModelSettings(
        kafka=kafka_settings,
        database=DatabaseSettings(database_url=SecretStr(database_url)),
        topics=topics,
        group=f"t.social-loyalty.detector.readmodel.{tag}",
        db_schema=schema,
        http_host="127.0.0.1",
        http_port=_free_port(),
        access=access_settings,
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _publish(settings: ReadModelSettings, events: list[DomainEvent]) -> None:
    from services.contracts import make_codec

    codec, topic = make_codec(settings.kafka), settings.topics.name(EVENTS)
    producer = kafka.producer(settings.kafka, "detector-readmodel-test")
    for event in events:
        producer.produce(topic, codec.encode(event, topic), event.key().to_bytes())
    assert producer.flush(30) == 0


def _group(cls: type[GroupJoined | GroupLeft], user: int, minute: int) -> DomainEvent:
    return cls.build(
        network=Network.VK,
        group_id=5,
        social_user_id=str(user),
        observed_at=at(minute),
        previous_snapshot_at=at(minute - 10),
        snapshot_at=at(minute),
    )


def test_read_model_answers_who_is_where_and_survives_a_restart(
    settings: ReadModelSettings, api_auth: SignedAuth
) -> None:
    like = PostLiked.build(
        network=Network.VK,
        group_id=5,
        post_id=9,
        social_user_id="1",
        observed_at=at(20),
        previous_snapshot_at=at(10),
        snapshot_at=at(20),
    )
    first = [_group(GroupJoined, u, 10) for u in (1, 2, 3, 4)] + [like, like]
    _publish(settings, first)
    registry = CollectorRegistry()
    server = httpapi.serve_api_in_thread(
        create_http_app(settings, registry), settings.http_host, settings.http_port
    )
    base = f"http://127.0.0.1:{settings.http_port}"
    http = httpx.Client(auth=api_auth)
    try:
        model = ReadModel(settings, registry)
        _consume_until(model, http, base, lambda r: r.get("activity", {}).get("PostLiked") == 1)
        model.close()
        # A second consumer (a restart) resumes from the offsets stored in PostgreSQL.
        _publish(settings, [_group(GroupLeft, 2, 30), *first])
        model = ReadModel(settings, CollectorRegistry())
        deadline = time.monotonic() + 60
        page: dict[str, object] = {}
        while page.get("members") != ["1", "3"]:
            assert time.monotonic() < deadline, page
            model.poll_once(0.5)
            page = http.get(f"{base}/v1/groups/vk/5/members", params={"limit": 2}).json()
        assert page["next"] == "3"
        rest = http.get(f"{base}/v1/groups/vk/5/members", params={"limit": 2, "after": "3"})
        assert rest.json()["members"] == ["4"]
        profile = http.get(f"{base}/v1/profiles/vk/1").json()
        # Joined once and liked once although both were delivered twice.
        assert profile["activity"] == {"GroupJoined": 1, "PostLiked": 1}
        assert profile["groups"] == [{"group_id": 5, "member_since": at(10).isoformat()}]
        assert profile["last_seen"] == at(20).isoformat()
        left = http.get(f"{base}/v1/profiles/vk/2").json()
        assert left["groups"] == [] and left["activity"] == {"GroupJoined": 1, "GroupLeft": 1}
        assert http.get(f"{base}/v1/profiles/vk/999").status_code == 404
        assert http.get(f"{base}/v1/profiles/xx/1").status_code == 400
        assert http.get(f"{base}/v1/groups/vk/5/members", params={"limit": 0}).status_code == 400
        assert "social_loyalty_readmodel_events_total" in http.get(f"{base}/metrics").text
        model.close()
    finally:
        http.close()
        server.stop()


def _consume_until(model: ReadModel, http: httpx.Client, base: str, ready: object) -> None:
    deadline = time.monotonic() + 60
    body: dict[str, object] = {}
    while True:
        model.poll_once(0.5)
        response = http.get(f"{base}/v1/profiles/vk/1")
        body = response.json() if response.status_code == 200 else {}
        if callable(ready) and ready(body):
            return
        assert time.monotonic() < deadline, body


def test_a_bad_event_is_dead_lettered_and_the_next_one_on_the_partition_applied(
    settings: ReadModelSettings,
) -> None:
    codec, topic = make_codec(settings.kafka), settings.topics.name(EVENTS)
    # PostgreSQL text cannot hold a NUL byte; the contract's bounds refuse it when the
    # event is decoded, before it reaches the database.
    nul = _group(GroupJoined, 1, 10).model_copy(update={"social_user_id": "8\x00"})
    producer = kafka.producer(settings.kafka, "detector-readmodel-test")
    for key, value in [
        (b"vk:7", b"not an event"),
        (b"vk:8", codec.encode(nul, topic)),
        (b"vk:7", codec.encode(_group(GroupJoined, 7, 10), topic)),
    ]:
        producer.produce(topic, value, key, partition=0)
    assert producer.flush(30) == 0
    model = ReadModel(settings, CollectorRegistry())
    try:
        deadline = time.monotonic() + 60
        while _members(settings) != ["7"]:
            assert time.monotonic() < deadline, _members(settings)
            model.poll_once(0.5)
        assert model.not_ready() is None, model.not_ready()
        while len(found := _dead_letters(settings)) < 2:
            assert time.monotonic() < deadline, found
            model.poll_once(0.5)
        letters = sorted(found, key=lambda d: d.original_offset)
        assert [(d.original_topic, d.original_partition, d.original_offset) for d in letters] == [
            (topic, 0, 0),
            (topic, 0, 1),
        ]
        undecodable, refused = letters
        assert undecodable.error_class == "services.contracts.codec.DecodeError"
        assert undecodable.key == b"vk:7" and undecodable.value == b"not an event"
        assert refused.error_class == "services.contracts.codec.DecodeError"
        assert "social_user_id" in refused.reason, refused.reason
        assert refused.key == b"vk:8"
        assert refused.consumer_group == settings.group
    finally:
        model.close()


def _members(settings: ReadModelSettings) -> list[str]:
    url = settings.database.database_url.get_secret_value()
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"SELECT social_user_id FROM {settings.db_schema}.memberships WHERE member"
        ).fetchall()
    return [r[0] for r in rows]


def _dead_letters(settings: ReadModelSettings) -> list[DeadLetter]:
    """Everything now on the test's dead-letter topic."""
    codec, topic = make_codec(settings.kafka), settings.topics.name(DEADLETTER)
    consumer = kafka.consumer(settings.kafka, f"t.read.{uuid.uuid4().hex[:8]}")
    found: list[DeadLetter] = []
    try:
        ends = {p: kafka.watermarks(consumer, topic, p)[1] for p in range(2)}
        consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end])
        deadline = time.monotonic() + 30
        while len(found) < sum(ends.values()) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                letter = codec.decode(msg.value(), topic, (DeadLetter,))
                assert isinstance(letter, DeadLetter)
                found.append(letter)
    finally:
        consumer.close()
    return found
