"""The one Avro codec: contract models to bytes and back, in either framing.

* With a schema registry (``KafkaSettings.schema_registry_url``): the Confluent wire
  format (``00`` + 4-byte big-endian schema id + body) through confluent-kafka's
  ``AvroSerializer``/``AvroDeserializer``, subjects named ``<topic>-<record full name>``
  (TopicRecordNameStrategy) because one topic carries several record types.
* Without one: Avro single-object encoding (``C3 01`` + 8-byte little-endian
  CRC-64-AVRO fingerprint of the parsing canonical form + body), readable by anyone
  holding the ``.avsc`` files.

The first byte tells the framing apart, so a reader of either kind reads both (a
registry-configured consumer still reads single-object messages written before the
registry existed). Every way bytes can be wrong surfaces as one exception,
:class:`DecodeError`, which consumers route to the dead-letter topic with its reason.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from typing import Any, Final, Protocol

from fastavro import schemaless_reader, schemaless_writer
from pydantic import ValidationError

from services.contracts.models import RECORD_TYPES, Record
from services.contracts.schemas import SchemaSet, default_schema_set
from services.runtime.settings import KafkaSettings

SINGLE_OBJECT_MAGIC: Final = b"\xc3\x01"
CONFLUENT_MAGIC: Final = 0
_SO_HEADER = len(SINGLE_OBJECT_MAGIC) + 8
_CONFLUENT_HEADER = 5


class DecodeError(ValueError):
    """Bytes that are not a contract record; ``reason`` says what was wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Codec(Protocol):
    """What producers and consumers use; ``topic`` names the registry subject."""

    framing: str

    def encode(self, record: Record, topic: str) -> bytes: ...

    def decode(
        self, data: bytes | None, topic: str, expected: tuple[type, ...] | None = None
    ) -> Record:
        """The record; ``expected`` rejects records of other types (wrong topic)."""
        ...


class _StrictReader(io.BytesIO):
    """fastavro reads strings and bytes with ``read(n)`` and accepts a short read; a
    body cut inside its last string must still count as truncated."""

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        if size is not None and size > 0 and len(chunk) < size:
            raise EOFError(f"needed {size} bytes, {len(chunk)} left")
        return chunk


def _read_clean(data: bytes, writer: Any, reader: Any) -> Any | None:
    """The body's value when it decodes cleanly from a plain ``BytesIO``; else ``None``.

    ``_StrictReader`` costs a Python call per varint byte (fastavro reads them one
    by one): ~5x the decode time of a 60,000-id snapshot chunk. Reading instead
    from the body plus one sentinel byte is exact: reads only move forward, so the
    decode ended exactly at the end of the body iff no read was short and none
    reached the sentinel, and then its value is the one the strict reader returns.
    Anything else goes the strict way, which gives the precise error.
    """
    buffer = io.BytesIO(data + b"\x00")
    buffer.seek(_SO_HEADER)
    try:
        value = schemaless_reader(buffer, writer, reader)
    except Exception:  # the strict path below reports what is wrong
        return None
    return value if buffer.tell() == len(data) else None


def _finish(
    buffer: io.BytesIO, name: str, value: Any, total: int, expected: tuple[type, ...] | None
) -> Record:
    left = total - buffer.tell()
    if left:
        raise DecodeError(f"{left} trailing bytes after a {name} record")
    return _finish_value(name, value, expected)


def _finish_value(name: str, value: Any, expected: tuple[type, ...] | None) -> Record:
    model = RECORD_TYPES.get(name)
    if model is None:
        raise DecodeError(f"record {name} has no model")
    if expected is not None and not issubclass(model, expected):
        wanted = ", ".join(cls.__name__ for cls in expected)
        raise DecodeError(f"got a {name} record where {wanted} was expected")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise DecodeError(f"{name} record fails validation: {exc.errors()[0]['msg']}") from exc


class SingleObjectCodec:
    """Avro single-object encoding over the repository's ``.avsc`` files."""

    framing = "single-object"

    def __init__(self, schemas: SchemaSet | None = None) -> None:
        self.schemas = schemas or default_schema_set()

    def encode(self, record: Record, topic: str = "") -> bytes:
        name = record.avro_name
        out = io.BytesIO()
        out.write(SINGLE_OBJECT_MAGIC)
        out.write(self.schemas.fingerprints[name])
        schemaless_writer(out, self.schemas.current[name], record.to_avro())
        return out.getvalue()

    def decode(
        self, data: bytes | None, topic: str = "", expected: tuple[type, ...] | None = None
    ) -> Record:
        if data is None:
            raise DecodeError("no value (tombstone)")
        if len(data) < 2 or data[:2] != SINGLE_OBJECT_MAGIC:
            if data[:1] == bytes([CONFLUENT_MAGIC]):
                raise DecodeError("Confluent wire format, but no schema registry is configured")
            raise DecodeError(f"wrong magic {data[:2].hex() or 'empty'}: expected c301 or 00")
        if len(data) < _SO_HEADER:
            raise DecodeError(f"truncated single-object header ({len(data)} bytes)")
        writer = self.schemas.writer_for(data[2:_SO_HEADER])
        if writer is None:
            raise DecodeError(f"unknown schema fingerprint {data[2:_SO_HEADER].hex()}")
        reader = self.schemas.current.get(writer.name)
        if reader is None:
            raise DecodeError(f"record {writer.name} ({writer.version}) is no longer read")
        fast = _read_clean(data, writer.parsed, reader)
        if fast is not None:
            return _finish_value(writer.name, fast, expected)
        buffer = _StrictReader(data)
        buffer.seek(_SO_HEADER)
        try:
            value = schemaless_reader(buffer, writer.parsed, reader)
        except Exception as exc:  # fastavro raises many kinds on bad bytes; all mean the same
            raise DecodeError(f"body is not a valid {writer.name}: {exc!r}") from exc
        return _finish(buffer, writer.name, value, len(data), expected)


