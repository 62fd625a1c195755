"""The compatibility gate: can data written with one schema be read with another?

Two checks, both must pass, both name the field that breaks:

1. Avro's resolution rules, walked structurally (a reader field the writer lacks
   needs a default; types must match or promote; enum symbols must be known; ...).
   This gives a precise message such as ``PostLiked.post_id: removed/renamed
   (the reader requires it and has no default)``.
2. The real thing: sample records written with the writer schema are read with
   the reader schema through ``fastavro.schemaless_reader(writer, reader)``, the
   same resolution our consumers and other teams run.

Released schemas stay readable in both directions: new code reads old data
(backward) and old consumers read new data (forward), because ``social.events``
is kept forever and other company services upgrade when they please.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import fastavro

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _type_name(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return str(schema["type"])
    return str(schema)


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _matches(writer: Any, reader: Any) -> bool:
    """Do the two (non-union) schemas name the same kind of value?"""
    w, r = _type_name(writer), _type_name(reader)
    if w in _PRIMITIVES or r in _PRIMITIVES:
        return r in _PROMOTIONS.get(w, {w})
    if w != r:
        return False
    if w in {"record", "enum", "fixed"}:
        return bool(_short(writer["name"]) == _short(reader["name"]))
    return True


def _problems(writer: Any, reader: Any, path: str) -> Iterator[str]:
    w, r = _type_name(writer), _type_name(reader)
    if w == "union":
        for branch in writer:
            yield from _problems(branch, reader, path)
        return
    if r == "union":
        branch = next((b for b in reader if _matches(writer, b)), None)
        if branch is None:
            yield f"{path}: type {w} written, reader accepts only {[_type_name(b) for b in reader]}"
        else:
            yield from _problems(writer, branch, path)
        return
    if not _matches(writer, reader):
        yield f"{path}: type changed from {w} to {r}"
        return
    yield from _CHILD_CHECKS.get(w, _no_children)(writer, reader, path)


def _no_children(writer: Any, reader: Any, path: str) -> Iterator[str]:
    return iter(())


def _record_problems(writer: Any, reader: Any, path: str) -> Iterator[str]:
    written = {field["name"]: field for field in writer["fields"]}
    for field in reader["fields"]:
        source = written.get(field["name"])
        if source is None:
            source = next((written[a] for a in field.get("aliases", []) if a in written), None)
        if source is None:
            if "default" not in field:
                yield (
                    f"{path}.{field['name']}: removed/renamed or added without a default "
                    "(the reader requires it and the writer does not write it)"
                )
            continue
        yield from _problems(source["type"], field["type"], f"{path}.{field['name']}")


def _enum_problems(writer: Any, reader: Any, path: str) -> Iterator[str]:
    unknown = [s for s in writer["symbols"] if s not in reader["symbols"]]
    if unknown and "default" not in reader:
        yield f"{path}: enum symbols {unknown} unknown to the reader"


def _fixed_problems(writer: Any, reader: Any, path: str) -> Iterator[str]:
    if writer["size"] != reader["size"]:
        yield f"{path}: fixed size changed from {writer['size']} to {reader['size']}"


_CHILD_CHECKS: dict[str, Callable[[Any, Any, str], Iterator[str]]] = {
    "record": _record_problems,
    "enum": _enum_problems,
    "fixed": _fixed_problems,
    "array": lambda w, r, path: _problems(w["items"], r["items"], f"{path}[]"),
    "map": lambda w, r, path: _problems(w["values"], r["values"], f"{path}{{}}"),
}


def _expand(schema: Any, named: dict[str, Any]) -> Any:
    """Inline references to named types so the walk sees whole definitions."""
    if isinstance(schema, str):
        return named.get(schema, schema)
    if isinstance(schema, list):
        return [_expand(branch, named) for branch in schema]
    kind = schema["type"]
    if kind in {"record", "error", "enum", "fixed"}:
        named[schema["name"]] = schema
    if kind in {"record", "error"}:
        for field in schema["fields"]:
            field["type"] = _expand(field["type"], named)
    elif kind == "array":
        schema["items"] = _expand(schema["items"], named)
    elif kind == "map":
        schema["values"] = _expand(schema["values"], named)
    return schema


def _parsed(schema: dict[str, Any]) -> Any:
    return _expand(fastavro.parse_schema(schema, _write_hint=False), {})


# ---------------------------------------------------------------- sample records


def sample_records(schema: dict[str, Any]) -> list[Any]:
    """A few records that exercise every field: one with every optional field null,
    one with every optional field set, arrays and maps non-empty."""
    parsed = _parsed(schema)
    return [_sample(parsed, fill=False, seed=1), _sample(parsed, fill=True, seed=2)]


_PRIMITIVE_SAMPLES: dict[str, Callable[[int], Any]] = {
    "null": lambda seed: None,
    "boolean": lambda seed: seed % 2 == 0,
    "int": lambda seed: seed,
    "long": lambda seed: seed * 1_000_003,
    "float": lambda seed: seed / 2,
    "double": lambda seed: seed / 4,
    "bytes": lambda seed: b"b%d" % seed,
    "string": lambda seed: f"s{seed}",
}


def _sample(schema: Any, *, fill: bool, seed: int) -> Any:
    kind = _type_name(schema)
    value: Any
    if kind == "union":
        non_null = [b for b in schema if _type_name(b) != "null"]
        skip = not fill and len(non_null) < len(schema)
        value = None if skip else _sample(non_null[0], fill=fill, seed=seed)
    elif isinstance(schema, dict) and schema.get("logicalType") == "timestamp-millis":
        value = 1_700_000_000_000 + seed
    elif kind == "record":
        fields = enumerate(schema["fields"])
        value = {f["name"]: _sample(f["type"], fill=fill, seed=seed + i) for i, f in fields}
    elif kind == "enum":
        value = schema["symbols"][seed % len(schema["symbols"])]
    elif kind == "array":
        value = [_sample(schema["items"], fill=fill, seed=seed + i) for i in range(2)]
    elif kind == "map":
        value = {f"k{i}": _sample(schema["values"], fill=fill, seed=seed + i) for i in range(2)}
    elif kind == "fixed":
        value = bytes(schema["size"])
    else:
        value = _PRIMITIVE_SAMPLES[kind](seed)
    return value


def _strip_logical(schema: Any) -> Any:
    """Sample values are raw (epoch millis), so write them without logical types."""
    if isinstance(schema, list):
        return [_strip_logical(b) for b in schema]
    if isinstance(schema, dict):
        out = {k: _strip_logical(v) for k, v in schema.items() if k != "logicalType"}
        return out
    return schema


def _round_trip(writer: dict[str, Any], reader: dict[str, Any], label: str) -> Iterator[str]:
    writer_plain = fastavro.parse_schema(_strip_logical(writer), _write_hint=False)
    reader_plain = fastavro.parse_schema(_strip_logical(reader), _write_hint=False)
    for record in sample_records(writer):
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, writer_plain, record)
        buffer.seek(0)
        try:
            fastavro.schemaless_reader(buffer, writer_plain, reader_plain)
        except Exception as exc:  # any failure of resolution is the finding
            yield f"{label}: fastavro cannot resolve: {exc}"
            return


def check_compatible(writer: dict[str, Any], reader: dict[str, Any]) -> list[str]:
    """Problems reading ``writer`` data with ``reader``; empty when compatible."""
    label = _short(str(reader["name"]))
    problems = list(_problems(_parsed(writer), _parsed(reader), label))
    problems += list(_round_trip(writer, reader, label))
    return problems


def check_both_ways(released: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Backward (current reads released) and forward (released reads current)."""
    return [f"backward: {p}" for p in check_compatible(released, current)] + [
        f"forward: {p}" for p in check_compatible(current, released)
    ]


def check_release(
    released: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]]
) -> list[str]:
    """Every released record still exists and is compatible both ways."""
    problems = []
    for name, schema in sorted(released.items()):
        if name not in current:
            problems.append(f"{name}: released record type was removed")
            continue
        problems += [f"{name}: {p}" for p in check_both_ways(schema, current[name])]
    return problems
