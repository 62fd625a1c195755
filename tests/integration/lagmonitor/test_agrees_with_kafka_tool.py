"""Acceptance: our offset lag is what Kafka's own consumer-group tool says, per partition."""

from __future__ import annotations

from collections.abc import Callable

from services.lagmonitor.core import MonitorState, evaluate
from services.lagmonitor.monitor import eval_config
from services.lagmonitor.sampler import Sampler
from services.lagmonitor.settings import LagMonitorSettings
from services.runtime import kafka
from services.runtime.settings import KafkaSettings
from tests.integration.lagmonitor.conftest import Member, commit, kafka_tool_describe, produce


def test_lag_per_partition_equals_kafka_consumer_groups_describe(
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    unique: Callable[[str], str],
    join_group: Callable[[str, str, int], Member],
) -> None:
    topic = make_topic("lag", partitions=3)
    produce(kafka_settings, topic, {0: 12, 1: 7, 2: 9})
    # Group without members: partition 0 at 5, partition 1 at 0, partition 2 fully consumed.
    idle = unique("social-loyalty.idle")
    commit(kafka_settings, idle, topic, {0: 5, 1: 0, 2: 9})
    # Group with a live member holding every partition.
    live = unique("social-loyalty.live")
    member = join_group(live, topic, 3)
    member.commit({0: 12, 1: 3, 2: 1})
    # An open transaction on partition 1: its records count in the log end offset
    # (high watermark) the tool reports, not in the last stable offset.
    txn = kafka.producer(kafka_settings, "lag-txn", transactional_id=unique("txn"))
    txn.init_transactions(30)
    txn.begin_transaction()
    for i in range(4):
        txn.produce(topic, value=b"open-%d" % i, partition=1)
    txn.flush(30)

    try:
        settings = LagMonitorSettings(kafka=kafka_settings, group_prefixes=(idle, live))
        sample = Sampler(settings).sample()
        member.heartbeat()
        tool = kafka_tool_describe(kafka_settings.bootstrap_servers, idle, live)
    finally:
        txn.abort_transaction(30)

    _, snapshot = evaluate(MonitorState(), sample, eval_config(settings))
    ours = {
        (g.group, p.topic, p.partition): (p.committed_offset, p.end_offset, p.lag)
        for g in snapshot.groups
        for p in g.partitions
    }
    theirs = {
        key: (int(row["CURRENT-OFFSET"]), int(row["LOG-END-OFFSET"]), int(row["LAG"]))
        for key, row in tool.items()
    }
    assert len(theirs) == 6
    assert ours == theirs
    # And the figures are the ones we set up (7 + 4 open transactional records on partition 1).
    assert ours[(idle, topic, 0)] == (5, 12, 7)
    assert ours[(idle, topic, 1)] == (0, 11, 11)
    assert ours[(idle, topic, 2)] == (9, 9, 0)
    assert ours[(live, topic, 1)] == (3, 11, 8)

    groups = {g.group: g for g in snapshot.groups}
    assert (groups[idle].state, groups[idle].members) == ("Empty", 0)
    assert (groups[live].state, groups[live].members) == ("Stable", 1)
    assert all(p.owned for p in groups[live].partitions)
    stable = {(t.topic, t.partition): t.stable_offset for t in snapshot.topics}
    assert stable[(topic, 1)] == 7  # the open transaction's records are past the LSO
    assert stable[(topic, 0)] == 12
