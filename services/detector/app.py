"""The detector worker: a Faust app from ``social.snapshots`` to ``social.events``.

Per message the agent only decodes, calls the pure core (:mod:`.mapping`,
:mod:`.history`, :mod:`.diff`) and sends. The order of effects is what makes the
output at-least-once and idempotent (docs/detector.md):

1. the chunk's events are produced and **acked by the broker** (a blocking flush
   on a worker thread) before anything else;
2. only then is the new :class:`~.history.KeyHistory` written to the table (its
   changelog), and only after the agent returns is the source offset acked to
   Faust, which commits it later (after flushing its own producer).

So a committed offset implies stored state implies delivered events. A crash
anywhere redelivers the chunk; it is diffed again from the stored ``previous``
(same snapshot) or from the old state (state not yet written), giving the same
event ids either way.

Events and dead letters go through the shared confluent-kafka producer factory,
not Faust's aiokafka producer: librdkafka's partitioner is the one every other
producer of ``social.events`` (the link API) uses, so a user's link and activity
land in one partition, in order.

Post retirement: the collector writes a copy of each run's manifest to every
partition of the snapshot topic, last in the run's transaction, so each partition
learns which posts left the window after that run's chunks and before the next
run's. It retires, from the posts it tracked for the group, those it owns
(``KeyHistory.partition``) and the manifest no longer lists.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaError as AIOKafkaError  # type: ignore[import-untyped]
from confluent_kafka import KafkaException
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from services.contracts import (
    DeadLetter,
    DecodeError,
    MembersChunk,
    PostCommentsChunk,
    PostLikesChunk,
    PostRepostsChunk,
    RunManifest,
    make_codec,
)
from services.contracts.headers import Headers, contract_headers
from services.contracts.models import Network
from services.contracts.topics import (
    DEADLETTER,
    EVENTS,
    SNAPSHOTS,
    detector_topics,
)
from services.detector.diff import Facet, InvalidChunkError, forget_posts
from services.detector.faust_app import ReadCommittedApp, broker_credentials
from services.detector.history import KeyHistory, advance, retire_history
from services.detector.inorder import InOrder, RangeReadError, SourceRecord
from services.detector.mapping import SnapshotChunkModel, events, millis, to_chunk
from services.detector.settings import DetectorSettings
from services.detector.state import DetectorInputError
from services.runtime import health, http, kafka
from services.runtime.metric_set import MetricSet
from services.runtime.sender import DeliveryError, Sender

log = logging.getLogger(__name__)

STEP_OVER_EVERY_S = 1.0
"""How often an idle worker looks for markers to commit past (``_step_over_markers``)."""
_POST_FACETS = (Facet.LIKES, Facet.COMMENTS, Facet.REPOSTS)
_SNAPSHOT_CLASSES = (MembersChunk, PostLikesChunk, PostRepostsChunk, PostCommentsChunk, RunManifest)


class ProduceFailedError(RuntimeError):
    """The broker did not ack a chunk's output in time: crash, so nothing is committed."""


