"""Loading ``schemas/*.avsc`` and indexing them by name and by fingerprint.

Single-object encoding names the writer schema by its CRC-64-AVRO fingerprint, so a
reader must know every schema that was ever released, not only the current one:
the index holds the current set plus ``schemas/history/v*/`` and resolves any
released writer schema to the current reader schema of the same record name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
"""``schemas/`` at the repository root: the contract other teams read."""
HISTORY_DIR = SCHEMA_DIR / "history"


def full_name(schema: dict[str, Any]) -> str:
    """The Avro full name of a top-level record schema."""
    name = str(schema["name"])
    namespace = schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def fingerprint(schema: dict[str, Any]) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint of the parsing canonical form,
    exactly what follows ``C3 01`` in single-object encoding."""
    parsed = fastavro.parse_schema(schema, _write_hint=False)
    return bytes.fromhex(_fastavro_fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def load_dir(directory: Path) -> dict[str, dict[str, Any]]:
    """Every ``*.avsc`` directly in ``directory`` as raw JSON, by full name."""
    schemas: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.avsc")):
        schema = json.loads(path.read_text())
        name = full_name(schema)
        if name in schemas:
            raise ValueError(f"{path}: record {name} is defined twice")
        schemas[name] = schema
    return schemas


def released_versions(history_dir: Path = HISTORY_DIR) -> dict[str, dict[str, dict[str, Any]]]:
    """``{"v1": {full name: schema}, ...}`` for every released version."""
    if not history_dir.is_dir():
        return {}
    return {
        version.name: load_dir(version)
        for version in sorted(history_dir.iterdir())
        if version.is_dir() and version.name.startswith("v")
    }


@dataclass(frozen=True)
class WriterSchema:
    """A schema some producer may have written with, and where it came from."""

    name: str
    version: str  # "current" or "v1", "v2", ...
    raw: dict[str, Any]
    parsed: Any


@dataclass(frozen=True)
class SchemaSet:
    """Current reader schemas by name, and every known writer schema by fingerprint."""

    current_raw: dict[str, dict[str, Any]]
    current: dict[str, Any]
    fingerprints: dict[str, bytes]
    writers: dict[bytes, WriterSchema] = field(repr=False)

    def writer_for(self, fp: bytes) -> WriterSchema | None:
        return self.writers.get(fp)


def build_schema_set(schema_dir: Path = SCHEMA_DIR, history_dir: Path | None = None) -> SchemaSet:
    """Index a schema directory (and its released history) for the codec."""
    current_raw = load_dir(schema_dir)
    current = {name: fastavro.parse_schema(raw) for name, raw in current_raw.items()}
    fingerprints = {name: fingerprint(raw) for name, raw in current_raw.items()}
    writers: dict[bytes, WriterSchema] = {}
    history = released_versions(history_dir if history_dir is not None else schema_dir / "history")
    for version, schemas in history.items():
        for name, raw in schemas.items():
            writers[fingerprint(raw)] = WriterSchema(name, version, raw, fastavro.parse_schema(raw))
    for name, raw in current_raw.items():
        writers[fingerprints[name]] = WriterSchema(name, "current", raw, current[name])
    return SchemaSet(current_raw, current, fingerprints, writers)


@cache
def default_schema_set() -> SchemaSet:
    """The repository's schemas, loaded once per process."""
    return build_schema_set()
