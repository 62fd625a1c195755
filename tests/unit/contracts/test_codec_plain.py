"""The plain path (``decode_plain``/``encode_plain``) against the model path: the same
values, the same bytes, and the same verdict on every bad input."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Any, ClassVar

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field, ValidationError, model_validator

from services.contracts.codec import (
    DecodeError,
    EncodeError,
    RegistryCodec,
    SingleObjectCodec,
    registry_client,
)
from services.contracts.examples import T0, all_records, domain_events
from services.contracts.models import (
    BonusAccrue,
    ContractModel,
    PostLiked,
    Record,
    UtcMillis,
)
from services.contracts.plain import _UTC_MILLIS, compile_record, long_bytes

SINGLE = SingleObjectCodec()
REGISTRY = RegistryCodec(registry_client("mock://unit-codec-plain"))
CODECS = [SINGLE, REGISTRY]
TOPIC = "unit.codec.plain"
RECORDS = all_records()
ENCODED = [SINGLE.encode(r) for r in RECORDS] + [REGISTRY.encode(r, TOPIC) for r in RECORDS]


def short(record: Record) -> str:
    return record.avro_name.rsplit(".", 1)[-1]


def as_fastavro(value: Any) -> Any:
    """A model dump in the shape fastavro reads: lists, plain str enums."""
    if isinstance(value, list | tuple):
        return [as_fastavro(v) for v in value]
    if isinstance(value, dict):
        return {k: as_fastavro(v) for k, v in value.items()}
    if isinstance(value, Enum):
        return value.value
    return value


def assert_identical(got: Any, want: Any) -> None:
    """Equal and of the same types all the way down (``"vk" == Network.VK`` is not enough)."""
    assert type(got) is type(want), (got, want)
    if isinstance(want, dict):
        assert got.keys() == want.keys()
        for key in want:
            assert_identical(got[key], want[key])
    elif isinstance(want, list):
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            assert_identical(a, b)
    else:
        assert got == want
        if isinstance(want, datetime):
            assert got.tzinfo is want.tzinfo


def model_verdict(codec: Any, data: bytes | None) -> Record | type[DecodeError]:
    try:
        decoded: Record = codec.decode(data, TOPIC)
    except DecodeError:
        return DecodeError
    return decoded


def plain_verdict(codec: Any, data: bytes | None) -> tuple[str, dict[str, Any]] | type[DecodeError]:
    try:
        result: tuple[str, dict[str, Any]] = codec.decode_plain(data, TOPIC)
    except DecodeError:
        return DecodeError
    return result


def assert_same_verdict(codec: Any, data: bytes | None) -> None:
    by_model = model_verdict(codec, data)
    by_plain = plain_verdict(codec, data)
    if by_model is DecodeError or by_plain is DecodeError:
        assert by_model is by_plain, (data, by_model, by_plain)
        return
    assert not isinstance(by_model, type) and not isinstance(by_plain, type)
    name, value = by_plain
    assert name == short(by_model)
    assert_identical(value, as_fastavro(by_model.model_dump()))


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.framing)
@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_plain_values_and_bytes_equal_the_models(codec: Any, record: Record) -> None:
    data = codec.encode(record, TOPIC)
    name, value = codec.decode_plain(data, TOPIC)
    assert name == short(record)
    assert_identical(value, as_fastavro(record.model_dump()))
    assert codec.encode_plain(name, record.model_dump(), TOPIC) == data
    assert codec.encode_plain(name, value, TOPIC) == data


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_plain_values_are_exactly_what_fastavro_reads(record: Record) -> None:
    data = SINGLE.encode(record)
    reference = fastavro.schemaless_reader(
        io.BytesIO(data[10:]), SINGLE.schemas.current[record.avro_name]
    )
    assert_identical(SINGLE.decode_plain(data)[1], reference)


def test_defaults_are_filled_as_the_model_fills_them() -> None:
    accrue = RECORDS[15]
    assert isinstance(accrue, BonusAccrue)
    value = accrue.model_dump(exclude={"replay", "reverses", "budget"})
    assert SINGLE.encode_plain("BonusAccrue", value) == SINGLE.encode(accrue)


def test_times_are_normalised_as_the_model_normalises_them() -> None:
    moscow = timezone(timedelta(hours=3))
    event = domain_events()[4]
    local = datetime(2025, 1, 1, 12, 0, 0, 999_999, tzinfo=moscow)
    value = {**event.model_dump(), "observed_at": local}
    model = PostLiked.model_validate(value)
    assert SINGLE.encode_plain("PostLiked", value) == SINGLE.encode(model)
    decoded = SINGLE.decode_plain(SINGLE.encode_plain("PostLiked", value))[1]
    assert decoded["observed_at"] == datetime(2025, 1, 1, 9, 0, 0, 999_000, tzinfo=UTC)


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC)
    )
)
def test_utc_millis_fixed_points_are_what_the_plain_path_skips(moment: datetime) -> None:
    """The plain path does not call UtcMillis on aware UTC whole-millisecond times:
    for those it must change nothing. Any time must also round-trip to the model's."""
    whole = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert _UTC_MILLIS(whole) == whole and _UTC_MILLIS(whole).tzinfo is UTC
    event = domain_events()[4]
    value = {**event.model_dump(), "snapshot_at": moment, "observed_at": whole}
    data = SINGLE.encode(PostLiked.model_validate(value))
    assert SINGLE.encode_plain("PostLiked", value) == data
    assert_same_verdict(SINGLE, data)


