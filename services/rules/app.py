"""The rules worker: ``social.events`` in, commands out (Faust).

Two agents, so member state is owned by exactly one worker:

1. ``resolve_links`` consumes ``social.events`` (keyed ``network:social_user_id``,
   read_committed). It keeps the ``links`` table (same key, so co-partitioned
   with the events: a user's link and activity are in one partition, in
   order), drops the activity of unlinked users (kept in the log, earns
   nothing), and forwards each linked event, resolved to its member, to the
   repartition topic ``<app id>.by-member`` keyed by ``member_id``.
   Undecodable messages go to the dead-letter topic; the stream keeps going.
2. ``evaluate_members`` consumes the repartition topic, keeps the ``members``
   table (engine state plus the recently processed events and their commands),
   calls the pure ``process`` for every active offer and sends the commands to
   ``loyalty.commands.*`` keyed by ``member_id``.

Crash consistency (docs/replay.md): table changelog writes, command sends and
the source offset commit are not one atomic step. Faust flushes its producer
(acks=all) before it commits offsets, and that flush also flushes the
librdkafka producer the commands and the by-member hop go through
(``DirectSender``), so nothing is
committed before what it caused is acknowledged; a redelivered event is then
recognised by the member record and re-emits the commands it produced the
first time (same ids).

Offers come from PostgreSQL and are reloaded, without a restart, whenever the
store's signature changes (checked every ``RULES_RELOAD_INTERVAL_S``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from prometheus_client import Counter, Gauge, Histogram

from services.contracts.codec import Codec, make_codec
from services.contracts.models import EVENT_TYPES, DeadLetter, DomainEvent
from services.contracts.topics import DEADLETTER, EVENTS
from services.rules.offers import Offer
from services.rules.processing import (
    COMMAND_TOPIC,
    Link,
    MemberRecord,
    command_topic,
    decode_rule_event,
    encode_rule_event,
    link_key,
    process,
    resolve,
)
from services.rules.settings import RulesSettings
from services.rules.store import OfferStore
from services.runtime import kafka
from services.runtime.faust import ReadCommittedApp, ReadCommittedTransport, broker_credentials
from services.runtime.inorder import InOrder, Record

log = logging.getLogger(__name__)

EVENTS_EVALUATED = Counter(
    "social_loyalty_rules_events_evaluated_total", "Resolved member events run through the offers."
)
EVENTS_REDELIVERED = Counter(
    "social_loyalty_rules_events_redelivered_total",
    "Events seen again; their recorded commands re-sent.",
)
EVENTS_UNLINKED = Counter(
    "social_loyalty_rules_events_unlinked_total",
    "Events of social users with no linked member (no earning).",
)
EVENTS_DEAD = Counter(
    "social_loyalty_rules_events_deadlettered_total", "Undecodable events sent to dead letter."
)
EVENTS_SKIPPED_BY_FAUST = Counter(
    "social_loyalty_rules_faust_skipped_records_total",
    "Records Faust did not deliver in order that the worker read itself.",
)
COMMANDS_EMITTED = Counter(
    "social_loyalty_rules_commands_emitted_total", "Commands sent, by contract type.", ["type"]
)
EVALUATION_SECONDS = Histogram(
    "social_loyalty_rules_evaluation_seconds",
    "Time to evaluate one event against every active offer.",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
)
OFFERS_ACTIVE = Gauge("social_loyalty_rules_offers_active", "Active offers the worker evaluates.")


POLL_EVERY = 500
"""Sends between two ``poll(0)`` calls of the direct producer (each one runs the
delivery callbacks that arrived; far below librdkafka's 100,000-message queue)."""


class DirectSender:
    """Commands and the by-member hop go out through librdkafka, not Faust's
    pure-Python producer.

    A like causes three or four such messages; through aiokafka each one cost
    more CPU than evaluating the event. ``produce`` here only enqueues (C), and
    ``flush`` is awaited by the Faust producer's own ``flush``, which Faust runs
    before every offset commit: an offset is still never committed before the
    commands its event caused are acknowledged (docs/replay.md, "Crash
    consistency"). ``murmur2_random`` is the partitioner aiokafka (and Java)
    use, so a member's commands land in the same partition as before.
    """

    def __init__(self, settings: RulesSettings) -> None:
        self._producer = kafka.producer(
            settings.kafka, f"{settings.app_id}.direct", extra={"partitioner": "murmur2_random"}
        )
        self.failures: list[str] = []
        self._unpolled = 0

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failures.append(str(err))

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._delivered)
                break
            except BufferError:  # librdkafka's queue is full: let it drain
                self._producer.poll(0.05)
        self._unpolled += 1
        if self._unpolled >= POLL_EVERY:  # delivery reports now and then; flush serves the rest
            self._unpolled = 0
            self._producer.poll(0)

    async def flush(self) -> None:
        """Wait for every record's acknowledgement; raise (the worker dies, the
        uncommitted events are redelivered and re-emit) if any was not delivered."""
        remaining = await asyncio.to_thread(self._producer.flush, 60)
        if remaining or self.failures:
            failures, self.failures = self.failures, []
            raise RuntimeError(f"{remaining} records undelivered; failures: {failures[:3]}")


