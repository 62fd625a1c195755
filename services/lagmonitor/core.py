"""From one raw sample of the cluster to the figures operators read.

``evaluate(state, sample, config) -> (state, snapshot)`` is the whole monitor:
the sampler fills a ``ClusterSample`` with what Kafka said, this module turns it
into offset lag, time lag and status, carrying the per-partition lookup tables
and Burrow windows from one sample to the next in ``MonitorState``. No Kafka,
HTTP or clock in here, so every rule is testable with plain values.

Offset lag is computed exactly as ``kafka-consumer-groups --describe`` does:
log end offset (the high watermark, ``ListOffsets`` latest with the default
read_uncommitted isolation) minus the committed offset, for every partition
that has a committed offset or is assigned to a member. For a read_committed
group the last stable offset can be lower while a transaction is open; we
report it beside the lag (``stable_offset``) but do not use it, so our figures
agree with Kafka's tool.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.lagmonitor import burrow, timelag
from services.lagmonitor.burrow import Status
from services.lagmonitor.timelag import TimeLagKind

PartitionKey = tuple[str, int]
"""(topic, partition): plain data, no Kafka type in the core."""


@dataclass(frozen=True, slots=True)
class Owner:
    """The group member a partition is assigned to, as the group description names it."""

    member_id: str
    client_id: str
    host: str


REPLAY_MARKER = ".replay."


def is_replay(group_id: str) -> bool:
    """Replay runs (DESIGN section 4) read history on purpose: alerts should ignore their lag."""
    return REPLAY_MARKER in group_id


def select_groups(
    group_ids: Iterable[str], prefixes: Sequence[str], *, all_groups: bool
) -> list[str]:
    """The groups this monitor watches, sorted: the system's own, or all of them."""
    return sorted({g for g in group_ids if all_groups or any(g.startswith(p) for p in prefixes)})


@dataclass(frozen=True, slots=True)
class GroupObservation:
    """What Kafka said about one group in one sample."""

    group_id: str
    state: str = "Unknown"
    members: int = 0
    assigned: frozenset[PartitionKey] = frozenset()
    committed: Mapping[PartitionKey, int] = field(default_factory=dict)
    error: str | None = None
    owners: Mapping[PartitionKey, Owner] = field(default_factory=dict)
    """Who holds each assigned partition (for the drill-down; not used by the rules)."""


@dataclass(frozen=True, slots=True)
class ClusterSample:
    """One sample of the cluster; ``time`` is when the end offsets were read."""

    time: float
    groups: tuple[GroupObservation, ...]
    end_offsets: Mapping[PartitionKey, int]
    stable_offsets: Mapping[PartitionKey, int] = field(default_factory=dict)
    earliest_offsets: Mapping[PartitionKey, int] = field(default_factory=dict)
    partition_errors: Mapping[PartitionKey, str] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class EvalConfig:
    window_size: int = 10
    table_capacity: int = 64
    stop_after_s: float = 50.0


@dataclass(frozen=True, slots=True)
class MonitorState:
    """What the monitor remembers between samples; entries not seen again are dropped."""

    tables: Mapping[PartitionKey, timelag.Table] = field(default_factory=dict)
    windows: Mapping[tuple[str, PartitionKey], burrow.Window] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed_offset: int | None
    end_offset: int | None
    stable_offset: int | None
    lag: int | None
    time_lag_s: float | None
    time_lag_kind: TimeLagKind
    status: Status
    owned: bool
    error: str | None = None
    earliest_offset: int | None = None
    owner: Owner | None = None


@dataclass(frozen=True, slots=True)
class GroupLag:
    group: str
    replay: bool
    state: str
    members: int
    status: Status
    partitions: tuple[PartitionLag, ...]
    error: str | None = None

    @property
    def total_lag(self) -> int:
        return sum(p.lag or 0 for p in self.partitions)

    @property
    def max_time_lag_s(self) -> float | None:
        known = [p.time_lag_s for p in self.partitions if p.time_lag_s is not None]
        return max(known, default=None)


