"""The codec in both framings, without a broker: round trips, header layout, and
the promise that bad bytes raise DecodeError and nothing else."""

from __future__ import annotations

import io
import json
import struct
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.contracts.codec import (
    DecodeError,
    RegistryCodec,
    SingleObjectCodec,
    make_codec,
    registry_client,
)
from services.contracts.examples import T0, all_records, domain_events
from services.contracts.models import (
    COMMAND_TYPES,
    RECORD_TYPES,
    BonusAccrue,
    DeadLetter,
    MembersChunk,
    PostLiked,
    Record,
)
from services.contracts.schemas import SCHEMA_DIR
from services.runtime.settings import KafkaSettings

SINGLE = SingleObjectCodec()
REGISTRY = RegistryCodec(registry_client("mock://unit-codec"))
TOPIC = "unit.codec"
ENCODED = [SINGLE.encode(r) for r in all_records()] + [
    REGISTRY.encode(r, TOPIC) for r in all_records()
]


def test_examples_cover_every_record_type() -> None:
    assert {type(r).avro_name for r in all_records()} == set(RECORD_TYPES)


@pytest.mark.parametrize("record", all_records(), ids=lambda r: type(r).__name__)
def test_round_trip_in_both_framings(record: Record) -> None:
    assert SINGLE.decode(SINGLE.encode(record)) == record
    assert REGISTRY.decode(REGISTRY.encode(record, TOPIC), TOPIC) == record


def test_single_object_header_is_the_avro_spec_layout() -> None:
    """C3 01, then the CRC-64-AVRO fingerprint as 8 little-endian bytes (computed here
    independently of the codec, by the algorithm in the Avro spec), then the body."""
    event = domain_events()[4]
    data = SINGLE.encode(event)
    schema = fastavro.parse_schema(json.loads((SCHEMA_DIR / f"{event.avro_name}.avsc").read_text()))
    canonical = fastavro.schema.to_parsing_canonical_form(schema).encode()
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in canonical:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == struct.pack("<Q", fp)
    body = fastavro.schemaless_reader(io.BytesIO(data[10:]), schema)
    assert isinstance(body, dict) and body["event_id"] == event.event_id


def test_registry_framing_is_the_confluent_wire_format() -> None:
    data = REGISTRY.encode(domain_events()[0], TOPIC)
    schema_id = struct.unpack(">I", data[1:5])[0]
    assert data[0] == 0
    registered = REGISTRY.client.get_schema(schema_id)
    assert json.loads(registered.schema_str)["name"] == "ProfileLinked"
    subjects = REGISTRY.client.get_subjects()
    assert f"{TOPIC}-social_loyalty.events.ProfileLinked" in subjects  # TopicRecordNameStrategy


def test_a_registry_reader_also_reads_single_object_messages() -> None:
    event = domain_events()[2]
    assert REGISTRY.decode(SINGLE.encode(event), TOPIC) == event
    with pytest.raises(DecodeError, match="no schema registry"):
        SINGLE.decode(REGISTRY.encode(event, TOPIC))


def test_make_codec_follows_the_settings() -> None:
    assert make_codec(KafkaSettings(schema_registry_url=None)).framing == "single-object"
    assert make_codec(KafkaSettings(schema_registry_url="mock://settings")).framing == "confluent"


def test_times_come_back_as_aware_utc_millis() -> None:
    moscow = timezone(timedelta(hours=3))
    event = PostLiked.build(
        network="vk", group_id=1, social_user_id="2", post_id=3,
        observed_at=datetime(2025, 1, 1, 12, 0, 0, 999_999, tzinfo=moscow),
        previous_snapshot_at=T0, snapshot_at=T0,
    )  # fmt: skip
    decoded = SINGLE.decode(SINGLE.encode(event))
    assert decoded.observed_at == datetime(2025, 1, 1, 9, 0, 0, 999_000, tzinfo=UTC)  # type: ignore[union-attr]
    assert decoded.observed_at.tzinfo is UTC  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="naive"):
        PostLiked(**{**event.model_dump(), "observed_at": datetime(2025, 1, 1)})


def test_expected_types_reject_a_record_on_the_wrong_topic() -> None:
    data = SINGLE.encode(domain_events()[4])
    with pytest.raises(DecodeError, match="where BonusAccrue, BonusDeduct"):
        SINGLE.decode(
            data, expected=(BonusAccrue, COMMAND_TYPES["social_loyalty.commands.BonusDeduct"])
        )
    assert isinstance(SINGLE.decode(data, expected=(PostLiked,)), PostLiked)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (None, "tombstone"),
        (b"", "wrong magic"),
        (b"\x4f\x62\x6a\x01", "wrong magic"),
        (b"\xc3\x01\x00\x01", "truncated single-object header"),
        (b"\xc3\x01" + b"\x00" * 8 + b"\x02", "unknown schema fingerprint"),
        (SINGLE.encode(domain_events()[0])[:-3], "body is not a valid"),
        (SINGLE.encode(domain_events()[0]) + b"\x00", "1 trailing bytes"),
        (b"\x00\x00\x00", "truncated Confluent header"),
        (b"\x00\x7f\xff\xff\xff\x02", "schema id 2147483647 not usable"),
    ],
)
def test_each_kind_of_bad_input_has_its_reason(data: bytes | None, reason: str) -> None:
    codec = REGISTRY if data and data[:1] == b"\x00" else SINGLE
    with pytest.raises(DecodeError, match=reason):
        codec.decode(data, TOPIC)