class _Producer(faust_aiokafka.Producer):
    async def flush(self) -> None:
        await super().flush()
        sender: DirectSender | None = getattr(self.app, "rules_commands", None)
        if sender is not None:
            await sender.flush()


class _Transport(ReadCommittedTransport):
    Producer = _Producer


class _App(ReadCommittedApp):
    transport_class = _Transport


class RecordCache:
    """Decoded member records for the bytes the table holds, most recently used kept.

    Decoding a record on every event would cost more than evaluating it. The
    table stays the truth: a cached record is used only while the table's bytes
    are the bytes it was decoded from (after a rebalance they may not be).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[bytes, tuple[bytes, MemberRecord]] = OrderedDict()

    def get(self, key: bytes, stored: bytes | None) -> MemberRecord:
        entry = self._entries.get(key)
        if entry is not None and stored is not None and (entry[0] is stored or entry[0] == stored):
            self._entries.move_to_end(key)
            return entry[1]
        record = MemberRecord.from_json(stored)
        if stored is not None:
            self.put(key, stored, record)
        return record

    def trusted(self, key: bytes) -> MemberRecord | None:
        """The cached record without reading the table: valid while this worker is
        the only writer of the member's partition, i.e. until the next rebalance
        (``clear`` runs on every assignment change)."""
        entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def clear(self) -> None:
        self._entries.clear()

    def put(self, key: bytes, stored: bytes, record: MemberRecord) -> None:
        self._entries[key] = (stored, record)
        self._entries.move_to_end(key)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)


class LinkCache(OrderedDict[bytes, "Link | None"]):
    """Decoded links (``None``: not linked) of recently seen social users, so an
    event does not cost a table read. Like ``RecordCache.trusted``: valid until
    the next assignment change, when it is cleared."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size

    def put(self, key: bytes, link: Link | None) -> None:
        self[key] = link
        self.move_to_end(key)
        if len(self) > self._size:
            self.popitem(last=False)


class OfferSet:
    """The active offers as last loaded, and the store signature they match."""

    def __init__(self, store: OfferStore) -> None:
        self.store = store
        self.offers: list[Offer] = []
        self.signature: tuple[int, str] | None = None

    def load(self) -> bool:
        """Reload when the store changed; True when it did."""
        signature = self.store.signature()
        if signature == self.signature:
            return False
        offers = self.store.active_offers()
        self.offers, self.signature = offers, signature
        OFFERS_ACTIVE.set(len(offers))
        log.info("offers loaded: %s", ", ".join(f"{o.id}@v{o.version}" for o in offers) or "-")
        return True


