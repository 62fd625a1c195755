"""The rules worker: ``social.events`` in, commands out, exactly once, on the stream runtime.

One consumer in the group ``RULES_APP_ID`` reads two topics, and the runtime
(``services/runtime/stream.py``) commits everything a batch did in one Kafka
transaction:

1. ``social.events`` (keyed ``network:social_user_id``): the **links** store of the
   partition (the same key, so a user's link and activity are in one partition, in
   order) resolves the event to its member; the activity of unlinked users is kept
   in the log and earns nothing. A linked user's event goes to the repartition
   topic ``<app id>.by-member`` keyed ``member_id``.
2. ``<app id>.by-member``: the **members** store holds each member's engine state
   and the ids of the events it last processed; the pure ``process`` evaluates
   every active offer and the commands go to ``loyalty.commands.*`` keyed
   ``member_id``.

Why the hop stays a Kafka topic: a member with a VK and an OK profile has events
in two partitions of ``social.events``; one owner of the member's state needs one
partition per member, and only Kafka can hand that partition to one worker of the
group at a time and move it, with its changelog, on a rebalance (docs/offers.md).

Offers come from PostgreSQL, reloaded on a background thread whenever the store's
signature changes (``RULES_RELOAD_INTERVAL_S``).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message
from prometheus_client import REGISTRY, CollectorRegistry

from services.contracts.codec import Codec, make_codec
from services.contracts.headers import full_name, headers_for
from services.contracts.topics import DEADLETTER, EVENTS, TopicSpec, catalog, ensure, rules_topics
from services.rules.engine import CommandKind
from services.rules.offer_store import OfferStore
from services.rules.offers import Offer
from services.rules.processing import (
    EVENT_NAMES,
    EVENT_TYPE_OF_NAME,
    KIND_NAME,
    MemberLink,
    MemberRecord,
    command_value,
    decode_rule_event,
    encode_resolved,
    link_after,
    link_key_of,
    process,
)
from services.rules.settings import RulesSettings
from services.runtime import kafka
from services.runtime.metric_set import MetricSet
from services.runtime.sender import catalog_partitioners
from services.runtime.startup import Startup
from services.runtime.stream import (
    Output,
    Stores,
    StoreSpec,
    StreamConfig,
    StreamError,
    StreamWorker,
)

log = logging.getLogger(__name__)


class RulesMetrics(MetricSet):
    """The rules worker's metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.events_evaluated = self.counter(
            "social_loyalty_rules_events_evaluated_total",
            "Resolved member events run through the offers.",
        )
        self.events_duplicate = self.counter(
            "social_loyalty_rules_events_duplicate_total",
            "Events whose id the member had seen: dropped (upstream redelivery).",
        )
        self.events_unlinked = self.counter(
            "social_loyalty_rules_events_unlinked_total",
            "Events of social users with no linked member (no earning).",
        )
        self.commands_emitted = self.counter(
            "social_loyalty_rules_commands_emitted_total",
            "Commands sent, by contract type.",
            "type",
        )
        self.evaluation_seconds = self.histogram(
            "social_loyalty_rules_evaluation_seconds",
            "Time to evaluate one event against every active offer (sampled 1 in 64).",
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
        )
        self.offers_active = self.gauge(
            "social_loyalty_rules_offers_active", "Active offers the worker evaluates."
        )


class OfferSet:
    """The active offers as last loaded, and the store signature they match."""

    def __init__(self, store: OfferStore, metrics: RulesMetrics) -> None:
        self.store = store
        self.metrics = metrics
        self.offers: list[Offer] = []
        self.signature: tuple[int, str] | None = None

    def load(self) -> bool:
        """Reload when the store changed; True when it did."""
        signature = self.store.signature()
        if signature == self.signature:
            return False
        offers = self.store.active_offers()
        self.offers, self.signature = offers, signature
        self.metrics.offers_active.set(len(offers))
        log.info("offers loaded: %s", ", ".join(f"{o.id}@v{o.version}" for o in offers) or "-")
        return True