def test_times_at_the_contract_edges_round_trip() -> None:
    event = domain_events()[4]
    for moment in (
        datetime(2000, 1, 1, tzinfo=UTC),
        datetime(2099, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC),
    ):
        model = event.model_copy(update={"observed_at": moment})
        data = SINGLE.encode(model)
        assert SINGLE.decode_plain(data)[1]["observed_at"] == moment
        assert SINGLE.encode_plain("PostLiked", model.model_dump()) == data


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1969, 7, 20, 20, 17, 40, 123_000, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC),
        datetime(2100, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, tzinfo=UTC),
    ],
)
def test_times_outside_the_contract_range_are_refused_both_ways(moment: datetime) -> None:
    """A ``PostLiked`` dated 9999-12-31 is bad data: no producer of ours writes it, and
    one written by someone else's fastavro is a decode error on both paths (so the
    consumer dead-letters it instead of overflowing in date arithmetic)."""
    value = {**domain_events()[4].model_dump(), "observed_at": moment}
    with pytest.raises(ValidationError):
        PostLiked.model_validate(value)
    with pytest.raises(ValueError, match="outside"):
        SINGLE.encode_plain("PostLiked", value)
    name = "social_loyalty.events.PostLiked"
    out = io.BytesIO()
    out.write(b"\xc3\x01" + SINGLE.schemas.fingerprints[name])
    fastavro.schemaless_writer(out, SINGLE.schemas.current[name], {**value, "network": "vk"})
    forged = out.getvalue()
    assert_same_verdict(SINGLE, forged)
    with pytest.raises(DecodeError, match="outside"):
        SINGLE.decode_plain(forged)


def test_an_old_writer_schema_is_read_through_fastavro_with_defaults() -> None:
    accrue = RECORDS[15]
    assert isinstance(accrue, BonusAccrue)
    (old,) = [
        w for w in SINGLE.schemas.writers.values() if w.version == "v1" and "Accrue" in w.name
    ]
    out = io.BytesIO()
    out.write(b"\xc3\x01" + next(fp for fp, w in SINGLE.schemas.writers.items() if w is old))
    fastavro.schemaless_writer(out, old.parsed, accrue.to_avro())
    name, value = SINGLE.decode_plain(out.getvalue(), expected=frozenset({"BonusAccrue"}))
    assert name == "BonusAccrue" and value["budget"] is None
    assert_same_verdict(SINGLE, out.getvalue())