def create_app(  # noqa: PLR0915  (the agents are closures over their topics and tables)
    settings: RulesSettings, *, codec: Codec | None = None
) -> faust.App:
    """The Faust app, its agents, tables and the offer reload timer.

    Offers are loaded (and the store migrated) here, before any event is read,
    so the first events are never evaluated against an empty offer list.
    """
    codec = codec or make_codec(settings.kafka)
    topics = settings.topics
    store = OfferStore(settings.database, settings.db_schema)
    store.migrate()
    offer_set = OfferSet(store)
    offer_set.load()
    tz = settings.tz

    app = _App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.kafka.bootstrap_servers.split(",")],
        broker_credentials=broker_credentials(settings.kafka),
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=topics.partitions,
        topic_replication_factor=topics.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=0.005,  # batch sends: a few ms of latency for far fewer requests
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 10),
    )

    events_name = topics.name(EVENTS)
    events_topic = app.topic(events_name, key_type=bytes, value_type=bytes)
    by_member_name = topics.name(f"{settings.app_id}.by-member")
    by_member = app.topic(
        by_member_name,
        key_type=bytes,
        value_type=bytes,
        partitions=topics.partitions,
        internal=True,
    )
    command_topics = {base: topics.name(base) for base in set(COMMAND_TOPIC.values())}
    sender = DirectSender(settings)
    # Read by _Producer.flush, which Faust awaits before each offset commit.
    app.rules_commands = sender  # type: ignore[attr-defined]
    deadletter_name = topics.name(DEADLETTER)
    deadletter = app.topic(deadletter_name, key_type=bytes, value_type=bytes)
    links = app.Table(
        "links", default=None, partitions=topics.partitions, key_type=bytes, value_type=bytes
    )
    members = app.Table(
        "members", default=None, partitions=topics.partitions, key_type=bytes, value_type=bytes
    )
    expected = tuple(EVENT_TYPES.values())
    records = RecordCache(settings.record_cache_size)
    known_links = LinkCache(settings.record_cache_size)

    async def forget_records(_sender: Any, /, *_args: Any, signal: Any, **_kwargs: Any) -> None:
        """On any assignment change: another worker may have written these members,
        and a newly assigned partition's truth is its table (restored from the changelog)."""
        records.clear()
        known_links.clear()

    app.on_partitions_revoked.connect(forget_records)
    app.on_partitions_assigned.connect(forget_records)

    async def reject(record: Record, error: Exception) -> None:
        """Bad input goes to the dead-letter topic with its reason; the stream goes on."""
        EVENTS_DEAD.inc()
        letter = DeadLetter.for_error(
            error,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            consumer_group=settings.app_id,
        )
        log.warning("dead-lettered %s[%s]@%s: %s", record.topic, record.partition,
                    record.offset, letter.reason)  # fmt: skip
        await deadletter.send(key=record.key, value=codec.encode(letter, deadletter_name))

    # Every record of a partition once and in order, even when Faust leaves a hole
    # (services/runtime/inorder.py): a hole would be events never evaluated.
    in_order = InOrder(
        app,
        settings.kafka,
        settings.app_id,
        client_id=f"{settings.app_id}.ranges",
        on_skipped=EVENTS_SKIPPED_BY_FAUST.inc,
    )
    app.rules_in_order = in_order  # type: ignore[attr-defined]

    async def resolve_link(record: Record) -> None:
        try:
            event = cast(DomainEvent, codec.decode(record.value, events_name, expected))
            key = link_key(event).encode()
            link = known_links[key] if key in known_links else Link.from_json(links.get(key))
            new_link, rule_event = resolve(link, event)
            known_links.put(key, new_link)
        except ValueError as exc:  # DecodeError, or an event the engine refuses
            await reject(record, exc)
            return
        if new_link != link:
            if new_link is None:
                del links[key]
            else:
                links[key] = new_link.to_json()
        if rule_event is None:
            EVENTS_UNLINKED.inc()
            return
        # Enqueued, not awaited: flushed before this event's offset is committed
        # (docs/replay.md, "Crash consistency"); same murmur2 partition as Faust's.
        sender.send(by_member_name, rule_event.member_id.encode(), encode_rule_event(rule_event))

    async def evaluate_member(record: Record) -> None:
        started = time.perf_counter()
        try:
            rule_event = decode_rule_event(record.value or b"")
            key = rule_event.member_id.encode()
            result = process(
                offer_set.offers,
                records.trusted(key) or records.get(key, members.get(key)),
                rule_event,
                tz=tz,
                issued_at=datetime.now(UTC),
                recent_limit=settings.recent_events,
            )
        except ValueError as exc:  # a malformed resolved event or member record
            await reject(record, exc)
            return
        EVALUATION_SECONDS.observe(time.perf_counter() - started)
        if result.redelivered:
            EVENTS_REDELIVERED.inc()
        else:
            EVENTS_EVALUATED.inc()
            encoded = result.record.to_json()
            members[key] = encoded
            records.put(key, encoded, result.record)
        for command in result.commands:
            name = command_topics[command_topic(command)]
            sender.send(name, key, codec.encode(command, name))  # flushed before the commit
            COMMANDS_EMITTED.labels(type=type(command).__name__).inc()

    @app.agent(events_topic)
    async def resolve_links(stream: Any) -> None:
        async for event in stream.events():
            await in_order.run(event.message, resolve_link)

    @app.agent(by_member)
    async def evaluate_members(stream: Any) -> None:
        async for event in stream.events():
            await in_order.run(event.message, evaluate_member)

    @app.timer(interval=settings.reload_interval_s)  # type: ignore[untyped-decorator]
    async def reload_offers() -> None:
        try:
            await asyncio.to_thread(offer_set.load)
        except Exception:  # PG away: keep evaluating with the offers we have
            log.exception("offer reload failed; keeping %d offers", len(offer_set.offers))

    app.rules_offer_set = offer_set  # type: ignore[attr-defined]
    return app
