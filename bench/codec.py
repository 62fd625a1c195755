"""Encode + decode throughput of domain events in each framing, by models and plain.

``model`` rows include building the pydantic model, because that is what a consumer of
``decode`` pays. ``plain`` rows are ``encode_plain``/``decode_plain`` (the stream hot
path: dicts, same checks, same bytes); ``plain, cold`` cycles through 20,000 events
that share no timestamp, so the plain reader's timestamp cache never hits (the worst
case; a detector run's events share their snapshot times). The registry framing uses
confluent-kafka's in-process ``mock://`` registry, so the figure is the serdes cost
without network (a real registry is only asked once per schema id; the client caches
it); its plain encode still goes through confluent-kafka's serializer."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from services.contracts.codec import Codec, RegistryCodec, SingleObjectCodec, registry_client
from services.contracts.examples import domain_events
from services.contracts.models import DomainEvent, PostLiked

TOPIC = "bench.codec"
COLD_EVENTS = 20_000


def _rate(action: Callable[[], object], seconds: float = 1.0) -> float:
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            action()
        count += 200
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def _model_row(codec: Codec, event: DomainEvent) -> dict[str, object]:
    data = codec.encode(event, TOPIC)
    assert codec.decode(data, TOPIC) == event

    def encode() -> bytes:
        return codec.encode(event, TOPIC)

    def decode() -> object:
        return codec.decode(data, TOPIC)

    def round_trip() -> object:
        return codec.decode(codec.encode(event, TOPIC), TOPIC)

    return {
        "record": type(event).__name__,
        "path": "model",
        "framing": codec.framing,
        "bytes": len(data),
        "encode/s": _rate(encode),
        "decode/s": _rate(decode),
        "round trip/s": _rate(round_trip),
    }


def _plain_row(codec: Codec, events: list[DomainEvent], path: str) -> dict[str, object]:
    name = events[0].avro_name.rsplit(".", 1)[-1]
    expected = frozenset({name})
    values = [event.model_dump() for event in events]
    datas = [codec.encode(event, TOPIC) for event in events]
    for value, data in zip(values[:100], datas, strict=False):
        assert codec.encode_plain(name, value, TOPIC) == data
        assert codec.decode_plain(data, TOPIC, expected)[0] == name
    next_value = itertools.cycle(values).__next__
    next_data = itertools.cycle(datas).__next__

    def encode() -> bytes:
        return codec.encode_plain(name, next_value(), TOPIC)

    def decode() -> tuple[str, dict[str, Any]]:
        return codec.decode_plain(next_data(), TOPIC, expected)

    def round_trip() -> tuple[str, dict[str, Any]]:
        return codec.decode_plain(codec.encode_plain(name, next_value(), TOPIC), TOPIC, expected)

    return {
        "record": name,
        "path": path,
        "framing": codec.framing,
        "bytes": len(datas[0]),
        "encode/s": _rate(encode),
        "decode/s": _rate(decode),
        "round trip/s": _rate(round_trip),
    }


def _cold_post_likes(like: PostLiked) -> list[DomainEvent]:
    """Likes of which no two share an id or a timestamp."""
    return [
        PostLiked.build(
            network=like.network,
            group_id=like.group_id,
            social_user_id=str(100_000 + i),
            post_id=like.post_id + i,
            observed_at=like.observed_at + timedelta(milliseconds=3 * i),
            previous_snapshot_at=like.previous_snapshot_at + timedelta(milliseconds=3 * i + 1),
            snapshot_at=like.snapshot_at + timedelta(milliseconds=3 * i + 2),
        )
        for i in range(COLD_EVENTS)
    ]


def run() -> list[dict[str, object]]:
    events = domain_events()
    comment, like = events[6], events[4]  # CommentPosted: the widest event
    assert isinstance(like, PostLiked)
    single = SingleObjectCodec()
    registry = RegistryCodec(registry_client("mock://bench"))
    cold = _cold_post_likes(like)
    return [
        _model_row(single, comment),
        _model_row(registry, comment),
        _model_row(single, like),
        _plain_row(single, [like], "plain"),
        _plain_row(single, cold, "plain, cold"),
        _plain_row(registry, [like], "plain"),
    ]
