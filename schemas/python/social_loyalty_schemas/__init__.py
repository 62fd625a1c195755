"""The Avro schemas of social-loyalty's topics and a reader for their values.

Values are Avro single-object encoded: ``C3 01``, the writer schema's CRC-64-AVRO
fingerprint (8 bytes, little-endian), the Avro body. ``decode`` finds the writer schema
by that fingerprint, among the current schemas and every released version (the event
log is kept forever), and returns the record in the current schema's shape (Avro schema
resolution). A value written with a schema this package does not have (a newer one)
raises ``UnknownSchemaError``: upgrade the package.
"""

from __future__ import annotations

import io
import json
from functools import cache
from importlib import resources
from typing import Any

from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint as _crc64
from fastavro.schema import to_parsing_canonical_form

__all__ = ["MAGIC", "UnknownSchemaError", "decode", "fingerprint", "names", "schema"]

MAGIC = b"\xc3\x01"


class UnknownSchemaError(ValueError):
    """The value is not single-object encoded, or its schema is not in this package."""


def _folder() -> Any:
    return resources.files(__name__).joinpath("avsc")


def _load(entry: Any) -> Any:
    return parse_schema(json.loads(entry.read_text(encoding="utf-8")))


def _crc(parsed: Any) -> bytes:
    return bytes.fromhex(_crc64(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


@cache
def names() -> tuple[str, ...]:
    """Every current schema's full name, e.g. ``social_loyalty.events.PostLiked``."""
    return tuple(
        sorted(p.name[: -len(".avsc")] for p in _folder().iterdir() if p.name.endswith(".avsc"))
    )


@cache
def schema(name: str) -> Any:
    """The parsed current schema of ``name``."""
    if name not in names():
        raise UnknownSchemaError(f"no schema {name!r} in this package")
    return _load(_folder().joinpath(f"{name}.avsc"))


@cache
def fingerprint(name: str) -> bytes:
    """The 8 bytes after ``C3 01`` in a value written with ``name``'s current schema."""
    return _crc(schema(name))


@cache
def _writers() -> dict[bytes, tuple[str, Any]]:
    """fingerprint -> (full name, writer schema), released versions first."""
    found: dict[bytes, tuple[str, Any]] = {}
    history = _folder().joinpath("history")
    if history.is_dir():
        for version in sorted(history.iterdir(), key=lambda p: p.name):
            for entry in version.iterdir():
                if entry.name.endswith(".avsc"):
                    parsed = _load(entry)
                    found[_crc(parsed)] = (entry.name[: -len(".avsc")], parsed)
    for name in names():
        found[fingerprint(name)] = (name, schema(name))
    return found


def decode(value: bytes) -> tuple[str, dict[str, Any]]:
    """``(full name, record)`` of one value, in the current schema's shape."""
    if value[:2] != MAGIC or len(value) < 10:
        raise UnknownSchemaError("not Avro single-object encoding (no C3 01 marker)")
    found = _writers().get(value[2:10])
    if found is None:
        raise UnknownSchemaError(
            f"schema fingerprint {value[2:10].hex()} is not in this package: upgrade it"
        )
    name, writer = found
    reader = schema(name) if name in names() else writer
    record = schemaless_reader(io.BytesIO(value[10:]), writer, reader)
    assert isinstance(record, dict)  # every schema here is a record
    return name, record