class _Counts:
    """Per-event counts kept as plain ints and added to the Prometheus counters once
    per transaction: a labelled ``inc`` per event cost more than the offer check."""

    def __init__(self, metrics: RulesMetrics) -> None:
        self.metrics = metrics
        self.evaluated = self.duplicate = self.unlinked = 0
        self.commands: collections.Counter[CommandKind] = collections.Counter()

    def publish(self) -> None:
        if self.evaluated:
            self.metrics.events_evaluated.inc(self.evaluated)
        if self.duplicate:
            self.metrics.events_duplicate.inc(self.duplicate)
        if self.unlinked:
            self.metrics.events_unlinked.inc(self.unlinked)
        for kind, count in self.commands.items():
            self.metrics.commands_emitted.labels(type=KIND_NAME[kind][0]).inc(count)
        self.evaluated = self.duplicate = self.unlinked = 0
        self.commands.clear()


class RulesWorker:
    """The two handlers and their stores; ``run`` blocks until ``stop``."""

    def __init__(
        self,
        settings: RulesSettings,
        *,
        codec: Codec | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.metrics = RulesMetrics.on(registry)
        self.registry = registry
        self.settings = settings
        self.codec = codec or make_codec(settings.kafka)
        topics = settings.topics
        self.events_topic = topics.name(EVENTS)
        self.internal = {spec.name.rsplit(".", 1)[1]: spec for spec in self._internal_specs()}
        self.by_member_topic = topics.name(f"{settings.app_id}.by-member")
        self.offer_set = OfferSet(OfferStore(settings.database, settings.db_schema), self.metrics)
        self._stop = threading.Event()
        self._startup = Startup("rules", self._stop)
        self._sampled = 0
        self._counts = _Counts(self.metrics)
        self.stream: StreamWorker | None = None

    def _internal_specs(self) -> list[TopicSpec]:
        return rules_topics(self.settings.topics, self.settings.app_id)

    # ------------------------------------------------------------------ handlers

    def resolve_link(self, message: Message, stores: Stores) -> Iterable[Output]:
        """social.events: keep the user's link, forward a linked user's event."""
        name, event = self.codec.decode_plain(message.value(), self.events_topic, EVENT_NAMES)
        kind = EVENT_TYPE_OF_NAME[name]
        links = stores["links"]
        key = link_key_of(event)
        link = links.get(key)
        new_link, resolved = link_after(link, kind, event)
        value = None if resolved is None else encode_resolved(kind, event, resolved)
        if new_link != link:
            if new_link is None:
                links.delete(key)
            else:
                links.set(key, new_link)
        if resolved is None or value is None:
            self._counts.unlinked += 1
            return ()
        return (Output(self.by_member_topic, resolved.member_id.encode(), value),)

    def evaluate_member(self, message: Message, stores: Stores) -> Iterable[Output]:
        """by-member: evaluate the offers with the member's state, emit the commands."""
        sample = self._sampled & 63 == 0
        self._sampled += 1
        started = time.perf_counter() if sample else 0.0
        event = decode_rule_event(message.value() or b"")
        members = stores["members"]
        key = event.member_id.encode()
        record = members.get(key) or MemberRecord()
        new_record, specs = process(
            self.offer_set.offers,
            record,
            event,
            tz=self.settings.tz,
            seen_limit=self.settings.seen_events,
        )
        if new_record is record:
            self._counts.duplicate += 1
            return ()
        issued_at = datetime.now(UTC)
        topics = self.settings.topics
        outputs = []
        for spec in specs:
            name, base, value = command_value(spec, issued_at=issued_at)
            topic = topics.name(base)
            headers = headers_for(full_name(name), spec.command_id, issued_at, "rules")
            outputs.append(
                Output(topic, key, self.codec.encode_plain(name, value, topic), headers=headers)
            )
        members.set(key, new_record)  # after everything that can raise
        counts = self._counts
        counts.evaluated += 1
        for spec in specs:
            counts.commands[spec.kind] += 1
        if sample:
            self.metrics.evaluation_seconds.observe(time.perf_counter() - started)
        return outputs

    # ------------------------------------------------------------------- running

    def prepare(self) -> StreamWorker:
        """Migrate and load offers, create or check the internal topics, build the loop."""
        settings = self.settings
        self.offer_set.store.migrate()
        self.offer_set.load()
        kafka.check_reachable(settings.kafka)
        counts = self._ensure_topics()
        internal = self.internal
        self.stream = StreamWorker(
            settings.kafka,
            StreamConfig(
                group=settings.app_id,
                instance=settings.instance_id,
                commit_every=settings.commit_every,
                commit_interval_s=settings.commit_interval_s,
                session_timeout_ms=int(settings.session_timeout_s * 1000),
                transaction_timeout_ms=int(settings.transaction_timeout_s * 1000),
            ),
            handlers={
                self.events_topic: self.resolve_link,
                self.by_member_topic: self.evaluate_member,
            },
            stores=[
                StoreSpec(
                    "links",
                    self.events_topic,
                    internal["links-changelog"].name,
                    MemberLink.to_json,
                    MemberLink.from_json,
                ),
                StoreSpec(
                    "members",
                    self.by_member_topic,
                    internal["members-changelog"].name,
                    MemberRecord.to_json,
                    MemberRecord.from_json,
                ),
            ],
            codec=self.codec,
            deadletter_topic=settings.topics.name(DEADLETTER),
            partitioners=catalog_partitioners(
                catalog(settings.topics, rules_app_id=settings.app_id), counts
            ),
            partition_counts=counts,
            on_commit=self._counts.publish,
            registry=self.registry,
        )
        return self.stream

    def _ensure_topics(self) -> dict[str, int]:
        """Create missing internal topics; refuse to start on a wrong partition count."""
        admin = kafka.admin(self.settings.kafka, f"{self.settings.app_id}.topics")
        internal = self._internal_specs()
        # one attempt's bound: a request that went to a broker that was hung is retried
        # by the start-up loop on a new client rather than waited for 30 s
        timeout = self.settings.kafka.connect_timeout_s
        for line in ensure(admin, internal, fix=False, timeout=timeout):
            log.info("topics: %s", line)
        counts = kafka.partition_counts(admin, timeout)
        events = counts.get(self.events_topic)
        if events is None:
            raise StreamError(
                f"topic {self.events_topic} does not exist: run `social-loyalty topics ensure`"
            )
        pairs = (
            ("links-changelog", events, self.events_topic),
            ("members-changelog", counts.get(self.by_member_topic), self.by_member_topic),
        )
        for stem, want, source in pairs:
            name = self.internal[stem].name
            have = counts.get(name)
            if have is not None and want is not None and have != want:
                raise StreamError(
                    f"changelog {name} has {have} partitions but {source} has {want}: its "
                    "partition n must hold the state of partition n. Delete the changelog "
                    "(the state is rebuilt from scratch) or recreate it with "
                    f"{want} partitions, then start the worker again."
                )
        return counts

    def run(self) -> None:
        """Run until ``stop``; raises if the loop cannot go on (exit non-zero). Started
        while PostgreSQL or Kafka is away, it waits for them (``/readyz`` says so)."""
        stream = self.stream or self._startup.until_up(self.prepare)
        if stream is None:  # stopped while waiting for its dependencies
            return
        if self._stop.is_set():  # stop() came while preparing: honour it
            stream.stop()
        reload = threading.Thread(target=self._reload_loop, name="offers", daemon=True)
        reload.start()
        try:
            stream.run()
        finally:
            self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self.stream is not None:
            self.stream.stop()

    def not_ready(self) -> str | None:
        if self._startup.waiting is not None:
            return self._startup.waiting
        if self.offer_set.signature is None:
            return "offers not loaded"
        if self.stream is None:
            return "starting"
        return self.stream.not_ready()

    def _reload_loop(self) -> None:
        while not self._stop.wait(self.settings.reload_interval_s):
            try:
                self.offer_set.load()
            except Exception:  # PG away: keep evaluating with the offers we have
                log.exception("offer reload failed; keeping %d offers", len(self.offer_set.offers))


def loaded_offers(worker: RulesWorker) -> list[dict[str, Any]]:
    """What this worker evaluates right now (``GET /offers`` on its health port)."""
    return [{"id": o.id, "version": o.version} for o in worker.offer_set.offers]
