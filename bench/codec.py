"""Encode + decode throughput of one domain event in each framing.

Decode includes building the pydantic model, because that is what a consumer pays.
The registry framing uses confluent-kafka's in-process ``mock://`` registry, so the
figure is the serdes cost without network (a real registry is only asked once per
schema id; the client caches it)."""

from __future__ import annotations

import time
from collections.abc import Callable

from services.contracts.codec import Codec, RegistryCodec, SingleObjectCodec, registry_client
from services.contracts.examples import domain_events

TOPIC = "bench.codec"


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


def run() -> list[dict[str, object]]:
    event = domain_events()[6]  # CommentPosted: the widest event
    codecs: list[Codec] = [SingleObjectCodec(), RegistryCodec(registry_client("mock://bench"))]
    rows: list[dict[str, object]] = []
    for codec in codecs:
        data = codec.encode(event, TOPIC)
        assert codec.decode(data, TOPIC) == event

        def encode(codec: Codec = codec) -> bytes:
            return codec.encode(event, TOPIC)

        def decode(codec: Codec = codec, data: bytes = data) -> object:
            return codec.decode(data, TOPIC)

        def round_trip(codec: Codec = codec) -> object:
            return codec.decode(codec.encode(event, TOPIC), TOPIC)

        rows.append(
            {
                "framing": codec.framing,
                "bytes": len(data),
                "encode/s": _rate(encode),
                "decode/s": _rate(decode),
                "round trip/s": _rate(round_trip),
            }
        )
    return rows
