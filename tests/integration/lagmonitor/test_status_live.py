"""Burrow statuses from real commits: a stuck member STALLs, a reset REWINDs, a
group nobody consumes STOPs, a member falling behind WARNs."""

from __future__ import annotations

import time
from collections.abc import Callable

from services.lagmonitor.burrow import Status
from services.lagmonitor.core import GroupLag, MonitorState, Snapshot, evaluate
from services.lagmonitor.monitor import eval_config
from services.lagmonitor.sampler import Sampler
from services.lagmonitor.settings import LagMonitorSettings
from services.runtime.settings import KafkaSettings
from tests.integration.lagmonitor.conftest import Member, commit, produce


class Watch:
    """Samples the cluster the way the server loop does, one call at a time."""

    def __init__(self, settings: LagMonitorSettings) -> None:
        self.sampler = Sampler(settings)
        self.config = eval_config(settings)
        self.state = MonitorState()

    def status(self, group: str) -> Status:
        self.state, snapshot = evaluate(self.state, self.sampler.sample(), self.config)
        return self.group(snapshot, group).status

    @staticmethod
    def group(snapshot: Snapshot, name: str) -> GroupLag:
        return next(g for g in snapshot.groups if g.group == name)


def test_stall_then_rewind_then_warn_through_a_live_member(
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    unique: Callable[[str], str],
    join_group: Callable[[str, str, int], Member],
) -> None:
    topic = make_topic("status", partitions=1)
    produce(kafka_settings, topic, {0: 10})
    group = unique("social-loyalty.status")
    member = join_group(group, topic, 1)
    watch = Watch(
        LagMonitorSettings(
            kafka=kafka_settings, group_prefixes=(group,), window_size=3, sample_interval_s=5
        )
    )

    member.commit({0: 4})
    stuck = [watch.status(group) for _ in range(3)]
    assert stuck == [Status.OK, Status.OK, Status.STALL]

    member.commit({0: 2})
    assert watch.status(group) is Status.REWIND

    # Consuming, but the log grows faster: WARN once the rewind has left the window.
    statuses = []
    for step in range(1, 5):
        produce(kafka_settings, topic, {0: 5})
        member.commit({0: 2 + step})
        member.heartbeat()
        statuses.append(watch.status(group))
    assert statuses[-1] is Status.WARN, statuses


def test_group_nobody_consumes_stops_after_the_window(
    kafka_settings: KafkaSettings, make_topic: Callable[..., str], unique: Callable[[str], str]
) -> None:
    topic = make_topic("stop", partitions=1)
    produce(kafka_settings, topic, {0: 3})
    group = unique("social-loyalty.stop")
    commit(kafka_settings, group, topic, {0: 1})
    window, interval = 2, 0.25
    watch = Watch(
        LagMonitorSettings(
            kafka=kafka_settings,
            group_prefixes=(group,),
            window_size=window,
            sample_interval_s=interval,
        )
    )
    assert watch.status(group) is Status.OK
    time.sleep(window * interval + 0.2)
    assert watch.status(group) is Status.STOP
    commit(kafka_settings, group, topic, {0: 3})
    assert watch.status(group) is Status.OK