def test_invalid_values_in_valid_avro_are_decode_errors_too() -> None:
    """A BonusAccrue with points=0 is valid Avro but not a valid command."""
    record = all_records()[15]
    assert isinstance(record, BonusAccrue)
    schema = SINGLE.schemas.current[record.avro_name]
    buffer = io.BytesIO()
    buffer.write(b"\xc3\x01" + SINGLE.schemas.fingerprints[record.avro_name])
    fastavro.schemaless_writer(buffer, schema, {**record.to_avro(), "points": 0})
    with pytest.raises(DecodeError, match="fails validation"):
        SINGLE.decode(buffer.getvalue())


def _mutations() -> st.SearchStrategy[bytes]:
    valid = st.sampled_from(ENCODED)
    truncated = st.builds(lambda d, n: d[: n % len(d)], valid, st.integers(0, 10_000))
    extended = st.builds(lambda d, tail: d + tail, valid, st.binary(min_size=1, max_size=8))
    flipped = st.builds(
        lambda d, i, b: d[: i % len(d)] + bytes([b]) + d[i % len(d) + 1 :],
        valid, st.integers(0, 10_000), st.integers(0, 255),
    )  # fmt: skip
    header_then_noise = st.builds(lambda d, noise: d[:10] + noise, valid, st.binary(max_size=64))
    return st.one_of(st.binary(max_size=64), truncated, extended, flipped, header_then_noise)


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_mutations())
def test_fuzzed_bytes_raise_only_decode_error(data: bytes) -> None:
    codec = REGISTRY if data[:1] == b"\x00" else SINGLE
    try:
        decoded: Any = codec.decode(data, TOPIC)
    except DecodeError as exc:
        assert exc.reason
        return
    # Some mutations still spell a valid record (a flipped byte inside a string):
    # then it must be a real, re-encodable record.
    assert type(decoded).avro_name in RECORD_TYPES
    assert isinstance(codec.encode(decoded, TOPIC), bytes)


def test_members_chunk_keeps_large_id_arrays() -> None:
    chunk = MembersChunk(
        network="vk", group_id=1, run_id="r", snapshot_at=T0, baseline_at=T0,
        bucket=0, bucket_count=1, member_ids=tuple(range(2, 200_002, 2)),
    )  # fmt: skip
    assert SINGLE.decode(SINGLE.encode(chunk)) == chunk


def test_a_decode_error_becomes_a_dead_letter_that_round_trips() -> None:
    bad = b"\xc3\x01" + b"\xff" * 8
    with pytest.raises(DecodeError) as caught:
        SINGLE.decode(bad)
    letter = DeadLetter.for_error(
        caught.value, topic="social.events", partition=1, offset=9, key=b"vk:1", value=bad,
        consumer_group="rules", failed_at=T0,
    )  # fmt: skip
    assert letter.error_class == "services.contracts.codec.DecodeError"
    assert letter.reason.startswith("unknown schema fingerprint ffffffffffffffff")
    assert SINGLE.decode(SINGLE.encode(letter)) == letter


def _strict_outcome(data: bytes) -> object:
    """What the strict reader alone makes of a single-object message (the reference)."""
    from services.contracts.codec import _SO_HEADER, _finish, _StrictReader

    writer = SINGLE.schemas.writer_for(data[2:_SO_HEADER])
    assert writer is not None
    buffer = _StrictReader(data)
    buffer.seek(_SO_HEADER)
    try:
        value = fastavro.schemaless_reader(
            buffer, writer.parsed, SINGLE.schemas.current[writer.name]
        )
        return _finish(buffer, writer.name, value, len(data), None)
    except Exception as exc:  # any failure is compared by kind only
        return type(exc)


@pytest.mark.parametrize("index", range(len(ENCODED)))
def test_the_fast_path_decodes_exactly_what_the_strict_reader_decodes(index: int) -> None:
    data = ENCODED[index]
    if data[:2] != b"\xc3\x01":
        return  # registry framing has no fast path
    for cut in range(10, len(data) + 1):  # every truncation of the body, and the whole
        piece = data[:cut]
        try:
            got: object = SINGLE.decode(piece, TOPIC)
        except DecodeError:
            got = DecodeError
        reference = _strict_outcome(piece)
        if isinstance(reference, type):
            assert got is DecodeError, (cut, got)
        else:
            assert got == reference, cut