class _PayloadTracker(threading.local):
    """Keeps the payload buffer the deserializer read from, so the codec can check
    that nothing was left over (AvroDeserializer itself ignores trailing bytes)."""

    buffer: io.BytesIO | None = None


class RegistryCodec:
    """The Confluent wire format through confluent-kafka's Avro serdes."""

    framing = "confluent"

    def __init__(
        self, client: Any, schemas: SchemaSet | None = None, *, auto_register: bool = True
    ) -> None:
        from confluent_kafka.schema_registry import (
            prefix_schema_id_deserializer,
            topic_record_subject_name_strategy,
        )

        self.client = client
        self.schemas = schemas or default_schema_set()
        self._single_object = SingleObjectCodec(self.schemas)
        self._auto_register = auto_register
        self._strategy = topic_record_subject_name_strategy
        self._tracker = _PayloadTracker()
        self._serializers: dict[str, Callable[..., bytes]] = {}
        self._deserializers: dict[str, Callable[..., Any]] = {}
        self._names_by_id: dict[int, str] = {}
        tracker = self._tracker

        def tracking_id_deserializer(payload: bytes, ctx: Any, schema_id: Any) -> io.BytesIO:
            buffer = prefix_schema_id_deserializer(payload, ctx, schema_id)
            strict = _StrictReader(buffer.getvalue())
            strict.seek(buffer.tell())
            tracker.buffer = strict
            return strict

        self._id_deserializer = tracking_id_deserializer

    def _serializer(self, name: str) -> Callable[..., bytes]:
        serializer = self._serializers.get(name)
        if serializer is None:
            from confluent_kafka.schema_registry.avro import AvroSerializer

            serializer = AvroSerializer(
                self.client,
                json.dumps(self.schemas.current_raw[name]),
                lambda record, _ctx: record.to_avro(),
                conf={
                    "subject.name.strategy": self._strategy,
                    "auto.register.schemas": self._auto_register,
                },
            )
            self._serializers[name] = serializer
        return serializer

    def _deserializer(self, name: str) -> Callable[..., Any]:
        deserializer = self._deserializers.get(name)
        if deserializer is None:
            from confluent_kafka.schema_registry.avro import AvroDeserializer

            deserializer = AvroDeserializer(
                self.client,
                json.dumps(self.schemas.current_raw[name]),
                conf={
                    "subject.name.strategy": self._strategy,
                    "schema.id.deserializer": self._id_deserializer,
                },
            )
            self._deserializers[name] = deserializer
        return deserializer

    def _writer_name(self, schema_id: int) -> str:
        name = self._names_by_id.get(schema_id)
        if name is None:
            try:
                schema = self.client.get_schema(schema_id)
                name = _record_name(json.loads(schema.schema_str))
            except Exception as exc:  # not found, registry down, not a record: all undecodable
                raise DecodeError(f"schema id {schema_id} not usable: {exc}") from exc
            self._names_by_id[schema_id] = name
        return name

    def encode(self, record: Record, topic: str) -> bytes:
        from confluent_kafka.serialization import MessageField, SerializationContext

        serialize = self._serializer(record.avro_name)
        data = serialize(record, SerializationContext(topic, MessageField.VALUE))
        return bytes(data)

    def decode(
        self, data: bytes | None, topic: str, expected: tuple[type, ...] | None = None
    ) -> Record:
        from confluent_kafka.serialization import MessageField, SerializationContext

        if data is None:
            raise DecodeError("no value (tombstone)")
        if data[:2] == SINGLE_OBJECT_MAGIC:
            return self._single_object.decode(data, topic, expected)
        if data[:1] != bytes([CONFLUENT_MAGIC]):
            raise DecodeError(f"wrong magic {data[:2].hex() or 'empty'}: expected 00 or c301")
        if len(data) <= _CONFLUENT_HEADER:
            raise DecodeError(f"truncated Confluent header ({len(data)} bytes)")
        name = self._writer_name(int.from_bytes(data[1:_CONFLUENT_HEADER], "big"))
        if name not in self.schemas.current:
            raise DecodeError(f"record {name} is not part of the contract")
        self._tracker.buffer = None
        try:
            value = self._deserializer(name)(data, SerializationContext(topic, MessageField.VALUE))
        except Exception as exc:  # serdes and fastavro raise many kinds; all mean the same
            raise DecodeError(f"body is not a valid {name}: {exc!r}") from exc
        buffer = self._tracker.buffer
        if buffer is None:
            raise DecodeError("deserializer did not read the payload")
        return _finish(buffer, name, value, len(buffer.getvalue()), expected)


def _record_name(schema: Any) -> str:
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise ValueError("not a record schema")
    from services.contracts.schemas import full_name

    return full_name(schema)


def registry_client(url: str) -> Any:
    """A schema-registry client (``mock://...`` gives confluent-kafka's in-process one)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient.new_client({"url": url})


def make_codec(settings: KafkaSettings, *, client: Any = None) -> Codec:
    """The codec the settings ask for: registry framing when a registry URL is set."""
    if client is not None:
        return RegistryCodec(client)
    if settings.schema_registry_url:
        return RegistryCodec(registry_client(settings.schema_registry_url))
    return SingleObjectCodec()
