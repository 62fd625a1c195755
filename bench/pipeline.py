"""Stream benchmark: our per-message work vs a raw confluent-kafka consumer, same topic and run.

It fills a fresh topic with ``BENCH_EVENTS`` (default 100,000) encoded ``PostLiked``
events, then reads the whole topic several times with the same consumer settings:
raw (no decoding: the ceiling), decoding with the contract codec, and decoding plus
the rules engine evaluating the demo offers for every event. Each row's ratio is
against the raw read measured in the same run, so a noisy, shared machine moves
both sides together. Run: ``./run bench pipeline``.
"""

from __future__ import annotations

import os
import resource
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from confluent_kafka import Message

from bench._stream import timed_read
from services.contracts import PostLiked, make_codec
from services.contracts.models import Network
from services.contracts.topics import EVENTS, TopicSettings, catalog, ensure
from services.rules.engine import MemberState, RuleEvent, evaluate_all
from services.rules.offers import EventType, load_offer_dir
from services.runtime import kafka
from services.runtime.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[1]
EVENTS_TOTAL = int(os.environ.get("BENCH_EVENTS", "100000"))
USERS = 10_000


def _fill(settings: KafkaSettings, topic: str) -> float:
    codec = make_codec(settings)
    producer = kafka.producer(settings, "bench-fill", extra={"linger.ms": 50})
    base = datetime(2026, 11, 1, tzinfo=UTC)
    started = time.perf_counter()
    for n in range(EVENTS_TOTAL):
        user = n % USERS
        event = PostLiked.build(
            network=Network.VK,
            social_user_id=str(user),
            group_id=1001,
            post_id=n // USERS + 1,
            observed_at=base + timedelta(seconds=n),
            previous_snapshot_at=base + timedelta(seconds=n - 60),
            snapshot_at=base + timedelta(seconds=n),
        )
        while True:
            try:
                producer.produce(topic, codec.encode(event, topic), key=f"vk:{user}".encode())
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(60)
    return time.perf_counter() - started


def run() -> list[dict[str, object]]:
    settings = KafkaSettings()
    topics = TopicSettings(prefix=f"bench.{uuid.uuid4().hex[:8]}.", partitions=6)
    spec = next(s for s in catalog(topics) if s.name == topics.name(EVENTS))
    admin = kafka.admin(settings, "bench")
    ensure(admin, [spec], fix=False)
    topic = spec.name
    codec = make_codec(settings)
    offers = load_offer_dir(ROOT / "deploy" / "demo" / "offers")
    tz = ZoneInfo("Europe/Moscow")
    linked_at = datetime(2026, 1, 1, tzinfo=UTC)
    states: dict[str, MemberState] = {}

    def decode(message: Message) -> object:
        return codec.decode(message.value(), topic)

    def evaluate(message: Message) -> object:
        event = codec.decode(message.value(), topic)
        assert isinstance(event, PostLiked)
        member = f"m{event.social_user_id}"
        result = evaluate_all(
            offers,
            states.get(member, MemberState()),
            RuleEvent(
                event_id=event.event_id,
                type=EventType.POST_LIKED,
                network=event.network.value,
                social_user_id=event.social_user_id,
                member_id=member,
                occurred_at=event.snapshot_at,
                group_id=str(event.group_id),
                post_id=str(event.post_id),
                linked_at=linked_at,
            ),
            tz=tz,
        )
        states[member] = result.state
        return result.commands

    def read(work: Callable[[Message], object]) -> float:
        return timed_read(settings, topic, EVENTS_TOTAL, work)

    try:
        fill_s = _fill(settings, topic)
        raw_s = timed_read(settings, topic, EVENTS_TOTAL)
        rows: list[dict[str, object]] = [
            {"stage": "produce (encode + send)", "seconds": fill_s},
            {"stage": "raw confluent-kafka read", "seconds": raw_s},
            {
                "stage": "read + Avro decode",
                "seconds": timed_read(settings, topic, EVENTS_TOTAL, decode),
            },
            {
                "stage": "read + decode + rules engine",
                "seconds": timed_read(settings, topic, EVENTS_TOTAL, evaluate),
            },
        ]
    finally:
        admin.delete_topics([topic])
    for row in rows:
        seconds = float(str(row["seconds"]))
        row["messages/s"] = f"{EVENTS_TOTAL / seconds:,.0f}"
        row["vs raw read"] = f"{raw_s / seconds:.2f}x"
        row["seconds"] = f"{seconds:.2f}"
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(
        {
            "stage": "peak RSS of this process",
            "seconds": "",
            "messages/s": f"{peak_mib:.0f} MiB",
            "vs raw read": "",
        }
    )
    return rows
