"""The Kafka edge of the monitor: one ``sample()`` asks the cluster what ``core`` needs.

Per sample, with every request of a step in flight at once:
``list_consumer_groups`` -> ``describe_consumer_groups`` (state, members and
their assignments) and ``list_consumer_group_offsets`` (one request per group,
the API takes one group at a time) -> ``list_offsets`` with
``OffsetSpec.latest()`` for every partition any watched group touches (then the
last stable and the earliest offsets, for the page's drill-down). Committed
offsets are read before end offsets, as Kafka's own tool does, so a lag is never
negative because of the order of the reads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from services.lagmonitor.core import (
    ClusterSample,
    GroupObservation,
    Owner,
    PartitionKey,
    select_groups,
)
from services.lagmonitor.settings import LagMonitorSettings
from services.runtime import kafka

log = logging.getLogger(__name__)

# The names Kafka's tool prints, so the page and the CLI read like it.
_STATE_NAMES = {
    ConsumerGroupState.STABLE: "Stable",
    ConsumerGroupState.EMPTY: "Empty",
    ConsumerGroupState.PREPARING_REBALANCING: "PreparingRebalance",
    ConsumerGroupState.COMPLETING_REBALANCING: "CompletingRebalance",
    ConsumerGroupState.DEAD: "Dead",
    ConsumerGroupState.UNKNOWN: "Unknown",
}


def _reason(exc: BaseException | KafkaError) -> str:
    if isinstance(exc, KafkaError):  # the group listing's errors come as plain KafkaErrors
        return str(exc.str())
    if isinstance(exc, KafkaException) and exc.args:
        err = exc.args[0]
        return str(getattr(err, "str", lambda: err)())
    return f"{type(exc).__name__}: {exc}"


def _denied_hint(exc: BaseException) -> str:
    """What to do about a topic the monitor may not describe (the CLI, run as admin, can)."""
    err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        return (
            ": the monitor's Kafka principal may not Describe this topic "
            "(grant it in services/ops/kafka_access.py)"
        )
    return ""


class KafkaUnreachableError(Exception):
    """No broker answered the group listing: the sample has nothing to say about lag."""


def _host(host: object) -> str:
    """The broker reports a member's host as it saw the connection, e.g. ``/127.0.0.1``."""
    return str(host or "").lstrip("/")


def _state_name(state: object) -> str:
    if isinstance(state, ConsumerGroupState):
        return _STATE_NAMES.get(state, state.name.title())
    return str(state) if state is not None else "Unknown"


class Sampler:
    """Reads one ``ClusterSample``; owns its admin client."""

    def __init__(
        self,
        settings: LagMonitorSettings,
        *,
        admin: AdminClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.admin = admin or kafka.admin(settings.kafka, "lagmonitor")
        self.clock = clock
        self.timeout = settings.request_timeout_s

    def sample(
        self, prefixes: Iterable[str] | None = None, *, all_groups: bool | None = None
    ) -> ClusterSample:
        """One consistent-enough picture of every watched group.

        Failures of one group or one partition become errors in the sample (the
        group or partition is reported as ERR); a cluster that does not answer
        the group listing raises ``KafkaUnreachableError``. The admin client
        does not raise for that itself: it hands back an empty listing with a
        timeout among its errors, which would read as "no groups, all caught up".
        """
        started = time.monotonic()
        errors: list[str] = []
        listed = self.admin.list_consumer_groups(request_timeout=self.timeout).result(
            self.timeout + 5
        )
        errors.extend(_reason(e) for e in (listed.errors or []))
        if errors and not listed.valid:
            raise KafkaUnreachableError(
                f"no broker at {self.settings.kafka.bootstrap_servers} answered "
                f"({'; '.join(dict.fromkeys(errors))})"
            )
        group_ids = select_groups(
            (g.group_id for g in listed.valid or []),
            tuple(self.settings.group_prefixes if prefixes is None else prefixes),
            all_groups=self.settings.all_groups if all_groups is None else all_groups,
        )
        groups = self._groups(group_ids)
        partitions = {tp for g in groups for tp in (*g.committed, *g.assigned)}
        end_offsets, partition_errors = self._offsets(partitions, IsolationLevel.READ_UNCOMMITTED)
        sampled_at = self.clock()
        stable: Mapping[PartitionKey, int] = {}
        if self.settings.sample_stable_offsets:
            stable, _ = self._offsets(partitions, IsolationLevel.READ_COMMITTED)
        earliest, _ = self._offsets(
            partitions,
            IsolationLevel.READ_UNCOMMITTED,
            OffsetSpec.earliest(),  # type: ignore[no-untyped-call]
        )
        return ClusterSample(
            time=sampled_at,
            groups=tuple(groups),
            end_offsets=end_offsets,
            stable_offsets=stable,
            earliest_offsets=earliest,
            partition_errors=partition_errors,
            errors=tuple(errors),
            duration_s=time.monotonic() - started,
        )

    def _groups(self, group_ids: list[str]) -> list[GroupObservation]:
        if not group_ids:
            return []
        described = self.admin.describe_consumer_groups(group_ids, request_timeout=self.timeout)
        offsets = {
            g: self.admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(g)], request_timeout=self.timeout
            )[g]
            for g in group_ids
        }
        result = []
        for group_id in group_ids:
            fields: dict[str, Any] = {"group_id": group_id}
            try:
                description = described[group_id].result(self.timeout + 5)
                fields["state"] = _state_name(description.state)
                fields["members"] = len(description.members)
                owners = {
                    (tp.topic, tp.partition): Owner(
                        member.member_id, member.client_id, _host(member.host)
                    )
                    for member in description.members
                    for tp in (member.assignment.topic_partitions or [])
                }
                fields["assigned"] = frozenset(owners)
                fields["owners"] = owners
                committed = offsets[group_id].result(self.timeout + 5)
                fields["committed"] = {
                    (tp.topic, tp.partition): tp.offset
                    for tp in committed.topic_partitions or []
                    if tp.error is None and tp.offset >= 0
                }
            except (KafkaException, TimeoutError) as exc:
                fields["error"] = _reason(exc)
                log.warning("group %s: %s", group_id, fields["error"])
            result.append(GroupObservation(**fields))
        return result

    def _offsets(
        self,
        partitions: set[PartitionKey],
        isolation: IsolationLevel,
        spec: OffsetSpec | None = None,
    ) -> tuple[dict[PartitionKey, int], dict[PartitionKey, str]]:
        """``spec`` (default: latest) offsets of every partition, and why any could not be read."""
        if not partitions:
            return {}, {}
        wanted = spec or OffsetSpec.latest()  # type: ignore[no-untyped-call]
        request = {TopicPartition(t, p): wanted for t, p in sorted(partitions)}
        futures = self.admin.list_offsets(
            request, isolation_level=isolation, request_timeout=self.timeout
        )
        found: dict[PartitionKey, int] = {}
        failed: dict[PartitionKey, str] = {}
        for tp, future in futures.items():
            try:
                found[(tp.topic, tp.partition)] = future.result(self.timeout + 5).offset
            except (KafkaException, TimeoutError) as exc:
                failed[(tp.topic, tp.partition)] = _reason(exc) + _denied_hint(exc)
        return found, failed
