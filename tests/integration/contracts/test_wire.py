"""Each domain event through a real broker in each framing, read back the way
another team would: a plain confluent-kafka consumer, fastavro and the .avsc files
(single-object), or the schema-registry client (Confluent wire format).

The registry is confluent-kafka's in-process ``mock://`` registry: Karapace is not
on PyPI and no Confluent registry exists here (see docs/contract.md). It keeps its
schemas per client instance, so writer and reader share one client, as two services
sharing one real registry would.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from services.contracts.codec import RegistryCodec, SingleObjectCodec, registry_client
from services.contracts.examples import domain_events
from services.runtime import kafka
from services.runtime.settings import KafkaSettings

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


def _produce(settings: KafkaSettings, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer: Producer = kafka.producer(settings, "contract-test")
    for key, value in messages:
        producer.produce(topic, value=value, key=key)
    assert producer.flush(30) == 0


def _consume_all(
    settings: KafkaSettings, topic: str, group: str, count: int
) -> list[tuple[bytes, bytes]]:
    """A plain consumer, configured by hand as an outside team would (with its login)."""
    login = {
        key: value
        for key, value in (
            ("security.protocol", settings.security_protocol),
            ("sasl.mechanism", settings.sasl_mechanism),
            ("sasl.username", settings.sasl_username),
            ("sasl.password", settings.sasl_password and settings.sasl_password.get_secret_value()),
        )
        if value
    }
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": group,
            "auto.offset.reset": "earliest",
            **login,
        }
    )
    consumer.subscribe([topic])
    got: list[tuple[bytes, bytes]] = []
    try:
        for _ in range(120):
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            got.append((msg.key() or b"", msg.value() or b""))
            if len(got) == count:
                break
    finally:
        consumer.close()
    return got


def _outside_reader() -> Callable[[bytes], tuple[str, dict[str, Any]]]:
    """What docs/consuming.md shows: index the .avsc files by fingerprint, parse the
    single-object header, read the body. No import from our code."""
    by_fingerprint = {}
    for path in SCHEMAS.glob("*.avsc"):
        schema = fastavro.parse_schema(json.loads(path.read_text()))
        canonical = fastavro.schema.to_parsing_canonical_form(schema)
        fp = bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
        by_fingerprint[fp] = (path.stem, schema)

    def read(value: bytes) -> tuple[str, dict[str, Any]]:
        assert value[:2] == b"\xc3\x01"
        name, schema = by_fingerprint[value[2:10]]
        record = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema)
        assert isinstance(record, dict)
        return name, record

    return read


def test_single_object_events_read_back_with_fastavro_and_avsc_files(
    kafka_settings: KafkaSettings, kafka_bootstrap: str, make_topic: Callable[..., str],
    unique: Callable[[str], str],
) -> None:  # fmt: skip
    topic = make_topic("events-so", partitions=3)
    events = domain_events()
    codec = SingleObjectCodec()
    _produce(kafka_settings, topic, [(e.key().to_bytes(), codec.encode(e)) for e in events])
    received = _consume_all(kafka_settings, topic, unique("reader"), len(events))
    read = _outside_reader()
    decoded = {}
    for key, value in received:
        name, record = read(value)
        decoded[name] = (key, record)
        assert codec.decode(value).avro_name == name
    assert len(decoded) == 10
    for event in events:
        key, record = decoded[event.avro_name]
        assert key == f"{event.network.value}:{event.social_user_id}".encode()
        assert record == event.to_avro()


def test_registry_framed_events_read_back_with_the_registry_client(
    kafka_settings: KafkaSettings, kafka_bootstrap: str, make_topic: Callable[..., str],
    unique: Callable[[str], str],
) -> None:  # fmt: skip
    topic = make_topic("events-sr", partitions=3)
    client = registry_client("mock://contracts-it")
    codec = RegistryCodec(client)
    events = domain_events()
    _produce(kafka_settings, topic, [(e.key().to_bytes(), codec.encode(e, topic)) for e in events])
    received = _consume_all(kafka_settings, topic, unique("reader"), len(events))
    assert len(received) == 10
    by_id = {e.event_id: e for e in events}
    plain = AvroDeserializer(client)  # writer schema from the registry, no code of ours
    for _key, value in received:
        assert value[0] == 0
        record = plain(value, SerializationContext(topic, MessageField.VALUE))
        event = by_id[record["event_id"]]
        assert record == event.to_avro()
        assert codec.decode(value, topic) == event
        subject = f"{topic}-{event.avro_name}"
        assert client.get_latest_version(subject).schema_id == int.from_bytes(value[1:5], "big")