# ---------------------------------------------------------------------- expected


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.framing)
def test_expected_names_reject_a_record_on_the_wrong_topic(codec: Any) -> None:
    data = codec.encode(domain_events()[4], TOPIC)
    with pytest.raises(DecodeError, match="got a PostLiked record where BonusAccrue"):
        codec.decode_plain(data, TOPIC, frozenset({"BonusAccrue", "BonusDeduct"}))
    with pytest.raises(DecodeError, match="where BonusAccrue"):  # the fastavro path too
        codec.decode_plain(data + b"\x00", TOPIC, frozenset({"BonusAccrue"}))
    assert codec.decode_plain(data, TOPIC, frozenset({"PostLiked"}))[0] == "PostLiked"
    assert codec.decode_plain(data, TOPIC, None)[0] == "PostLiked"


# ------------------------------------------------------------------- bad inputs


def _body(record: Record, **changes: Any) -> bytes:
    """Single-object bytes of ``record`` with ``changes``, written by fastavro alone
    (valid Avro, whatever the model thinks of the values)."""
    out = io.BytesIO()
    out.write(b"\xc3\x01" + SINGLE.schemas.fingerprints[record.avro_name])
    fastavro.schemaless_writer(
        out, SINGLE.schemas.current[record.avro_name], {**record.to_avro(), **changes}
    )
    return out.getvalue()


def _hand_made() -> list[bytes | None]:
    accrue, liked = RECORDS[15], domain_events()[4]
    good = SINGLE.encode(liked)
    head = good[:10]
    event_id = long_bytes(len(liked.event_id)) + liked.event_id.encode()
    rest_after_network = good[10 + len(event_id) + 1 :]
    return [
        _body(accrue, points=0),
        _body(accrue, points=-5),
        _body(accrue, points=1),
        _body(accrue, budget=0),
        _body(accrue, budget=1),
        _body(RECORDS[16], points=0),
        head + event_id + b"\x01" + rest_after_network,  # enum index -1: fastavro's 'apple'
        head + event_id + b"\x06" + rest_after_network,  # enum index 3: none
        head + event_id + b"\x80\x00" + rest_after_network,  # non-canonical varint 0
        head + event_id + b"\xff" * 10 + b"\x01" + rest_after_network,  # 11-byte varint
        # group_id as a 10-byte varint past 64 bits: fastavro wraps it to -2**63
        head + event_id + b"\x00" + b"\xff" * 9 + b"\x7f" + rest_after_network[2:],
        head + long_bytes(-3) + good[11:],  # negative string length
        head + long_bytes(len(liked.event_id)) + b"\xff" * len(liked.event_id) + good[11 + 32 :],
        _body(accrue)[:-1] + b"\x04",  # union branch 2 of [null, long]
        _body(accrue).replace(b"\x00\x00", b"\x00\x02", 1),  # a bool byte 2
        good[:2] + b"\x00" * 8 + good[10:],  # unknown fingerprint
        b"\xc3\x02" + good[2:],  # wrong magic
        good[:9],  # truncated header
        good + b"\x00",  # trailing byte
        None,
        b"",
        b"\x00\x00\x00\x00",
        b"\x00\x7f\xff\xff\xff\x02",
    ]


@pytest.mark.parametrize("index", range(len(_hand_made())))
def test_hand_made_bad_and_odd_inputs_get_the_same_verdict(index: int) -> None:
    data = _hand_made()[index]
    codec = REGISTRY if data is not None and data[:1] == b"\x00" else SINGLE
    assert_same_verdict(codec, data)


def test_invalid_values_in_valid_avro_are_refused_on_both_paths() -> None:
    """The table above must contain real refusals, or the test proves nothing."""
    data = _body(RECORDS[15], points=0)
    with pytest.raises(DecodeError, match=r"BonusAccrue record fails validation.*greater than 0"):
        SINGLE.decode_plain(data)
    with pytest.raises(DecodeError, match="fails validation"):
        SINGLE.decode(data)


