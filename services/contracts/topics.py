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
from dataclasses import dataclass, field, replace
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
    replication_factor: int | None = Field(
        default=None,
        ge=1,
        description="Unset: from the cluster, 3 replicas (and min.insync.replicas=2) on three "
        "or more brokers, one per broker below that (see replicated()).",
    )

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
    """0: not decided yet, the cluster's size decides (:func:`replicated`)."""
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


def _insync(replication_factor: int) -> dict[str, str]:
    """Three copies: a write is acknowledged once two have it, so one broker can be lost
    without losing an acknowledged write or refusing new ones."""
    return {"min.insync.replicas": "2"} if replication_factor >= 3 else {}


def _configs(retention_ms: int, settings: TopicSettings, **extra: str) -> dict[str, str]:
    configs = {"cleanup.policy": "delete", "retention.ms": str(retention_ms)}
    configs.update(_insync(settings.replication_factor or 0))
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
        settings.replication_factor or 0,
        configs,
        (service,),
        (service,),
        description,
        partitioner="murmur2_random",
    )


def _compacted(settings: TopicSettings) -> dict[str, str]:
    return {"cleanup.policy": "compact", **_insync(settings.replication_factor or 0)}


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


def detector_topics(settings: TopicSettings, app_id: str) -> list[TopicSpec]:
    """The detector's internal topics (services/detector/app.py), named as Faust names
    them (``<app id>-<table>-changelog``; Faust does not know ``TOPIC_PREFIX``, so the
    app id is the whole stem). Each is partitioned like ``social.snapshots``: Faust
    refuses a changelog with another count, and so does the detector before it starts."""
    # No retention.ms: it means nothing under compaction, and the changelogs Faust
    # created before they were in the catalog do not have it (no drift on upgrade).
    compacted = _compacted(settings)

    def internal(name: str, configs: dict[str, str], description: str) -> TopicSpec:
        return _internal(name, settings, configs, "detector", description)

    tables = {
        "keys": "The keys table (snapshot key -> the key's last state), partitioned like "
        "social.snapshots.",
        "groups": "The groups table (manifest key and partition -> the run's posts), "
        "partitioned like social.snapshots.",
    }
    return [
        internal(f"{app_id}-{table}-changelog", compacted, tables[table])
        for table in DETECTOR_TABLES
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
    parts, rf = settings.partitions, settings.replication_factor or 0

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
            "One Kafka transaction per collection run: member buckets, post facets, and last "
            "the run's manifest, a copy in every partition.",
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


def replication_for(brokers: int) -> int:
    """The replication factor a cluster of ``brokers`` gets when none is set: three
    (Kafka's usual production choice, with ``min.insync.replicas=2``), or one copy per
    broker on a smaller cluster (a one-broker development stack)."""
    return min(3, brokers)


class ReplicationError(ValueError):
    """The catalog asks more replicas than the cluster has brokers."""


def replicated(specs: list[TopicSpec], brokers: int) -> list[TopicSpec]:
    """``specs`` with the replication decided for a cluster of ``brokers``: an undecided
    factor (``TOPIC_REPLICATION_FACTOR`` unset) becomes :func:`replication_for`, and
    ``min.insync.replicas=2`` comes with three replicas; an explicit factor larger than
    the cluster is refused before anything is created."""
    out = []
    for spec in specs:
        factor = spec.replication_factor or replication_for(brokers)
        if factor > brokers:
            raise ReplicationError(
                f"{spec.name}: replication factor {factor} but the cluster has {brokers} "
                f"broker(s); set TOPIC_REPLICATION_FACTOR to at most {brokers} or leave it "
                "unset (it then follows the cluster)"
            )
        if spec.replication_factor:
            out.append(spec)
            continue
        configs = {**spec.configs, **_insync(factor)}
        out.append(replace(spec, replication_factor=factor, configs=configs))
    return out


def broker_count(admin: Any, timeout: float = 30.0) -> int:
    """How many brokers the cluster has registered."""
    return len(admin.list_topics(timeout=timeout).brokers)


# ----------------------------------------------------------------- planning (pure)


@dataclass(frozen=True)
class ObservedTopic:
    """What the cluster has for one topic."""

    name: str
    partitions: int
    configs: Mapping[str, str]
    assignment: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    """Partition -> its replicas (broker ids), as the metadata has them."""
    behind: tuple[int, ...] = ()
    """Partitions whose in-sync replicas are fewer than their replicas right now."""

    @property
    def replicas(self) -> int:
        """The fewest replicas any partition has (0 when not known)."""
        return min((len(r) for r in self.assignment.values()), default=0)


REASSIGN_TOOL = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"


def reassignment(observed: ObservedTopic, factor: int, brokers: list[int]) -> dict[str, Any]:
    """The partitions of ``observed`` with fewer than ``factor`` replicas, each keeping
    its replicas (its leader first) and gaining brokers round-robin: the plan Kafka's
    reassignment tool (``--reassignment-json-file``) executes."""
    partitions = []
    for partition, replicas in sorted(observed.assignment.items()):
        if len(replicas) >= factor:
            continue
        wanted = list(replicas)
        for offset in range(len(brokers)):
            candidate = brokers[(partition + offset) % len(brokers)]
            if len(wanted) < factor and candidate not in wanted:
                wanted.append(candidate)
        partitions.append({"topic": observed.name, "partition": partition, "replicas": wanted})
    return {"version": 1, "partitions": partitions}


@dataclass(frozen=True)
class TopicPlan:
    """What differs between the catalog and the cluster for one topic."""

    spec: TopicSpec
    create: bool = False
    add_partitions: int = 0  # target partition count, 0 when fine
    config_changes: Mapping[str, tuple[str | None, str]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    replicas: int = 0  # the fewest any partition has, when below the catalog's factor

    @property
    def in_sync(self) -> bool:
        return not (self.create or self.add_partitions or self.config_changes or self.replicas)

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
        if self.replicas:
            lines.append(
                f"{self.spec.name}: {self.replicas} replica(s) on some partitions, the catalog "
                f"says {self.spec.replication_factor}; Kafka adds replicas only by reassignment: "
                "`social-loyalty topics ensure --reassignment-json FILE` writes the plan, then "
                f"`./run stack kafka-tool {REASSIGN_TOOL} --bootstrap-server BROKERS "
                "--reassignment-json-file FILE --execute` (and `--verify` until it is done)"
            )
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
        if current.behind:
            notes += (
                f"under-replicated now: partitions {list(current.behind)} have fewer in-sync "
                "replicas than replicas (a broker is down or catching up)",
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
                replicas=current.replicas if current.replicas < spec.replication_factor else 0,
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
        partitions = metadata.topics[resource.name].partitions
        observed[resource.name] = ObservedTopic(
            resource.name,
            len(partitions),
            {key: entry.value for key, entry in entries.items() if entry.value is not None},
            {n: tuple(p.replicas) for n, p in partitions.items()},
            tuple(sorted(n for n, p in partitions.items() if len(p.isrs) < len(p.replicas))),
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
            p.spec.name,
            p.spec.partitions,
            # Undecided (plan() without replicated()): the broker's default.replication.factor.
            p.spec.replication_factor or -1,
            config=dict(p.spec.configs),
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
    """Create the missing topics of ``specs`` (and with ``fix`` repair drift): idempotent.
    An undecided replication factor follows the cluster (:func:`replicated`)."""
    specs = replicated(specs, broker_count(admin, timeout))
    observed = observe(admin, [spec.name for spec in specs], timeout=timeout)
    return apply(admin, plan(specs, observed), fix=fix, timeout=timeout)
