"""The topic catalog: every topic, its key, partitions, retention and configs, in code.

``social-loyalty topics ensure`` makes the cluster match this catalog. Planning is a
pure function (:func:`plan`) over what the catalog wants and what the cluster has, so
the drift rules are unit-tested without a broker; the admin calls are a thin shell
around it (:func:`observe`, :func:`apply`).

There is no ``social.links`` topic: a link is the domain event ``ProfileLinked`` and
goes to ``social.events`` keyed ``network:social_user_id``, the same partition as that
user's later activity, so "link first, then activity" is ordered by Kafka itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.contracts.models import (
    EVENT_TYPES,
    OUTCOME_TYPES,
    SNAPSHOT_TYPES,
    BonusAccrue,
    BonusDeduct,
    CounterIncrement,
    DeadLetter,
    MailingSet,
    SendMessage,
)

DAY_MS = 86_400_000

SNAPSHOTS = "social.snapshots"
EVENTS = "social.events"
COMMANDS_BONUS = "loyalty.commands.bonus"
COMMANDS_NOTIFY = "loyalty.commands.notify"
COMMANDS_MAILING = "loyalty.commands.mailing"
COMMANDS_COUNTER = "loyalty.commands.counter"
OUTCOMES = "loyalty.outcomes"
DEADLETTER = "loyalty.deadletter"


class TopicSettings(BaseSettings):
    """Per-environment topic layout: ``TOPIC_PREFIX``, ``TOPIC_PARTITIONS``,
    ``TOPIC_REPLICATION_FACTOR``. The prefix lets tests (or a second environment)
    keep a whole catalog of their own on a shared cluster."""

    model_config = SettingsConfigDict(env_prefix="TOPIC_", extra="ignore", frozen=True)

    prefix: str = Field(default="", description="Prepended to every topic name.")
    partitions: int = Field(default=6, ge=1, description="Partitions of every topic.")
    replication_factor: int = Field(default=1, ge=1, description="1 locally, 3 in production.")

    def name(self, base: str) -> str:
        """The real topic name of a catalog topic, e.g. ``name(EVENTS)``."""
        return f"{self.prefix}{base}"


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the catalog wants it."""

    name: str
    key: str
    value_types: tuple[str, ...]
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    description: str
    partitioner: str = "consistent_random"
    """How keys map to partitions, for every producer of the topic: librdkafka's
    ``consistent_random`` (CRC-32) for the topics written that way since the start
    (``social.events`` is kept forever: remapping its keys would break per-user
    order), ``murmur2_random`` (Java's and aiokafka's) for commands and the stream
    runtime's internal topics. ``services.runtime.sender.Sender`` applies it."""

    @property
    def retention_ms(self) -> int:
        return int(self.configs.get("retention.ms", "-1"))  # compacted: kept until replaced

    @property
    def cleanup_policy(self) -> str:
        return self.configs["cleanup.policy"]


def _configs(retention_ms: int, settings: TopicSettings, **extra: str) -> dict[str, str]:
    configs = {"cleanup.policy": "delete", "retention.ms": str(retention_ms)}
    if settings.replication_factor >= 3:
        configs["min.insync.replicas"] = "2"
    configs.update({key.replace("_", "."): value for key, value in extra.items()})
    return configs


def _internal(
    name: str, settings: TopicSettings, configs: dict[str, str], service: str, description: str
) -> TopicSpec:
    """A worker's own topic: written and read by ``service`` alone, partitioned like
    the topic whose state it holds, murmur2 like every runtime-written topic."""
    return TopicSpec(
        name,
        "see description",
        (),
        settings.partitions,
        settings.replication_factor,
        configs,
        (service,),
        (service,),
        description,
        partitioner="murmur2_random",
    )


def _compacted(settings: TopicSettings) -> dict[str, str]:
    configs = {"cleanup.policy": "compact"}
    if settings.replication_factor >= 3:
        configs["min.insync.replicas"] = "2"
    return configs


RULES_APP_ID = "social-loyalty.rules"
"""The rules worker's default consumer group, the stem of its internal topics."""


def rules_topics(settings: TopicSettings, app_id: str = RULES_APP_ID) -> list[TopicSpec]:
    """The rules worker's internal topics (services/rules/worker.py): the member-keyed
    repartition topic and the compacted changelogs of its two stores. Partition *n* of
    a changelog holds the state of partition *n* of the topic the store reads, so each
    changelog has exactly as many partitions as that topic (the worker refuses to
    start otherwise)."""

    def internal(stem: str, configs: dict[str, str], description: str) -> TopicSpec:
        return _internal(settings.name(f"{app_id}.{stem}"), settings, configs, "rules", description)

    compacted = {**_compacted(settings), "retention.ms": "-1"}
    return [
        internal(
            "by-member",
            _configs(DAY_MS, settings),
            "Linked users' events resolved to their member, keyed member_id (compact JSON).",
        ),
        internal(
            "links-changelog",
            compacted,
            "The links store (network:social_user_id -> member link), one record per key "
            "per transaction; partitioned like social.events.",
        ),
        internal(
            "members-changelog",
            compacted,
            "The members store (member_id -> engine state and seen event ids); "
            "partitioned like the by-member topic.",
        ),
    ]