def _mutations() -> st.SearchStrategy[bytes]:
    valid = st.sampled_from(ENCODED + [d for d in _hand_made() if d])
    truncated = st.builds(lambda d, n: d[: n % len(d)], valid, st.integers(0, 10_000))
    extended = st.builds(lambda d, tail: d + tail, valid, st.binary(min_size=1, max_size=8))
    flipped = st.builds(
        lambda d, i, b: d[: i % len(d)] + bytes([b]) + d[i % len(d) + 1 :],
        valid, st.integers(0, 10_000), st.integers(0, 255),
    )  # fmt: skip
    header_then_noise = st.builds(lambda d, noise: d[:10] + noise, valid, st.binary(max_size=64))
    return st.one_of(valid, truncated, extended, flipped, header_then_noise, st.binary(max_size=64))


@settings(max_examples=3_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_mutations())
def test_fuzzed_bytes_get_the_same_verdict_on_both_paths(data: bytes) -> None:
    assert_same_verdict(REGISTRY if data[:1] == b"\x00" else SINGLE, data)


@pytest.mark.parametrize("index", range(len(ENCODED)))
def test_every_truncation_gets_the_same_verdict(index: int) -> None:
    data = ENCODED[index]
    codec = REGISTRY if data[:1] == b"\x00" else SINGLE
    for cut in range(len(data) + 1):
        assert_same_verdict(codec, data[:cut])


# ----------------------------------------------------------------- encode checks

_INT_VALUES = [0, 1, -1, 5, 2**31, 2**63 - 1, -(2**63)]
_JUNK: list[Any] = [None, "5", 5.0, True, b"5", [], {}, datetime(2025, 1, 1), "vk", "zz"]
_ACCRUE = RECORDS[15].model_dump()
_LIKED = domain_events()[4].model_dump()