@dataclass(frozen=True, slots=True)
class TopicOffset:
    topic: str
    partition: int
    end_offset: int
    stable_offset: int | None
    earliest_offset: int | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one sample tells: the single source of the metrics, JSON, page and CLI."""

    sampled_at: float
    groups: tuple[GroupLag, ...]
    topics: tuple[TopicOffset, ...]
    errors: tuple[str, ...] = ()
    duration_s: float = 0.0


def evaluate(
    state: MonitorState, sample: ClusterSample, config: EvalConfig
) -> tuple[MonitorState, Snapshot]:
    """Fold one sample into the state and describe the cluster as of that sample."""
    now = sample.time
    tables = {
        tp: timelag.add_point(state.tables.get(tp, ()), end, now, config.table_capacity)
        for tp, end in sample.end_offsets.items()
    }
    windows: dict[tuple[str, PartitionKey], burrow.Window] = {}
    groups: list[GroupLag] = []
    for observed in sorted(sample.groups, key=lambda g: g.group_id):
        partitions: list[PartitionLag] = []
        for tp in sorted(set(observed.committed) | observed.assigned):
            key = (observed.group_id, tp)
            row, window = _partition(
                observed,
                tp,
                sample=sample,
                table=tables.get(tp, ()),
                window=state.windows.get(key, ()),
                config=config,
            )
            partitions.append(row)
            if window:
                windows[key] = window
        statuses = [p.status for p in partitions]
        if observed.error:
            statuses.append(Status.ERR)
        groups.append(
            GroupLag(
                group=observed.group_id,
                replay=is_replay(observed.group_id),
                state=observed.state,
                members=observed.members,
                status=burrow.worst(statuses),
                partitions=tuple(partitions),
                error=observed.error,
            )
        )
    topics = tuple(
        TopicOffset(
            tp[0], tp[1], end, sample.stable_offsets.get(tp), sample.earliest_offsets.get(tp)
        )
        for tp, end in sorted(sample.end_offsets.items())
    )
    snapshot = Snapshot(
        sampled_at=now,
        groups=tuple(groups),
        topics=topics,
        errors=sample.errors,
        duration_s=sample.duration_s,
    )
    return MonitorState(tables=tables, windows=windows), snapshot


def _partition(
    observed: GroupObservation,
    tp: PartitionKey,
    *,
    sample: ClusterSample,
    table: timelag.Table,
    window: burrow.Window,
    config: EvalConfig,
) -> tuple[PartitionLag, burrow.Window]:
    committed = observed.committed.get(tp)
    end = sample.end_offsets.get(tp)
    owned = tp in observed.assigned
    error = sample.partition_errors.get(tp)
    if end is None and error is None:
        error = "end offset unknown"
    lag = None if committed is None or end is None else max(0, end - committed)
    status = Status.ERR if error else Status.OK
    if committed is not None and lag is not None:
        observation = burrow.Observation(committed, lag, sample.time)
        window = burrow.observe(window, observation, config.window_size, owned=owned)
        status = burrow.partition_status(
            window,
            lag=lag,
            now=sample.time,
            size=config.window_size,
            stop_after=config.stop_after_s,
        )
    spent = timelag.time_lag(table, committed, end, sample.time)
    row = PartitionLag(
        topic=tp[0],
        partition=tp[1],
        committed_offset=committed,
        end_offset=end,
        stable_offset=sample.stable_offsets.get(tp),
        lag=lag,
        time_lag_s=spent.seconds,
        time_lag_kind=spent.kind,
        status=status,
        owned=owned,
        error=error,
        earliest_offset=sample.earliest_offsets.get(tp),
        owner=observed.owners.get(tp),
    )
    return row, window


def partition_to_json(p: PartitionLag) -> dict[str, Any]:
    return {
        "topic": p.topic,
        "partition": p.partition,
        "committed_offset": p.committed_offset,
        "end_offset": p.end_offset,
        "stable_offset": p.stable_offset,
        "lag": p.lag,
        "time_lag_s": p.time_lag_s,
        "time_lag_kind": p.time_lag_kind.value,
        "status": p.status.value,
        "owned": p.owned,
        "error": p.error,
        "earliest_offset": p.earliest_offset,
        "owner": None
        if p.owner is None
        else {"member_id": p.owner.member_id, "client_id": p.owner.client_id, "host": p.owner.host},
    }


def snapshot_to_json(snapshot: Snapshot) -> dict[str, Any]:
    """The ``/api/lag`` document: the same figures as ``/metrics``, with nulls for unknowns."""
    return {
        "sampled_at": snapshot.sampled_at,
        "poll_duration_s": snapshot.duration_s,
        "errors": list(snapshot.errors),
        "groups": [
            {
                "group": g.group,
                "replay": g.replay,
                "state": g.state,
                "members": g.members,
                "status": g.status.value,
                "status_code": g.status.code,
                "total_lag": g.total_lag,
                "max_time_lag_s": g.max_time_lag_s,
                "error": g.error,
                "partitions": [partition_to_json(p) for p in g.partitions],
            }
            for g in snapshot.groups
        ],
        "topics": [
            {
                "topic": t.topic,
                "partition": t.partition,
                "end_offset": t.end_offset,
                "stable_offset": t.stable_offset,
                "earliest_offset": t.earliest_offset,
            }
            for t in snapshot.topics
        ],
    }


def worst_partitions(snapshot: Snapshot, limit: int = 10) -> list[tuple[str, PartitionLag]]:
    """The partitions most behind: by time lag, then offset lag (non-replay groups first)."""
    rows = [(g.group, p) for g in snapshot.groups for p in g.partitions if (p.lag or 0) > 0]
    rows.sort(
        key=lambda r: (
            is_replay(r[0]),
            -(r[1].time_lag_s if r[1].time_lag_s is not None else -1.0),
            -(r[1].lag or 0),
        )
    )
    return rows[:limit]