class DetectorMetrics(MetricSet):
    """The detector's metrics (on the registry of its app)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.chunks = self.counter(
            "social_loyalty_detector_chunks_total",
            "Snapshot records processed, by outcome.",
            "outcome",
        )
        self.events = self.counter(
            "social_loyalty_detector_events_total", "Domain events emitted, by type.", "type"
        )
        self.diff_seconds = self.histogram(
            "social_loyalty_detector_diff_seconds",
            "Time to diff one chunk against its stored state (decode to changes).",
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
        )
        self.dead_letters = self.counter(
            "social_loyalty_detector_dead_letters_total", "Records sent to the dead-letter topic."
        )
        self.skipped_records = self.counter(
            "social_loyalty_detector_faust_skipped_records_total",
            "Records Faust did not deliver in order that the worker read itself.",
        )


@dataclass(frozen=True)
class _Topics:
    snapshots: str
    events: str
    deadletter: str
    partitions: int


class Detector:
    """The wired worker: Faust app, table, agent, output producer and metrics."""

    def __init__(self, settings: DetectorSettings, topics: _Topics) -> None:
        self.settings = settings
        self.names = topics
        self.registry = CollectorRegistry()
        self.metrics = DetectorMetrics.on(self.registry)
        self.codec = make_codec(settings.kafka)
        self.ready = False
        self.dependencies = health.Dependencies(health.probes(kafka_settings=settings.kafka))
        self._sender: Sender | None = None
        brokers = [
            f"kafka://{server.strip()}" for server in settings.kafka.bootstrap_servers.split(",")
        ]
        self.app = ReadCommittedApp(
            settings.app_id,
            broker=brokers,
            broker_credentials=broker_credentials(settings.kafka),
            store=settings.store,
            datadir=str(settings.data_dir),
            topic_partitions=topics.partitions,
            # Faust creates no topic here (the catalog makes them first); unset, 1 is a
            # placeholder it never uses.
            topic_replication_factor=settings.topics.replication_factor or 1,
            processing_guarantee="at_least_once",
            consumer_auto_offset_reset="earliest",
            web_enabled=False,
            key_serializer="raw",
            value_serializer="raw",
            broker_session_timeout=settings.session_timeout_s,
            # How often offsets are committed changes only how much a crash redelivers,
            # never what is delivered: events are acked before the state, the state
            # before the offset is acked to Faust, and a redelivered chunk gives the same
            # event ids (docs/detector.md, "Commit interval").
            broker_commit_every=100,
            broker_commit_interval=settings.commit_interval_s,
        )
        source = self.app.topic(
            topics.snapshots,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        table_options: dict[str, Any] = {
            "default": None,
            "partitions": topics.partitions,
            "key_type": bytes,
            "value_type": bytes,
        }
        self.keys = self.app.Table("keys", help="KeyHistory per snapshot key.", **table_options)
        self.groups = self.app.Table(
            "groups", help="Last manifest per group and partition.", **table_options
        )
        self._in_order = InOrder(
            self.app,
            settings.kafka,
            settings.app_id,
            client_id="detector-ranges",
            timeout_s=settings.flush_timeout_s,
            on_skipped=self.metrics.skipped_records.inc,
        )
        self.app.agent(source, name="detect")(self._agent)
        self.app.task(self._serve)
        self.app.task(self._step_over_markers)

    # ------------------------------------------------------------------ edges

    @property
    def sender(self) -> Sender:
        """librdkafka's default partitioner (``consistent_random``), the one the
        catalog names for ``social.events``."""
        if self._sender is None:
            self._sender = Sender(
                kafka.producer(self.settings.kafka, "detector"), native="consistent_random"
            )
        return self._sender

    def _not_ready(self) -> str | None:
        """Crashed, not assigned yet, or the brokers (where its events go) unreachable:
        probed on a thread of its own, since a broker that hangs keeps Faust silent."""
        if self.app.crash_reason is not None:
            return f"crashed: {self.app.crash_reason!r}"
        if not self.ready:
            return "not assigned yet"
        return self.dependencies.not_ready()

    async def _serve(self) -> None:
        self.dependencies.start()
        app = http.create_app("detector", self._not_ready, self.registry)
        await http.start(app, self.settings.worker_host, self.settings.worker_port)

    async def _step_over_markers(self) -> None:
        """Idle, commit past the marker that ends every collector run, so a caught-up
        group reads lag 0 instead of 1 on every partition with data (KAFKA-6607); see
        ``InOrder.step_over`` for why that commits nothing unhandled. A plain loop, not
        a Faust timer: a round that waits on the broker must not overlap the next."""
        while True:
            await asyncio.sleep(STEP_OVER_EVERY_S)
            if not self.ready:
                continue
            try:
                positions = await self.app.idle_positions({self.names.snapshots})
                moved = await self._in_order.step_over(positions)
            except Exception as exc:  # the next round tries again; nothing depends on it
                log.warning("could not step over transaction markers: %r", exc)
                continue
            if moved:
                log.debug("idle: commit limits moved past markers to %s", moved)

    async def _agent(self, stream: Any) -> AsyncIterator[None]:
        self.ready = True
        async for event in stream.events():
            try:
                if not await self._in_order.run(event.message, self.handle):
                    self.metrics.chunks.labels("repeated").inc()
            except (ProduceFailedError, RangeReadError) as exc:
                log.error("stopping: %s", exc)
                raise  # ReadCommittedApp._on_agent_error crashes the worker
            yield None

    def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        headers: Headers | None = None,
    ) -> None:
        self.sender.send(topic, value, key, -1 if partition is None else partition, headers)

    async def _flush(self) -> None:
        """Wait until every message sent so far is acked; raise if any failed."""
        try:
            await asyncio.to_thread(self.sender.flush, self.settings.flush_timeout_s)
        except DeliveryError as exc:
            raise ProduceFailedError(
                f"not acked in {self.settings.flush_timeout_s}s: {exc}"
            ) from exc

    async def _dead_letter(self, error: BaseException, source: SourceRecord) -> None:
        log.warning(
            "dead letter %s[%d]@%d: %s", source.topic, source.partition, source.offset, error
        )
        letter = DeadLetter.for_error(
            error,
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            key=source.key,
            value=source.value,
            consumer_group=self.settings.app_id,
        )
        self._send(
            self.names.deadletter, source.key, self.codec.encode(letter, self.names.deadletter)
        )
        await self._flush()
        self.metrics.dead_letters.inc()
        self.metrics.chunks.labels("dead_letter").inc()

    # ------------------------------------------------------------- handling

    async def handle(self, source: SourceRecord) -> None:
        """Process one record of the source topics (inside Faust's stream loop).

        The bad-record policy: a record that cannot be decoded, validated or applied is
        a dead letter and the stream goes on; only a broker that does not take our
        output, or a local disk that fails (``ProduceFailedError``, ``RangeReadError``,
        Kafka client errors, ``OSError``) stops the worker, so the record is read again
        after a restart instead of being dead-lettered for a transient cause."""
        try:
            await self._handle(source)
        except (ProduceFailedError, RangeReadError, KafkaException, AIOKafkaError, OSError):
            raise  # the broker or the disk, not this record: crash, read it again
        except Exception as exc:
            if not isinstance(exc, DecodeError | DetectorInputError | ValidationError):
                log.exception(
                    "unexpected failure on %s[%d]@%d", source.topic, source.partition, source.offset
                )
            await self._dead_letter(exc, source)

    async def _handle(self, source: SourceRecord) -> None:
        record = self.codec.decode(source.value, source.topic, _SNAPSHOT_CLASSES)
        if not isinstance(record, _SNAPSHOT_CLASSES):
            raise InvalidChunkError(f"not a snapshot record: {type(record).__name__}")
        expected_key = record.key().to_bytes()
        if source.key != expected_key:
            raise InvalidChunkError(
                f"record key {source.key!r} does not match its content {expected_key!r}"
            )
        if isinstance(record, RunManifest):
            self._manifest(record, source.partition)
        else:
            await self._chunk(expected_key, source.partition, record)

    async def _chunk(self, key: bytes, partition: int, record: SnapshotChunkModel) -> None:
        started = time.perf_counter()
        chunk = to_chunk(record)
        raw = self.keys.get(key)
        history = KeyHistory.from_bytes(raw) if raw is not None else None
        stored, diff = advance(history, chunk, partition)
        out = list(events(diff, chunk, datetime.now(UTC)))
        self.metrics.diff_seconds.observe(time.perf_counter() - started)
        for event in out:
            self._send(
                self.names.events,
                event.key().to_bytes(),
                self.codec.encode(event, self.names.events),
                headers=contract_headers(event, "detector"),
            )
        if out:
            await self._flush()
        for name, count in collections.Counter(type(e).__name__ for e in out).items():
            self.metrics.events.labels(name).inc(count)
        if stored is not None:
            self.keys[key] = stored.to_bytes()
        self.metrics.chunks.labels(diff.outcome.value).inc()

    def _manifest(self, manifest: RunManifest, partition: int) -> None:
        """Retire the posts of this partition that left the group's window.

        Each partition gets its own copy of the manifest and keeps its own record of the
        group's last one (``groups``, keyed by manifest key and partition). A redelivered
        manifest (same ``snapshot_at``) retires the same posts again, which changes
        nothing; the record is written after the retirements, so a crash in between
        repeats them. An incomplete or baseline run retires nothing: a half-read group
        must never look like posts leaving."""
        key = manifest.key().to_bytes() + b"@" + str(partition).encode()
        at = millis(manifest.snapshot_at)
        raw = self.groups.get(key)
        stored = json.loads(raw) if raw is not None else None
        if stored is not None and at < stored["snapshot_at"]:
            self.metrics.chunks.labels("stale_manifest").inc()
            return
        if stored is not None and at == stored["snapshot_at"]:
            retired = stored["retired"]
        elif stored is not None and manifest.complete and not manifest.is_baseline:
            retired = forget_posts(stored["post_ids"], manifest.post_ids)
        else:
            retired = []
        for post_id in retired:
            self._retire(manifest.network, manifest.group_id, post_id, partition, at)
        self.groups[key] = json.dumps(
            {"snapshot_at": at, "post_ids": sorted(manifest.post_ids), "retired": retired}
        ).encode()
        self.metrics.chunks.labels("manifest").inc()

    def _retire(
        self, network: Network, group_id: int, post_id: int, partition: int, at: int
    ) -> None:
        """Tombstone the post's facets this partition wrote (the others are another
        partition's to retire, from its own copy of the manifest)."""
        for facet in _POST_FACETS:
            key = f"{network.value}:{group_id}:{facet.value}:{post_id}".encode()
            raw = self.keys.get(key)
            if raw is None:
                continue
            history = KeyHistory.from_bytes(raw)
            if history.partition != partition:
                continue
            tomb = retire_history(history, at)
            if tomb is not None:
                self.keys[key] = tomb.to_bytes()
                self.metrics.chunks.labels("retirement").inc()

    def close(self) -> None:
        self.dependencies.stop()
        if self._sender is not None:
            self._sender.producer.flush(self.settings.flush_timeout_s)
        self._in_order.close()


class TopicLayoutError(RuntimeError):
    """The cluster's topics are not what the detector needs; the message says what to do."""


def _topics(settings: DetectorSettings) -> _Topics:
    """Resolve topic names and check the internal topics before Faust sees them.

    Faust joins the group and then checks its changelogs; a changelog missing (not yet
    in the metadata on a fresh broker) or with the wrong partition count crashed the
    agent inside a process that stayed up. ``topics ensure`` creates every internal
    topic from the catalog before any worker starts, and this refuses to start, naming
    the topic and the fix, when that has not happened."""
    names = settings.topics
    snapshots = names.name(SNAPSHOTS)
    admin = kafka.admin(settings.kafka, "detector-admin")
    kafka.check_reachable(settings.kafka)
    metadata = admin.list_topics(timeout=settings.kafka.connect_timeout_s)
    ensure_hint = (
        f"run `social-loyalty topics ensure` with DETECTOR_APP_ID={settings.app_id} "
        f"and TOPIC_PREFIX={names.prefix!r}"
    )
    if snapshots not in metadata.topics:
        raise TopicLayoutError(f"topic {snapshots!r} does not exist; {ensure_hint}")
    partitions = len(metadata.topics[snapshots].partitions)
    for spec in detector_topics(names, settings.app_id):
        found = metadata.topics.get(spec.name)
        if found is None or found.error is not None:
            raise TopicLayoutError(f"internal topic {spec.name!r} does not exist; {ensure_hint}")
        if len(found.partitions) != partitions:
            raise TopicLayoutError(
                f"internal topic {spec.name!r} has {len(found.partitions)} partitions but "
                f"{snapshots!r} has {partitions}: partition n of it must hold the state of "
                f"partition n of {snapshots!r}. Delete it (its state is rebuilt from the "
                f"snapshots) and {ensure_hint} with TOPIC_PARTITIONS={partitions}"
            )
    return _Topics(snapshots, names.name(EVENTS), names.name(DEADLETTER), partitions)


def create_app(settings: DetectorSettings | None = None) -> Detector:
    """Build the detector from settings (read from the environment when not given)."""
    settings = settings or DetectorSettings()
    return Detector(settings, _topics(settings))