def _fields(
    base: dict[str, Any], values: dict[str, list[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    missing = object()
    choices = {
        key: st.sampled_from([base[key], missing, *values.get(key, []), *_JUNK]) for key in base
    }
    extra = st.sampled_from([{}, {"unknown": 1}])
    return st.builds(
        lambda fields, more: {k: v for k, v in fields.items() if v is not missing} | more,
        st.fixed_dictionaries(choices),
        extra,
    )


_STRATEGIES = {
    "BonusAccrue": _fields(
        _ACCRUE,
        {
            "points": _INT_VALUES,
            "budget": _INT_VALUES,
            "reverses": ["c-0"],
            "replay": [False],
            "issued_at": [T0.astimezone(timezone(timedelta(hours=-5))), T0 + timedelta(0, 0, 7)],
        },
    ),
    "PostLiked": _fields(
        _LIKED,
        {"network": ["ok", "apple", "VK"], "post_id": _INT_VALUES, "group_id": _INT_VALUES},
    ),
}
_MODELS: dict[str, type[ContractModel]] = {"BonusAccrue": BonusAccrue, "PostLiked": PostLiked}


def _model_bytes(name: str, value: dict[str, Any]) -> bytes | None:
    try:
        return SINGLE.encode(_MODELS[name].model_validate(value))  # type: ignore[arg-type]
    except (ValidationError, ValueError, OverflowError):
        return None


@settings(max_examples=1_500, deadline=None)
@given(
    st.sampled_from(sorted(_STRATEGIES)).flatmap(lambda n: st.tuples(st.just(n), _STRATEGIES[n]))
)
def test_encode_plain_writes_only_what_a_model_writes_and_the_same_bytes(
    case: tuple[str, dict[str, Any]],
) -> None:
    name, value = case
    try:
        data = SINGLE.encode_plain(name, value)
    except EncodeError as exc:
        assert exc.reason
        plain_types = all(type(v) is type(_ACCRUE.get(k, _LIKED.get(k))) for k, v in value.items())
        if plain_types and set(value) >= set(_MODELS[name].model_fields) - {"replay"}:
            # values of the plain types: refused by the plain path only if the model
            # refuses them too (or Avro cannot hold them)
            assert _model_bytes(name, value) is None, (value, exc.reason)
        return
    assert _model_bytes(name, value) == data
    assert REGISTRY.encode_plain(name, value, TOPIC) == REGISTRY.encode(
        _MODELS[name].model_validate(value),  # type: ignore[arg-type]
        TOPIC,
    )


def test_encode_plain_names_what_is_wrong() -> None:
    with pytest.raises(EncodeError, match="greater than 0"):
        SINGLE.encode_plain("BonusAccrue", {**_ACCRUE, "points": 0})
    with pytest.raises(EncodeError, match="naive"):
        SINGLE.encode_plain("PostLiked", {**_LIKED, "observed_at": datetime(2025, 1, 1)})
    with pytest.raises(EncodeError, match="required"):
        SINGLE.encode_plain("PostLiked", {k: v for k, v in _LIKED.items() if k != "post_id"})
    with pytest.raises(EncodeError, match="unknown fields"):
        SINGLE.encode_plain("PostLiked", {**_LIKED, "likes": 1})
    with pytest.raises(EncodeError, match="no contract record"):
        SINGLE.encode_plain("social_loyalty.events.PostLiked", _LIKED)
    with pytest.raises(EncodeError, match="social_user_id: must match"):
        SINGLE.encode_plain("PostLiked", {**_LIKED, "social_user_id": "\ud800"})
    with pytest.raises(EncodeError, match="reason: must match"):
        SINGLE.encode_plain("BonusAccrue", {**_ACCRUE, "reason": "\ud800"})
    with pytest.raises(EncodeError, match="member_id: must match"):
        SINGLE.encode_plain("BonusAccrue", {**_ACCRUE, "member_id": "ni\x00na"})
    with pytest.raises(EncodeError, match="less than or equal to 1000000000"):
        SINGLE.encode_plain("BonusAccrue", {**_ACCRUE, "points": 10**12})


# ------------------------------------------------- the checks come from the models


_SCHEMA = {
    "type": "record",
    "name": "Probe",
    "namespace": "tests",
    "fields": [
        {"name": "code", "type": "string"},
        {"name": "count", "type": "long"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}


class _Probe(ContractModel):
    avro_name: ClassVar[str] = "tests.Probe"

    code: str = Field(min_length=2, max_length=4, pattern="^[a-z]+$")
    count: int = Field(ge=1, le=10, multiple_of=3)
    at: UtcMillis


@pytest.mark.parametrize(
    ("code", "count", "accepted"),
    [
        ("abc", 3, True),
        ("a", 3, False),
        ("abcde", 3, False),
        ("ab1", 3, False),
        ("abc", 0, False),
        ("abc", 12, False),
        ("abc", 4, False),
        ("abcd", 9, True),
        ("abc\n", 3, False),  # Python's re lets $ match before a newline; pydantic does not
    ],
)
def test_field_constraints_are_read_from_the_model(code: str, count: int, accepted: bool) -> None:
    record = compile_record(_SCHEMA, _Probe)
    value = {"code": code, "count": count, "at": T0}
    try:
        _Probe.model_validate(value)
    except ValidationError:
        model_accepts = False
    else:
        model_accepts = True
    assert model_accepts is accepted
    try:
        body = record.write(b"", record.check_out(value))
    except ValueError:
        assert not accepted
        return
    assert accepted
    decoded = record.read(body, 0)
    assert record.check_in is not None and record.check_in(decoded) == value


class _Guarded(ContractModel):
    avro_name: ClassVar[str] = "tests.Probe"

    code: str
    count: int
    at: UtcMillis

    @model_validator(mode="after")
    def _count_matches_code(self) -> _Guarded:
        if self.count != len(self.code):
            raise ValueError("count must be len(code)")
        return self


class _Strict(ContractModel):
    avro_name: ClassVar[str] = "tests.Probe"

    code: str = Field(strict=True)
    count: int
    at: UtcMillis


@pytest.mark.parametrize("model", [_Guarded, _Strict], ids=lambda m: m.__name__)
def test_a_rule_the_plain_path_cannot_mirror_stops_it_from_being_built(
    model: type[ContractModel],
) -> None:
    with pytest.raises(NotImplementedError):
        compile_record(_SCHEMA, model)
