"""The one Avro codec: contract models to bytes and back, in either framing.

* With a schema registry (the settings' ``schema_registry_url``): the Confluent wire
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

Two ways in and out: ``encode``/``decode`` take and give pydantic models (APIs, tests,
anything that builds records by hand); ``encode_plain``/``decode_plain`` take and give
plain dicts keyed by the record's short name, for the stream hot path, with the same
checks compiled from the models (``services.contracts.plain``) and the same bytes.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from fastavro import schemaless_reader, schemaless_writer
from pydantic import ValidationError

from services.contracts.models import RECORD_TYPES, Record
from services.contracts.plain import InvalidValueError, PlainRecord, compile_records
from services.contracts.schemas import SchemaSet, default_schema_set, fingerprint

SINGLE_OBJECT_MAGIC: Final = b"\xc3\x01"
CONFLUENT_MAGIC: Final = 0
_SO_HEADER = len(SINGLE_OBJECT_MAGIC) + 8
_CONFLUENT_HEADER = 5


class DecodeError(ValueError):
    """Bytes that are not a contract record; ``reason`` says what was wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EncodeError(ValueError):
    """A plain value its model would refuse, so it is never written; ``reason`` says why."""

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

    def encode_plain(self, name: str, value: Mapping[str, Any], topic: str) -> bytes:
        """The bytes ``encode`` gives for the model of ``value``; ``EncodeError`` for any
        value the model would refuse. ``name`` is the short record name (``PostLiked``)."""
        ...

    def decode_plain(
        self, data: bytes | None, topic: str, expected: frozenset[str] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """(short record name, the value as fastavro reads it), without a model; the
        same verdicts as ``decode``. ``expected`` holds short names (wrong topic)."""
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


def _check_consumed(buffer: io.BytesIO, name: str, total: int) -> None:
    left = total - buffer.tell()
    if left:
        raise DecodeError(f"{left} trailing bytes after a {name} record")


def _finish(
    buffer: io.BytesIO, name: str, value: Any, total: int, expected: tuple[type, ...] | None
) -> Record:
    _check_consumed(buffer, name, total)
    return _finish_value(name, value, expected)


def _wrong_topic(name: str, expected: frozenset[str]) -> DecodeError:
    return DecodeError(f"got a {name} record where {', '.join(sorted(expected))} was expected")


def _finish_plain(
    records: dict[str, PlainRecord], name: str, value: Any, expected: frozenset[str] | None
) -> tuple[str, dict[str, Any]]:
    """What ``_finish_value`` decides, for a value fastavro read, without the model."""
    record = records.get(name)
    if record is None:
        raise DecodeError(f"record {name} has no model")
    return _checked_plain(record, value, expected)


def _checked_plain(
    record: PlainRecord, value: dict[str, Any], expected: frozenset[str] | None
) -> tuple[str, dict[str, Any]]:
    if expected is not None and record.name not in expected:
        raise _wrong_topic(record.name, expected)
    if record.check_in is not None:
        try:
            value = record.check_in(value)
        except InvalidValueError as exc:
            raise DecodeError(f"{record.name} record fails validation: {exc.reason}") from exc
    return record.name, value


def _checked_out(records: dict[str, PlainRecord], name: str, value: Any) -> tuple[PlainRecord, Any]:
    record = records.get(name)
    if record is None:
        raise EncodeError(f"no contract record is named {name!r}")
    try:
        return record, record.check_out(value)
    except InvalidValueError as exc:
        raise EncodeError(exc.reason) from exc


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
        first = exc.errors()[0]
        where = ".".join(_loc_part(part) for part in first["loc"])
        raise DecodeError(f"{name} record fails validation: {where}: {first['msg']}") from exc


def _loc_part(part: object) -> str:
    """A step of an error's location, short: a map key is one, and the reason of a
    500 KB key must not carry it (the dead letter holds the value already)."""
    text = str(part)
    return text if len(text) <= 64 else f"{text[:61]}..."


class SingleObjectCodec:
    """Avro single-object encoding over the repository's ``.avsc`` files."""

    framing = "single-object"

    def __init__(self, schemas: SchemaSet | None = None) -> None:
        self.schemas = schemas or default_schema_set()
        records = compile_records(self.schemas.current_raw)
        self._plain = records
        self._plain_by_full_name = {r.full_name: r for r in records.values()}
        self._plain_by_fingerprint = {
            self.schemas.fingerprints[r.full_name]: r for r in records.values()
        }
        self._plain_heads = {
            r.name: SINGLE_OBJECT_MAGIC + self.schemas.fingerprints[r.full_name]
            for r in records.values()
        }

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
        return _finish_value(*self._read(data), expected)

    def encode_plain(self, name: str, value: Mapping[str, Any], topic: str = "") -> bytes:
        record, checked = _checked_out(self._plain, name, value)
        try:
            return record.write(self._plain_heads[name], checked)
        except Exception as exc:  # e.g. a lone surrogate in a str: unencodable, as for a model
            raise EncodeError(f"{name} cannot be written: {exc!r}") from exc

    def decode_plain(
        self, data: bytes | None, topic: str = "", expected: frozenset[str] | None = None
    ) -> tuple[str, dict[str, Any]]:
        if data is not None and data[:2] == SINGLE_OBJECT_MAGIC:
            record = self._plain_by_fingerprint.get(data[2:_SO_HEADER])
            if record is not None:
                if expected is not None and record.name not in expected:
                    raise _wrong_topic(record.name, expected)
                try:
                    fast: dict[str, Any] | None = record.read(data, _SO_HEADER)
                except Exception:  # unusual bytes: fastavro below gives the verdict
                    fast = None
                if fast is not None:
                    return _checked_plain(record, fast, None)
        return _finish_plain(self._plain_by_full_name, *self._read(data), expected)

    def _read(self, data: bytes | None) -> tuple[str, Any]:
        """(record full name, the value fastavro reads), or ``DecodeError``."""
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
            return writer.name, fast
        buffer = _StrictReader(data)
        buffer.seek(_SO_HEADER)
        try:
            value = schemaless_reader(buffer, writer.parsed, reader)
        except Exception as exc:  # fastavro raises many kinds on bad bytes; all mean the same
            raise DecodeError(f"body is not a valid {writer.name}: {exc!r}") from exc
        _check_consumed(buffer, writer.name, len(data))
        return writer.name, value


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
        self._serializers: dict[tuple[str, bool], Callable[..., bytes]] = {}
        self._deserializers: dict[str, Callable[..., Any]] = {}
        self._names_by_id: dict[int, str] = {}
        self._plain_by_id: dict[int, PlainRecord | None] = {}
        tracker = self._tracker

        def tracking_id_deserializer(payload: bytes, ctx: Any, schema_id: Any) -> io.BytesIO:
            buffer = prefix_schema_id_deserializer(payload, ctx, schema_id)
            strict = _StrictReader(buffer.getvalue())
            strict.seek(buffer.tell())
            tracker.buffer = strict
            return strict

        self._id_deserializer = tracking_id_deserializer

    def _serializer(self, name: str, *, plain: bool = False) -> Callable[..., bytes]:
        """The serializer of record ``name``, for models or (``plain``) checked dicts."""
        serializer = self._serializers.get((name, plain))
        if serializer is None:
            from confluent_kafka.schema_registry.avro import AvroSerializer

            serializer = AvroSerializer(
                self.client,
                json.dumps(self.schemas.current_raw[name]),
                (lambda value, _ctx: value) if plain else (lambda record, _ctx: record.to_avro()),
                conf={
                    "subject.name.strategy": self._strategy,
                    "auto.register.schemas": self._auto_register,
                },
            )
            self._serializers[name, plain] = serializer
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
                raw = json.loads(schema.schema_str)
                name = _record_name(raw)
            except Exception as exc:  # not found, registry down, not a record: all undecodable
                raise DecodeError(f"schema id {schema_id} not usable: {exc}") from exc
            current = self.schemas.fingerprints.get(name)
            same = current is not None and _fingerprint_or_none(raw) == current
            self._plain_by_id[schema_id] = (
                self._single_object._plain_by_full_name.get(name) if same else None
            )
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
        if data is not None and data[:2] == SINGLE_OBJECT_MAGIC:
            return self._single_object.decode(data, topic, expected)
        return _finish_value(*self._read(data, topic), expected)

    def encode_plain(self, name: str, value: Mapping[str, Any], topic: str) -> bytes:
        from confluent_kafka.serialization import MessageField, SerializationContext

        record, checked = _checked_out(self._single_object._plain, name, value)
        serialize = self._serializer(record.full_name, plain=True)
        try:
            return bytes(serialize(checked, SerializationContext(topic, MessageField.VALUE)))
        except Exception as exc:  # e.g. a lone surrogate in a str: unencodable, as for a model
            raise EncodeError(f"{name} cannot be written: {exc!r}") from exc

    def decode_plain(
        self, data: bytes | None, topic: str, expected: frozenset[str] | None = None
    ) -> tuple[str, dict[str, Any]]:
        if data is not None and data[:2] == SINGLE_OBJECT_MAGIC:
            return self._single_object.decode_plain(data, topic, expected)
        if data is not None and data[:1] == b"\x00" and len(data) > _CONFLUENT_HEADER:
            schema_id = int.from_bytes(data[1:_CONFLUENT_HEADER], "big")
            self._writer_name(schema_id)
            record = self._plain_by_id.get(schema_id)
            if record is not None:  # written with the current schema: read it directly
                if expected is not None and record.name not in expected:
                    raise _wrong_topic(record.name, expected)
                try:
                    fast: dict[str, Any] | None = record.read(data, _CONFLUENT_HEADER)
                except Exception:  # unusual bytes: the deserializer below gives the verdict
                    fast = None
                if fast is not None:
                    return _checked_plain(record, fast, None)
        plain = self._single_object._plain_by_full_name
        return _finish_plain(plain, *self._read(data, topic), expected)

    def _read(self, data: bytes | None, topic: str) -> tuple[str, Any]:
        """(record full name, the value the deserializer reads), or ``DecodeError``."""
        from confluent_kafka.serialization import MessageField, SerializationContext

        if data is None:
            raise DecodeError("no value (tombstone)")
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
        _check_consumed(buffer, name, len(buffer.getvalue()))
        return name, value


def _fingerprint_or_none(schema: Any) -> bytes | None:
    try:
        return fingerprint(schema)
    except Exception:  # a registered schema we cannot parse is simply not the current one
        return None


def _record_name(schema: Any) -> str:
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise ValueError("not a record schema")
    from services.contracts.schemas import full_name

    return full_name(schema)


def registry_client(url: str) -> Any:
    """A schema-registry client (``mock://...`` gives confluent-kafka's in-process one)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient.new_client({"url": url})


class RegistrySetting(Protocol):
    """What the codec needs of the settings: a schema registry URL, or None (the Kafka
    settings of any service, ``services.runtime.settings.KafkaSettings``, have it)."""

    @property
    def schema_registry_url(self) -> str | None: ...


def make_codec(settings: RegistrySetting, *, client: Any = None) -> Codec:
    """The codec the settings ask for: registry framing when a registry URL is set."""
    if client is not None:
        return RegistryCodec(client)
    if settings.schema_registry_url:
        return RegistryCodec(registry_client(settings.schema_registry_url))
    return SingleObjectCodec()