DETECTOR_APP_ID = "social-loyalty.detector"
"""The detector's default Faust app id: its consumer group and its topics' stem."""

DETECTOR_TABLES = ("keys", "groups")
"""The detector's Faust tables; each has a changelog ``<app id>-<table>-changelog``."""


def retirements_topic(app_id: str) -> str:
    """The detector's post-retirement broadcast topic for its Faust app id."""
    return f"{app_id}-post-retirements"


def detector_topics(settings: TopicSettings, app_id: str) -> list[TopicSpec]:
    """The detector's internal topics (services/detector/app.py), named as Faust names
    them (``<app id>-<table>-changelog``; Faust does not know ``TOPIC_PREFIX``, so the
    app id is the whole stem) plus its post-retirement broadcast. Each is partitioned
    like ``social.snapshots``: Faust refuses a changelog with another count, and so
    does the detector before it starts."""
    # No retention.ms: it means nothing under compaction, and the changelogs Faust
    # created before they were in the catalog do not have it (no drift on upgrade).
    compacted = _compacted(settings)

    def internal(name: str, configs: dict[str, str], description: str) -> TopicSpec:
        return _internal(name, settings, configs, "detector", description)

    tables = {
        "keys": "The keys table (snapshot key -> the key's last state), partitioned like "
        "social.snapshots.",
        "groups": "The groups table (manifest key -> the run's posts), partitioned like "
        "social.snapshots.",
    }
    return [
        *(
            internal(f"{app_id}-{table}-changelog", compacted, tables[table])
            for table in DETECTOR_TABLES
        ),
        internal(
            retirements_topic(app_id),
            _configs(7 * DAY_MS, settings),
            "Posts that left a group's collection window, sent to every partition (compact JSON).",
        ),
    ]


def catalog(
    settings: TopicSettings | None = None,
    *,
    rules_app_id: str = RULES_APP_ID,
    detector_app_id: str | None = None,
) -> list[TopicSpec]:
    """Every topic of the system, named with the settings' prefix (the rules worker's
    internal topics for the group ``rules_app_id``, the detector's for the Faust app
    ``detector_app_id``, by default ``DETECTOR_APP_ID`` behind the prefix)."""
    settings = settings or TopicSettings()
    detector = detector_app_id if detector_app_id is not None else settings.name(DETECTOR_APP_ID)
    parts, rf = settings.partitions, settings.replication_factor

    def command_topic(base: str, types: tuple[str, ...], consumer: str) -> TopicSpec:
        return TopicSpec(
            settings.name(base),
            "member_id (UTF-8)",
            types,
            parts,
            rf,
            _configs(7 * DAY_MS, settings),
            ("rules", "replay"),
            (consumer,),
            "Commands for the actions service, keyed by member so a member's commands "
            "are applied in order.",
            partitioner="murmur2_random",
        )

    return [
        TopicSpec(
            settings.name(SNAPSHOTS),
            "network:group_id:facet:bucket (UTF-8)",
            tuple(SNAPSHOT_TYPES),
            parts,
            rf,
            # A 1,000,000-member group in 16 buckets is ~0.5 MB per bucket before zstd.
            _configs(7 * DAY_MS, settings, max_message_bytes="8388608"),
            ("collector",),
            ("detector",),
            "One Kafka transaction per collection run: member buckets, post facets, manifest last.",
        ),
        TopicSpec(
            settings.name(EVENTS),
            "network:social_user_id (UTF-8)",
            tuple(EVENT_TYPES),
            parts,
            rf,
            _configs(-1, settings),
            ("detector", "link-api"),
            ("rules", "replay", "read model", "other company services"),
            "The log of record: every domain event, kept forever, replayed for new offers.",
        ),
        command_topic(
            COMMANDS_BONUS, (BonusAccrue.avro_name, BonusDeduct.avro_name), "actions.bonus"
        ),
        command_topic(COMMANDS_NOTIFY, (SendMessage.avro_name,), "actions.notify"),
        command_topic(COMMANDS_MAILING, (MailingSet.avro_name,), "actions.mailing"),
        command_topic(COMMANDS_COUNTER, (CounterIncrement.avro_name,), "actions.counter"),
        TopicSpec(
            settings.name(OUTCOMES),
            "member_id (UTF-8)",
            tuple(OUTCOME_TYPES),
            parts,
            rf,
            _configs(30 * DAY_MS, settings),
            ("actions",),
            ("ops", "other company services"),
            "What the actions service did, per member.",
        ),
        TopicSpec(
            settings.name(DEADLETTER),
            "the original message's key bytes",
            (DeadLetter.avro_name,),
            parts,
            rf,
            _configs(30 * DAY_MS, settings),
            ("detector", "rules", "replay", "read model", "actions"),
            ("ops",),
            "Messages a consumer could not process, with the reason.",
        ),
        *rules_topics(settings, rules_app_id),
        *detector_topics(settings, detector),
    ]


