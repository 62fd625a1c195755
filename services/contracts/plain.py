"""Contract records as plain dicts: Avro bodies read and written without pydantic.

A stream consumer that decodes a record, reads three fields and moves on should not
pay for building a model; this module is what the codec's ``decode_plain`` and
``encode_plain`` run on. The values are exactly what fastavro yields: ``str`` for
enums, aware UTC ``datetime`` for ``timestamp-millis``, ``list`` for arrays, ``dict``
for maps and nested records.

One definition: the checks are compiled, when a codec is built, from ``models.py``
itself (each field's type, ``Field`` constraints, ``AfterValidator`` functions,
defaults), walked in step with the ``.avsc`` schema. Anything there this module
cannot mirror (a new kind of constraint, a field or model validator, a config option
that changes validation) makes building the codec fail, naming the field, instead of
letting the fast path accept what a model refuses.

The body reader covers only the canonical, unsurprising shape of a body written with
the current schema (inline code per field, no file object). Whenever it is unsure
(an over-long varint, a boolean byte other than 0/1, an unknown union branch, a
truncation, trailing bytes, bad UTF-8), it raises :class:`Fallback` and the codec
reads the body with fastavro instead, so odd bytes get exactly fastavro's verdict.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Annotated, Any, Final, Union, cast, get_args, get_origin

import annotated_types
import pydantic_core
from pydantic import AfterValidator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from services.contracts.model_base import CROSS_CHECKS_VALIDATOR, CrossCheck
from services.contracts.models import RECORD_TYPES, ContractModel, UtcMillis

Check = Callable[[Any], Any]
Reader = Callable[[bytes, int], tuple[Any, int]]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_SMALL: Final = tuple(bytes([(n << 1) ^ (n >> 63)]) for n in range(-64, 64))
"""The one-byte zigzag varints, indexed by ``n + 64``."""

_UTC_MILLIS: Final = cast(
    Callable[[datetime], datetime],
    next(m.func for m in get_args(UtcMillis)[1:] if isinstance(m, AfterValidator)),
)
"""What ``UtcMillis`` does to a value. A ``timestamp-millis`` read from Avro already is
aware, UTC and whole milliseconds, so decoding does not run it again (the round-trip
tests prove the values equal the models')."""

_CONFIG_MIRRORED: Final = {"frozen", "extra", "title", "json_schema_extra"}
_CACHE_LIMIT: Final = 4096


class InvalidValueError(ValueError):
    """A value the model would refuse; ``reason`` says which field and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Fallback(Exception):  # noqa: N818 - a signal, not an error: "let fastavro decide"
    """The fast reader is unsure about these bytes; fastavro decides."""


# ------------------------------------------------------------------- varints


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A zigzag long, exactly as fastavro reads it; longer than 10 bytes or past 64
    bits is left to fastavro (it wraps such values; we do not guess how)."""
    n = shift = 0
    while True:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise Fallback
    if shift == 63 and b > 1:
        raise Fallback
    return (n >> 1) ^ -(n & 1), pos


def long_bytes(n: int) -> bytes:
    """``n`` as an Avro long (zigzag varint)."""
    if -64 <= n < 64:
        return _SMALL[n + 64]
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


# Timestamps repeat (a detector run stamps every event with the same snapshot times),
# and building a datetime is the dearest part of a read, so reading keeps a bounded
# map from 6-byte varints (every time from 1971 to 2109) to their datetimes.
_TS_IN: dict[bytes, datetime] = {}


def _read_ts(data: bytes, pos: int) -> tuple[datetime, int]:
    key = data[pos : pos + 6]
    if len(key) == 6 and key[5] < 0x80 and key[0] & key[1] & key[2] & key[3] & key[4] & 0x80:
        b0, b1, b2, b3, b4, b5 = key
        n = (
            (b0 & 0x7F)
            | (b1 & 0x7F) << 7
            | (b2 & 0x7F) << 14
            | (b3 & 0x7F) << 21
            | (b4 & 0x7F) << 28
            | b5 << 35
        )
        value = _EPOCH + timedelta(0, 0, 0, (n >> 1) ^ -(n & 1))
        if len(_TS_IN) >= _CACHE_LIMIT:
            _TS_IN.clear()
        _TS_IN[key] = value
        return value, pos + 6
    millis, pos = _varint(data, pos)
    return _EPOCH + timedelta(0, 0, 0, millis), pos


def _ts_bytes(value: datetime) -> bytes:
    z = ((value - _EPOCH) // _ONE_MS) << 1
    if 1 << 35 <= z < 1 << 42:  # 1971 to 2109: six bytes
        return bytes(
            (
                z & 0x7F | 0x80,
                z >> 7 & 0x7F | 0x80,
                z >> 14 & 0x7F | 0x80,
                z >> 21 & 0x7F | 0x80,
                z >> 28 & 0x7F | 0x80,
                z >> 35,
            )
        )
    return long_bytes(z >> 1)


# ------------------------------------------------------------- schema walking


def _kind(schema: Any, named: dict[str, Any]) -> tuple[str, Any]:  # noqa: PLR0911
    """(kind, schema) with names resolved; kind is the Avro type or logical type."""
    if isinstance(schema, list):
        return "union", schema
    if isinstance(schema, str):
        if schema in named:
            return _kind(named[schema], named)
        return schema, schema
    if schema.get("logicalType") == "timestamp-millis" and schema["type"] == "long":
        return "timestamp-millis", schema
    kind = schema["type"]
    if kind in ("record", "enum", "fixed"):
        namespace = schema.get("namespace")
        name = schema["name"]
        named[name if "." in name or not namespace else f"{namespace}.{name}"] = schema
        named[name.rsplit(".", 1)[-1]] = schema
        return kind, schema
    if isinstance(kind, str) and kind not in ("array", "map"):
        return _kind(kind, named)
    return kind, schema


# ------------------------------------------------------------------- checking


def _constraint(meta: Any, where: str) -> Check:  # noqa: PLR0911, PLR0915 - one per kind
    """One ``annotated_types``/``Field`` constraint as a check, or the import fails."""

    def fail(message: str) -> InvalidValueError:
        return InvalidValueError(f"{where}: {message}")

    if isinstance(meta, annotated_types.Gt):
        bound: Any = meta.gt

        def gt(x: Any) -> Any:
            if not x > bound:
                raise fail(f"must be greater than {bound}")
            return x

        return gt
    if isinstance(meta, annotated_types.Ge):
        ge_bound: Any = meta.ge

        def ge(x: Any) -> Any:
            if not x >= ge_bound:
                raise fail(f"must be greater than or equal to {ge_bound}")
            return x

        return ge
    if isinstance(meta, annotated_types.Lt):
        lt_bound: Any = meta.lt

        def lt(x: Any) -> Any:
            if not x < lt_bound:
                raise fail(f"must be less than {lt_bound}")
            return x

        return lt
    if isinstance(meta, annotated_types.Le):
        le_bound: Any = meta.le

        def le(x: Any) -> Any:
            if not x <= le_bound:
                raise fail(f"must be less than or equal to {le_bound}")
            return x

        return le
    if isinstance(meta, annotated_types.MultipleOf):
        step: Any = meta.multiple_of

        def multiple_of(x: Any) -> Any:
            if x % step:
                raise fail(f"must be a multiple of {step}")
            return x

        return multiple_of
    if isinstance(meta, annotated_types.MinLen):
        least = meta.min_length

        def min_len(x: Any) -> Any:
            if len(x) < least:
                raise fail(f"must have at least {least} items/characters")
            return x

        return min_len
    if isinstance(meta, annotated_types.MaxLen):
        most = meta.max_length

        def max_len(x: Any) -> Any:
            if len(x) > most:
                raise fail(f"must have at most {most} items/characters")
            return x

        return max_len
    if isinstance(meta, AfterValidator):
        func = meta.func
        if len(inspect.signature(func).parameters) != 1:
            raise NotImplementedError(f"{where}: after-validator {func} takes validation info")

        def after(x: Any) -> Any:
            try:
                return func(x)  # type: ignore[call-arg]
            except (ValueError, AssertionError) as exc:
                raise fail(str(exc)) from exc

        if func is _UTC_MILLIS:

            def utc_millis(x: Any) -> Any:
                # Its fixed points (aware UTC, whole ms) skip the ~1 us call;
                # test_codec_plain proves they are fixed points.
                if x.tzinfo is UTC and not x.microsecond % 1000:
                    return x
                return after(x)

            return utc_millis
        return after
    settings = {k: v for k, v in getattr(meta, "__dict__", {}).items() if v is not None}
    if type(meta).__name__ == "_PydanticGeneralMetadata" and set(settings) == {"pattern"}:
        # pydantic-core's own regex engine: Python's ``re`` lets ``$`` match before a
        # trailing newline, which pydantic refuses ("4242\n" would pass here).
        text = settings["pattern"]
        pattern = pydantic_core.SchemaValidator(pydantic_core.core_schema.str_schema(pattern=text))

        def matches(x: Any) -> Any:
            try:
                pattern.validate_python(x)
            except pydantic_core.ValidationError:
                raise fail(f"must match {text!r}") from None
            return x

        return matches
    raise NotImplementedError(f"{where}: the plain path does not mirror {meta!r}; add it here")


def _chain(checks: list[Check]) -> Check | None:
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]

    def chained(x: Any) -> Any:
        for check in checks:
            x = check(x)
        return x

    return chained


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    metadata: list[Any] = []
    while get_origin(annotation) is Annotated:
        annotation, *more = get_args(annotation)
        for meta in more:
            # ``Annotated[int, Field(ge=1)]`` nested in ``... | None`` keeps its FieldInfo;
            # its constraints are the FieldInfo's metadata.
            metadata.extend(meta.metadata if isinstance(meta, FieldInfo) else [meta])
    return annotation, metadata


@dataclass(frozen=True)
class _Checks:
    """Both directions' checks of one value. ``inbound`` runs on decoded values (types
    are the decoder's, so only constraints and validators); ``outbound`` on values a
    producer hands in (types, Avro ranges, constraints, validators, normalisation).
    ``None`` means nothing to do."""

    inbound: Check | None
    outbound: Check


class _Compiler:
    def value(
        self, schema: Any, annotation: Any, metadata: list[Any], named: dict[str, Any], where: str
    ) -> _Checks:
        annotation, more = _unwrap(annotation)
        metadata = [*metadata, *more]
        kind, schema = _kind(schema, named)
        if kind == "union":
            return self._nullable(schema, annotation, metadata, named, where)
        shape = self._shape(kind, schema, annotation, named, where)
        inbound: list[Check] = [shape.inbound] if shape.inbound is not None else []
        outbound: list[Check] = [shape.outbound]
        for meta in metadata:
            check = _constraint(meta, where)
            outbound.append(check)
            if not (kind == "timestamp-millis" and getattr(meta, "func", None) is _UTC_MILLIS):
                inbound.append(check)
        chained = _chain(outbound)
        assert chained is not None
        return _Checks(_chain(inbound), chained)

    def _nullable(
        self,
        branches: list[Any],
        annotation: Any,
        metadata: list[Any],
        named: dict[str, Any],
        where: str,
    ) -> _Checks:
        others = [b for b in branches if b != "null"]
        args = [a for a in get_args(annotation) if a is not type(None)]
        if (
            len(branches) != 2
            or len(others) != 1
            or get_origin(annotation) not in (Union, types.UnionType)
            or len(args) != 1
        ):
            raise NotImplementedError(f"{where}: only [null, T] unions mirror T | None")
        inner = self.value(others[0], args[0], metadata, named, where)
        inner_in, inner_out = inner.inbound, inner.outbound

        def outbound(x: Any) -> Any:
            return None if x is None else inner_out(x)

        if inner_in is None:
            return _Checks(None, outbound)

        def inbound(x: Any) -> Any:
            return None if x is None else inner_in(x)

        return _Checks(inbound, outbound)

    def _shape(  # noqa: PLR0911, PLR0912, PLR0915 - one branch per Avro type
        self, kind: str, schema: Any, annotation: Any, named: dict[str, Any], where: str
    ) -> _Checks:
        def wrong(x: Any, wanted: str) -> InvalidValueError:
            return InvalidValueError(f"{where}: expected {wanted}, got {type(x).__name__}")

        if kind in ("long", "int"):
            low, high = (_LONG_MIN, _LONG_MAX) if kind == "long" else (_INT_MIN, _INT_MAX)
            self._expect(annotation, int, where)

            def integer(x: Any) -> Any:
                if type(x) is not int:
                    raise wrong(x, "int")
                if not low <= x <= high:
                    raise InvalidValueError(f"{where}: {x} does not fit an Avro {kind}")
                return x

            return _Checks(None, integer)
        if kind == "string":
            self._expect(annotation, str, where)

            def string(x: Any) -> Any:
                if not isinstance(x, str):
                    raise wrong(x, "str")
                return x

            return _Checks(None, string)
        if kind == "bytes":
            self._expect(annotation, bytes, where)

            def raw(x: Any) -> Any:
                if not isinstance(x, bytes):
                    raise wrong(x, "bytes")
                return x

            return _Checks(None, raw)
        if kind == "boolean":
            self._expect(annotation, bool, where)

            def boolean(x: Any) -> Any:
                if type(x) is not bool:
                    raise wrong(x, "bool")
                return x

            return _Checks(None, boolean)
        if kind == "timestamp-millis":
            self._expect(annotation, datetime, where)

            def timestamp(x: Any) -> Any:
                if not isinstance(x, datetime):
                    raise wrong(x, "datetime")
                return x

            return _Checks(None, timestamp)
        if kind == "enum":
            symbols = list(schema["symbols"])
            if not (isinstance(annotation, type) and issubclass(annotation, Enum)):
                raise NotImplementedError(f"{where}: Avro enum but annotation {annotation}")
            if [member.value for member in annotation] != symbols:
                raise NotImplementedError(f"{where}: {annotation.__name__} is not {symbols}")
            allowed = frozenset(symbols)

            def symbol(x: Any) -> Any:
                if not isinstance(x, str) or x not in allowed:
                    raise InvalidValueError(f"{where}: {x!r} is not one of {symbols}")
                return x

            return _Checks(None, symbol)
        if kind == "array":
            origin = get_origin(annotation)
            args = get_args(annotation)
            if (origin is tuple and len(args) == 2 and args[1] is Ellipsis) or (
                origin is list and len(args) == 1
            ):
                item_annotation = args[0]
            else:
                raise NotImplementedError(f"{where}: Avro array but annotation {annotation}")
            item = self.value(schema["items"], item_annotation, [], named, f"{where}[]")
            item_in, item_out = item.inbound, item.outbound

            def array_out(x: Any) -> Any:
                if not isinstance(x, list | tuple):
                    raise wrong(x, "list or tuple")
                return [item_out(v) for v in x]

            def array_in(x: Any) -> Any:
                return [item_in(v) for v in x] if item_in is not None else x

            return _Checks(array_in if item_in is not None else None, array_out)
        if kind == "map":
            args = get_args(annotation)
            if get_origin(annotation) is not dict or len(args) != 2:
                raise NotImplementedError(f"{where}: Avro map but annotation {annotation}")
            key_annotation, key_metadata = _unwrap(args[0])
            if key_annotation is not str:
                raise NotImplementedError(f"{where}: Avro map keys are str, not {args[0]}")
            key_check = _chain([_constraint(meta, f"{where} key") for meta in key_metadata])
            values = self.value(schema["values"], args[1], [], named, f"{where}{{}}")
            value_in, value_out = values.inbound, values.outbound

            def map_out(x: Any) -> Any:
                if not isinstance(x, dict):
                    raise wrong(x, "dict")
                for key in x:
                    if not isinstance(key, str):
                        raise InvalidValueError(f"{where}: map key {key!r} is not a str")
                    if key_check is not None:
                        key_check(key)
                return {key: value_out(v) for key, v in x.items()}

            def map_in(x: Any) -> Any:
                if key_check is not None:
                    for key in x:
                        key_check(key)
                return {key: value_in(v) for key, v in x.items()} if value_in is not None else x

            inbound = value_in is not None or key_check is not None
            return _Checks(map_in if inbound else None, map_out)
        if kind == "record":
            if not (isinstance(annotation, type) and issubclass(annotation, ContractModel)):
                raise NotImplementedError(f"{where}: Avro record but annotation {annotation}")
            return self.record(schema, annotation, named)
        raise NotImplementedError(f"{where}: Avro type {kind} has no plain mirror")

    @staticmethod
    def _expect(annotation: Any, wanted: type, where: str) -> None:
        if annotation is not wanted:
            raise NotImplementedError(f"{where}: annotation {annotation} is not {wanted.__name__}")

    def record(
        self, schema: dict[str, Any], model: type[ContractModel], named: dict[str, Any]
    ) -> _Checks:
        name = model.__name__
        extra = set(model.model_config) - _CONFIG_MIRRORED
        if extra or model.model_config.get("extra") != "forbid":
            raise NotImplementedError(f"{name}: model config {sorted(extra)} has no plain mirror")
        decorators = model.__pydantic_decorators__
        for kind in ("validators", "field_validators", "root_validators"):
            if getattr(decorators, kind):
                raise NotImplementedError(f"{name} has {kind}: mirror them in plain.py first")
        if set(decorators.model_validators) - {CROSS_CHECKS_VALIDATOR}:
            raise NotImplementedError(f"{name} has model_validators: mirror them in plain.py first")
        cross = _cross_checks(name, getattr(model, "cross_checks", ()), decorators)
        fields: dict[str, FieldInfo] = model.model_fields
        avro_fields = {f["name"]: f["type"] for f in schema["fields"]}
        if set(fields) != set(avro_fields):
            raise NotImplementedError(f"{name}: fields differ from the schema's")
        plan: list[tuple[str, Callable[[], Any] | None, Check, Check | None]] = []
        for field_name, avro_type in avro_fields.items():
            info = fields[field_name]
            where = f"{name}.{field_name}"
            if info.alias or info.validation_alias:
                raise NotImplementedError(f"{where}: aliases have no plain mirror")
            checks = self.value(avro_type, info.annotation, list(info.metadata), named, where)
            plan.append((field_name, _default(info), checks.outbound, checks.inbound))
        known = frozenset(avro_fields)
        inbound_plan = [(f, check) for f, _, _, check in plan if check is not None]
        outbound_plan = [(f, default, check) for f, default, check, _ in plan]

        def outbound(value: Any) -> dict[str, Any]:
            if not isinstance(value, Mapping):
                raise InvalidValueError(f"{name}: expected a mapping, got {type(value).__name__}")
            if not known.issuperset(value):
                raise InvalidValueError(f"{name}: unknown fields {sorted(set(value) - known)}")
            out: dict[str, Any] = {}
            for field_name, default, check in outbound_plan:
                if field_name in value:
                    out[field_name] = check(value[field_name])
                elif default is not None:
                    out[field_name] = check(default())
                else:
                    raise InvalidValueError(f"{name}.{field_name}: field required")
            return out if cross is None else cross(out)

        if not inbound_plan and cross is None:
            return _Checks(None, outbound)

        def inbound(value: dict[str, Any]) -> dict[str, Any]:
            for field_name, check in inbound_plan:
                value[field_name] = check(value[field_name])
            return value if cross is None else cross(value)

        return _Checks(inbound, outbound)


def _cross_checks(
    name: str, rules: tuple[CrossCheck, ...], decorators: Any
) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """The model's ``cross_checks`` on a record's checked fields, run by the model's one
    mirrored validator; ``None`` when it has none (or no validator runs them)."""
    if CROSS_CHECKS_VALIDATOR not in decorators.model_validators:
        if rules:
            raise NotImplementedError(f"{name} has cross_checks that no validator runs")
        return None
    if decorators.model_validators[CROSS_CHECKS_VALIDATOR].info.mode != "after":
        raise NotImplementedError(f"{name}: {CROSS_CHECKS_VALIDATOR} must be an after-validator")
    if not rules:
        return None

    def cross(value: dict[str, Any]) -> dict[str, Any]:
        for rule in rules:
            try:
                rule.check(*(value[field] for field in rule.fields))
            except ValueError as exc:
                raise InvalidValueError(f"{name}: {exc}") from exc
        return value

    return cross


def _default(info: FieldInfo) -> Callable[[], Any] | None:
    if info.default_factory is not None:
        return info.default_factory  # type: ignore[return-value]
    if info.default is PydanticUndefined:
        return None
    default = info.default
    return lambda: default


# -------------------------------------------------------------------- reading


def _reader(  # noqa: PLR0911, PLR0915 - one branch per Avro type
    kind: str, schema: Any, named: dict[str, Any]
) -> Reader:
    """A ``(data, pos) -> (value, pos)`` reader of any supported type."""
    if kind in ("long", "int"):

        def long_(data: bytes, pos: int) -> tuple[Any, int]:
            b = data[pos]
            if b < 0x80:
                return (b >> 1) ^ -(b & 1), pos + 1
            return _varint(data, pos)

        return long_
    if kind in ("string", "bytes"):
        text = kind == "string"

        def blob(data: bytes, pos: int) -> tuple[Any, int]:
            n, pos = _varint(data, pos)
            end = pos + n
            if n < 0 or end > len(data):
                raise Fallback
            return (data[pos:end].decode() if text else data[pos:end]), end

        return blob
    if kind == "boolean":

        def boolean(data: bytes, pos: int) -> tuple[Any, int]:
            b = data[pos]
            if b > 1:
                raise Fallback
            return b == 1, pos + 1

        return boolean
    if kind == "null":
        return lambda data, pos: (None, pos)
    if kind == "timestamp-millis":
        return _read_ts
    if kind == "enum":
        symbols = tuple(schema["symbols"])

        def enum(data: bytes, pos: int) -> tuple[Any, int]:
            n, pos = _varint(data, pos)
            if not 0 <= n < len(symbols):
                raise Fallback
            return symbols[n], pos

        return enum
    if kind == "union":
        branches = [_reader(*_kind(branch, named), named) for branch in schema]

        def union(data: bytes, pos: int) -> tuple[Any, int]:
            n, pos = _varint(data, pos)
            if not 0 <= n < len(branches):
                raise Fallback
            return branches[n](data, pos)

        return union
    if kind in ("array", "map"):
        keyed = kind == "map"
        item = _reader(*_kind(schema["values" if keyed else "items"], named), named)
        read_key = _reader("string", "string", named)

        def blocks(data: bytes, pos: int) -> tuple[Any, int]:
            items: list[Any] = []
            entries: dict[str, Any] = {}
            while True:
                count, pos = _varint(data, pos)
                if count == 0:
                    return (entries if keyed else items), pos
                if count < 0:
                    count = -count
                    _, pos = _varint(data, pos)  # the block's byte size
                for _ in range(count):
                    if keyed:
                        key, pos = read_key(data, pos)
                        entries[key], pos = item(data, pos)
                    else:
                        value, pos = item(data, pos)
                        items.append(value)

        return blocks
    if kind == "record":
        fields = [(f["name"], _reader(*_kind(f["type"], named), named)) for f in schema["fields"]]

        def record(data: bytes, pos: int) -> tuple[Any, int]:
            out: dict[str, Any] = {}
            for name, read in fields:
                out[name], pos = read(data, pos)
            return out, pos

        return record
    raise NotImplementedError(f"Avro type {kind} has no plain reader")


_READ_LONG = """\
b = data[pos]
if b < 128:
    {v} = (b >> 1) ^ -(b & 1)
    pos += 1
else:
    {v}, pos = _varint(data, pos)
"""
_READ_STRING = (
    _READ_LONG.format(v="n")
    + """\
end = pos + n
if n < 0 or end > size:
    raise Fallback
{v} = data[pos:end]{decode}
pos = end
"""
)
_READ_BOOLEAN = """\
b = data[pos]
if b > 1:
    raise Fallback
{v} = b == 1
pos += 1
"""
_READ_ENUM = (
    _READ_LONG.format(v="n")
    + """\
if n < 0 or n >= {count}:
    raise Fallback
{v} = {symbols}[n]
"""
)
_READ_TIMESTAMP = """\
{v} = _ts_get(data[pos:pos + 6])
if {v} is None:
    {v}, pos = _read_ts(data, pos)
else:
    pos += 6
"""


def _inline_read(  # noqa: PLR0911 - one branch per Avro type
    kind: str, schema: Any, v: str, env: dict[str, Any], named: dict[str, Any]
) -> str:
    """Source that reads one value into ``v``, inline where the type is simple."""
    if kind in ("long", "int"):
        return _READ_LONG.format(v=v)
    if kind == "string":
        return _READ_STRING.format(v=v, decode=".decode()")
    if kind == "bytes":
        return _READ_STRING.format(v=v, decode="")
    if kind == "boolean":
        return _READ_BOOLEAN.format(v=v)
    if kind == "timestamp-millis":
        return _READ_TIMESTAMP.format(v=v)
    if kind == "enum":
        env[f"_sym_{v}"] = tuple(schema["symbols"])
        return _READ_ENUM.format(v=v, count=len(schema["symbols"]), symbols=f"_sym_{v}")
    if kind == "union" and len(schema) == 2 and schema[0] == "null":
        inner_kind, inner = _kind(schema[1], named)
        if inner_kind in ("long", "int", "string", "bytes", "boolean", "timestamp-millis"):
            body = _inline_read(inner_kind, inner, v, env, named)
            indented = "".join(f"    {line}\n" for line in body.splitlines())
            return (
                f"b = data[pos]\npos += 1\nif b == 0:\n    {v} = None\nelif b == 2:\n"
                f"{indented}else:\n    raise Fallback\n"
            )
    env[f"_read_{v}"] = _reader(kind, schema, named)
    return f"{v}, pos = _read_{v}(data, pos)\n"


def _compile_reader(
    schema: dict[str, Any], named: dict[str, Any]
) -> Callable[[bytes, int], dict[str, Any]]:
    env: dict[str, Any] = {
        "_varint": _varint,
        "_read_ts": _read_ts,
        "_ts_get": _TS_IN.get,
        "Fallback": Fallback,
    }
    lines = ["size = len(data)\n"]
    names = []
    for index, field in enumerate(schema["fields"]):
        kind, field_schema = _kind(field["type"], named)
        lines.append(_inline_read(kind, field_schema, f"f{index}", env, named))
        names.append(f"{field['name']!r}: f{index}")
    lines.append("if pos != size:\n    raise Fallback\n")
    lines.append("return {" + ", ".join(names) + "}\n")
    body = "".join(f"    {line}\n" for chunk in lines for line in chunk.splitlines())
    source = f"def read(data, pos):\n{body}"
    exec(compile(source, f"<plain reader {schema['name']}>", "exec"), env)  # noqa: S102 - our own template
    reader: Callable[[bytes, int], dict[str, Any]] = env["read"]
    return reader


# -------------------------------------------------------------------- writing


def _writer(  # noqa: PLR0911 - one branch per Avro type
    kind: str, schema: Any, named: dict[str, Any]
) -> Callable[[bytearray, Any], None]:
    """An ``(out, value)`` writer of a checked value of any supported type."""
    if kind in ("long", "int"):

        def long_(out: bytearray, x: Any) -> None:
            out += long_bytes(x)

        return long_
    if kind in ("string", "bytes"):
        text = kind == "string"

        def blob(out: bytearray, x: Any) -> None:
            raw = x.encode() if text else x
            out += long_bytes(len(raw))
            out += raw

        return blob
    if kind == "boolean":
        return lambda out, x: out.append(1 if x else 0)
    if kind == "null":
        return lambda out, x: None
    if kind == "timestamp-millis":

        def timestamp(out: bytearray, x: Any) -> None:
            out += _ts_bytes(x)

        return timestamp
    if kind == "enum":
        index = {symbol: long_bytes(i) for i, symbol in enumerate(schema["symbols"])}

        def enum(out: bytearray, x: Any) -> None:
            out += index[x]

        return enum
    if kind == "union":
        if len(schema) != 2 or "null" not in schema:
            raise NotImplementedError("only [null, T] unions have a plain writer")
        null_at = schema.index("null")
        other = _writer(*_kind(schema[1 - null_at], named), named)
        null_tag, other_tag = long_bytes(null_at), long_bytes(1 - null_at)

        def union(out: bytearray, x: Any) -> None:
            if x is None:
                out += null_tag
            else:
                out += other_tag
                other(out, x)

        return union
    if kind in ("array", "map"):
        keyed = kind == "map"
        item = _writer(*_kind(schema["values" if keyed else "items"], named), named)
        key_writer = _writer("string", "string", named)

        def blocks(out: bytearray, x: Any) -> None:
            if x:
                out += long_bytes(len(x))
                if keyed:
                    for key, value in x.items():
                        key_writer(out, key)
                        item(out, value)
                else:
                    for value in x:
                        item(out, value)
            out.append(0)

        return blocks
    if kind == "record":
        fields = [(f["name"], _writer(*_kind(f["type"], named), named)) for f in schema["fields"]]

        def record(out: bytearray, x: Any) -> None:
            for name, write in fields:
                write(out, x[name])

        return record
    raise NotImplementedError(f"Avro type {kind} has no plain writer")


def _compile_writer(
    schema: dict[str, Any], named: dict[str, Any]
) -> Callable[[bytes, dict[str, Any]], bytes]:
    env: dict[str, Any] = {"_long": long_bytes, "_small": _SMALL, "_ts": _ts_bytes}
    lines = ["out = bytearray(head)\n"]
    for index, field in enumerate(schema["fields"]):
        kind, field_schema = _kind(field["type"], named)
        v = f"v[{field['name']!r}]"
        if kind in ("long", "int"):
            lines.append(f"x = {v}\nout += _small[x + 64] if -64 <= x < 64 else _long(x)\n")
        elif kind == "string":
            lines.append(
                f"x = {v}.encode()\nn = len(x)\n"
                "out += _small[n + 64] if n < 64 else _long(n)\nout += x\n"
            )
        elif kind == "timestamp-millis":
            lines.append(f"out += _ts({v})\n")
        elif kind == "boolean":
            lines.append(f"out.append(1 if {v} else 0)\n")
        else:
            env[f"_write_{index}"] = _writer(kind, field_schema, named)
            lines.append(f"_write_{index}(out, {v})\n")
    lines.append("return bytes(out)\n")
    body = "".join(f"    {line}\n" for chunk in lines for line in chunk.splitlines())
    source = f"def write(head, v):\n{body}"
    exec(compile(source, f"<plain writer {schema['name']}>", "exec"), env)  # noqa: S102 - our own template
    writer: Callable[[bytes, dict[str, Any]], bytes] = env["write"]
    return writer


# -------------------------------------------------------------------- records


@dataclass(frozen=True)
class PlainRecord:
    """Everything the codec needs to read, check and write one record as a dict."""

    name: str
    """The short Avro name, e.g. ``PostLiked``."""
    full_name: str
    read: Callable[[bytes, int], dict[str, Any]]
    """The body at ``pos`` to the end of ``data``; raises on anything unusual."""
    write: Callable[[bytes, dict[str, Any]], bytes]
    """``head`` + the body of a value ``check_out`` returned."""
    check_in: Check | None
    """The model's constraints on a decoded value (``None``: it has none)."""
    check_out: Check
    """The model's verdict on a producer's mapping: the value to write, or ``InvalidValueError``."""


def compile_record(schema: dict[str, Any], model: type[ContractModel]) -> PlainRecord:
    """The plain reader, writer and checks of one top-level record schema and its model;
    ``NotImplementedError`` names anything in the model the plain path cannot mirror."""
    full = model.avro_name
    checks = _Compiler().record(schema, model, {})
    named: dict[str, Any] = {}
    _kind(schema, named)
    return PlainRecord(
        name=full.rsplit(".", 1)[-1],
        full_name=full,
        read=_compile_reader(schema, named),
        write=_compile_writer(schema, named),
        check_in=checks.inbound,
        check_out=checks.outbound,
    )


def compile_records(schemas: Mapping[str, dict[str, Any]]) -> dict[str, PlainRecord]:
    """Every top-level record of ``schemas`` (full name -> raw ``.avsc``) that has a
    model, by short name."""
    records: dict[str, PlainRecord] = {}
    for full, raw in schemas.items():
        model = RECORD_TYPES.get(full)
        if model is None:
            continue
        record = compile_record(raw, model)
        if record.name in records:
            raise ValueError(f"short name {record.name} is ambiguous")
        records[record.name] = record
    return records