# ----------------------------------------------------------------- planning (pure)


@dataclass(frozen=True)
class ObservedTopic:
    """What the cluster has for one topic."""

    name: str
    partitions: int
    configs: Mapping[str, str]


@dataclass(frozen=True)
class TopicPlan:
    """What differs between the catalog and the cluster for one topic."""

    spec: TopicSpec
    create: bool = False
    add_partitions: int = 0  # target partition count, 0 when fine
    config_changes: Mapping[str, tuple[str | None, str]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def in_sync(self) -> bool:
        return not (self.create or self.add_partitions or self.config_changes)

    def describe(self) -> list[str]:
        if self.create:
            return [f"{self.spec.name}: missing (create, {self.spec.partitions} partitions)"]
        lines = [
            f"{self.spec.name}: partitions below catalog: increase to {self.add_partitions}"
        ] * bool(self.add_partitions)
        lines += [
            f"{self.spec.name}: {key}={old if old is not None else '(unset)'}, catalog says {new}"
            for key, (old, new) in sorted(self.config_changes.items())
        ]
        lines += [f"{self.spec.name}: {note}" for note in self.notes]
        return lines or [f"{self.spec.name}: in sync"]


def plan(specs: list[TopicSpec], observed: Mapping[str, ObservedTopic]) -> list[TopicPlan]:
    """Compare the catalog with the cluster. More partitions than the catalog is not
    drift (partitions cannot be removed, and someone added them for a reason); fewer is.
    Only the config keys the catalog names are compared: broker defaults for the rest
    are not ours to police."""
    plans = []
    for spec in specs:
        current = observed.get(spec.name)
        if current is None:
            plans.append(TopicPlan(spec, create=True))
            continue
        notes: tuple[str, ...] = ()
        if current.partitions > spec.partitions:
            notes = (
                f"has {current.partitions} partitions, more than the catalog's {spec.partitions}",
            )
        changes = {
            key: (current.configs.get(key), want)
            for key, want in spec.configs.items()
            if current.configs.get(key) != want
        }
        plans.append(
            TopicPlan(
                spec,
                add_partitions=spec.partitions if current.partitions < spec.partitions else 0,
                config_changes=changes,
                notes=notes,
            )
        )
    return plans


# ------------------------------------------------------------------ admin (thin)


def observe(admin: Any, names: list[str], timeout: float = 30.0) -> dict[str, ObservedTopic]:
    """Partition counts and configs of the topics in ``names`` that exist."""
    from confluent_kafka.admin import ConfigResource, ResourceType  # type: ignore[attr-defined]

    metadata = admin.list_topics(timeout=timeout)
    present = [name for name in names if name in metadata.topics]
    if not present:
        return {}
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in present]
    described = admin.describe_configs(resources, request_timeout=timeout)
    observed = {}
    for resource, future in described.items():
        entries = future.result(timeout)
        observed[resource.name] = ObservedTopic(
            resource.name,
            len(metadata.topics[resource.name].partitions),
            {key: entry.value for key, entry in entries.items() if entry.value is not None},
        )
    return observed


def apply(admin: Any, plans: list[TopicPlan], *, fix: bool, timeout: float = 30.0) -> list[str]:
    """Create missing topics; with ``fix``, alter configs and add partitions too.
    Returns what was done, one line per action."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewPartitions,
        NewTopic,
        ResourceType,
    )

    done: list[str] = []
    creates = [
        NewTopic(
            p.spec.name, p.spec.partitions, p.spec.replication_factor, config=dict(p.spec.configs)
        )
        for p in plans
        if p.create
    ]
    if creates:
        for name, future in admin.create_topics(creates, request_timeout=timeout).items():
            future.result(timeout)
            done.append(f"{name}: created")
    if not fix:
        return done
    grow = [NewPartitions(p.spec.name, p.add_partitions) for p in plans if p.add_partitions]
    if grow:
        for name, future in admin.create_partitions(grow, request_timeout=timeout).items():
            future.result(timeout)
            done.append(f"{name}: partitions increased")
    alters = [
        ConfigResource(
            ResourceType.TOPIC,
            p.spec.name,
            incremental_configs=[
                ConfigEntry(key, new, incremental_operation=AlterConfigOpType.SET)
                for key, (_old, new) in sorted(p.config_changes.items())
            ],
        )
        for p in plans
        if p.config_changes
    ]
    if alters:
        for resource, future in admin.incremental_alter_configs(alters).items():
            future.result(timeout)
            done.append(f"{resource.name}: configs set")
    return done


def ensure(admin: Any, specs: list[TopicSpec], *, fix: bool, timeout: float = 30.0) -> list[str]:
    """Create the missing topics of ``specs`` (and with ``fix`` repair drift): idempotent."""
    observed = observe(admin, [spec.name for spec in specs], timeout=timeout)
    return apply(admin, plan(specs, observed), fix=fix, timeout=timeout)
