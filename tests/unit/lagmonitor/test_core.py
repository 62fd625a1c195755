"""From raw samples to the figures: lag, time lag, status, and what vanishes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.lagmonitor.burrow import Status
from services.lagmonitor.core import (
    ClusterSample,
    EvalConfig,
    GroupObservation,
    MonitorState,
    Owner,
    Snapshot,
    evaluate,
    is_replay,
    select_groups,
    snapshot_to_json,
    worst_partitions,
)
from services.lagmonitor.timelag import TimeLagKind

CONFIG = EvalConfig(window_size=3, table_capacity=16, stop_after_s=30.0)
T = "social.events"


def group(
    name: str = "social-loyalty.rules",
    committed: dict[tuple[str, int], int] | None = None,
    assigned: set[tuple[str, int]] | None = None,
    **kwargs: object,
) -> GroupObservation:
    return GroupObservation(
        group_id=name,
        state=str(kwargs.get("state", "Stable" if assigned else "Empty")),
        members=int(kwargs.get("members", 1 if assigned else 0)),  # type: ignore[call-overload]
        assigned=frozenset(assigned or ()),
        committed=committed or {},
        error=kwargs.get("error"),  # type: ignore[arg-type]
    )


def run(*samples: ClusterSample, config: EvalConfig = CONFIG) -> list[Snapshot]:
    state, out = MonitorState(), []
    for sample in samples:
        state, snapshot = evaluate(state, sample, config)
        out.append(snapshot)
    return out


def test_lag_is_end_minus_committed_per_partition_like_kafkas_tool() -> None:
    sample = ClusterSample(
        time=100.0,
        groups=(group(committed={(T, 0): 5, (T, 1): 0, (T, 2): 30}),),
        end_offsets={(T, 0): 10, (T, 1): 20, (T, 2): 30},
    )
    (snapshot,) = run(sample)
    rows = {p.partition: p for p in snapshot.groups[0].partitions}
    assert {p: (r.committed_offset, r.end_offset, r.lag) for p, r in rows.items()} == {
        0: (5, 10, 5),
        1: (0, 20, 20),
        2: (30, 30, 0),
    }
    assert snapshot.groups[0].total_lag == 25
    assert rows[2].time_lag_s == 0.0
    assert rows[0].time_lag_kind is TimeLagKind.UNKNOWN  # one sample cannot tell time


@given(st.integers(0, 10**12), st.integers(0, 10**12))
def test_lag_is_never_negative(committed: int, end: int) -> None:
    (snapshot,) = run(
        ClusterSample(
            time=1.0, groups=(group(committed={(T, 0): committed}),), end_offsets={(T, 0): end}
        )
    )
    assert snapshot.groups[0].partitions[0].lag == max(0, end - committed)


def test_assigned_partition_without_commit_is_listed_without_lag() -> None:
    (snapshot,) = run(
        ClusterSample(
            time=1.0,
            groups=(group(committed={(T, 0): 3}, assigned={(T, 0), (T, 1)}),),
            end_offsets={(T, 0): 3, (T, 1): 9},
        )
    )
    rows = snapshot.groups[0].partitions
    assert [(r.partition, r.lag, r.owned) for r in rows] == [(0, 0, True), (1, None, True)]
    assert rows[1].status is Status.OK


def test_time_lag_comes_from_earlier_samples_of_the_end_offset() -> None:
    committed = {(T, 0): 150}
    snapshots = run(
        ClusterSample(time=0.0, groups=(group(committed=committed),), end_offsets={(T, 0): 100}),
        ClusterSample(time=10.0, groups=(group(committed=committed),), end_offsets={(T, 0): 200}),
        ClusterSample(time=20.0, groups=(group(committed=committed),), end_offsets={(T, 0): 300}),
    )
    row = snapshots[-1].groups[0].partitions[0]
    # The end was at 150 half-way between the samples at 0 s and 10 s: 15 s ago.
    assert row.lag == 150
    assert row.time_lag_s == pytest.approx(15.0)
    assert row.time_lag_kind is TimeLagKind.INTERPOLATED
    assert snapshots[-1].groups[0].max_time_lag_s == pytest.approx(15.0)


def test_a_member_stuck_on_an_offset_stalls_and_the_group_is_as_bad() -> None:
    tp = (T, 0)
    samples = [
        ClusterSample(
            time=float(i * 5),
            groups=(group(committed={tp: 10, (T, 1): 50}, assigned={tp, (T, 1)}),),
            end_offsets={tp: 20 + i, (T, 1): 50},
        )
        for i in range(3)
    ]
    snapshots = run(*samples)
    assert [s.groups[0].partitions[0].status for s in snapshots] == [
        Status.OK,
        Status.OK,
        Status.STALL,
    ]
    assert snapshots[-1].groups[0].partitions[1].status is Status.OK
    assert snapshots[-1].groups[0].status is Status.STALL


def test_a_group_without_members_and_with_lag_stops_after_the_window() -> None:
    tp = (T, 0)
    samples = [
        ClusterSample(time=t, groups=(group(committed={tp: 10}),), end_offsets={tp: 20})
        for t in (0.0, 10.0, 29.0, 31.0)
    ]
    assert [s.groups[0].status for s in run(*samples)] == [
        Status.OK,
        Status.OK,
        Status.OK,
        Status.STOP,
    ]


def test_committing_an_older_offset_is_rewind() -> None:
    tp = (T, 0)
    snapshots = run(
        ClusterSample(time=0.0, groups=(group(committed={tp: 50}),), end_offsets={tp: 60}),
        ClusterSample(time=5.0, groups=(group(committed={tp: 5}),), end_offsets={tp: 60}),
    )
    assert snapshots[-1].groups[0].partitions[0].status is Status.REWIND


def test_unreadable_end_offset_is_err_and_so_is_the_group() -> None:
    (snapshot,) = run(
        ClusterSample(
            time=1.0,
            groups=(group(committed={(T, 0): 1, (T, 1): 1}),),
            end_offsets={(T, 0): 1},
            partition_errors={(T, 1): "UNKNOWN_TOPIC_OR_PART"},
        )
    )
    rows = snapshot.groups[0].partitions
    assert rows[1].status is Status.ERR and rows[1].error == "UNKNOWN_TOPIC_OR_PART"
    assert rows[1].lag is None
    assert snapshot.groups[0].status is Status.ERR


def test_group_that_cannot_be_described_is_err() -> None:
    (snapshot,) = run(
        ClusterSample(time=1.0, groups=(group(error="COORDINATOR_NOT_AVAILABLE"),), end_offsets={})
    )
    assert snapshot.groups[0].status is Status.ERR


def test_vanished_groups_and_partitions_leave_no_state() -> None:
    first = ClusterSample(
        time=1.0,
        groups=(group("social-loyalty.a", committed={(T, 0): 1}),),
        end_offsets={(T, 0): 5},
    )
    state, _ = evaluate(MonitorState(), first, CONFIG)
    assert state.windows and state.tables
    state, snapshot = evaluate(state, ClusterSample(time=2.0, groups=(), end_offsets={}), CONFIG)
    assert snapshot.groups == () and snapshot.topics == ()
    assert not state.windows and not state.tables


def test_replay_groups_are_marked() -> None:
    assert is_replay("social-loyalty.rules.replay.offer-7")
    # The replay command's groups: social-loyalty.replay.<offer>.<run>.
    assert is_replay("social-loyalty.replay.likes-5-then-1.20261125T140915Z")
    assert not is_replay("social-loyalty.rules")
    assert not is_replay("social-loyalty.replayer")
    (snapshot,) = run(
        ClusterSample(time=1.0, groups=(group("social-loyalty.rules.replay.x"),), end_offsets={})
    )
    assert snapshot.groups[0].replay


def test_select_groups_by_prefix_or_all() -> None:
    ids = ["social-loyalty.rules", "other", "social-loyalty.actions", "social-loyalty.rules"]
    assert select_groups(ids, ("social-loyalty",), all_groups=False) == [
        "social-loyalty.actions",
        "social-loyalty.rules",
    ]
    assert select_groups(ids, ("social-loyalty",), all_groups=True)[0] == "other"
    assert select_groups(ids, (), all_groups=False) == []


def test_json_has_the_same_figures_and_nulls_for_unknowns() -> None:
    owner = Owner("consumer-1-abc", "rules-worker-1", "10.0.0.7")
    observed = group(committed={(T, 0): 2}, assigned={(T, 0), (T, 1)})
    (snapshot,) = run(
        ClusterSample(
            time=7.0,
            groups=(
                GroupObservation(
                    **{
                        f: getattr(observed, f)
                        for f in ("group_id", "state", "members", "assigned", "committed")
                    },
                    owners={(T, 0): owner},
                ),
            ),
            end_offsets={(T, 0): 9, (T, 1): 4},
            stable_offsets={(T, 0): 8, (T, 1): 4},
            earliest_offsets={(T, 0): 1},
        )
    )
    doc = snapshot_to_json(snapshot)
    g = doc["groups"][0]
    assert (g["status"], g["status_code"], g["total_lag"], g["members"]) == ("OK", 0, 7, 1)
    assert g["partitions"][0] | {} == {
        "topic": T,
        "partition": 0,
        "committed_offset": 2,
        "end_offset": 9,
        "stable_offset": 8,
        "earliest_offset": 1,
        "lag": 7,
        "time_lag_s": None,
        "time_lag_kind": "unknown",
        "status": "OK",
        "owned": True,
        "owner": {"member_id": "consumer-1-abc", "client_id": "rules-worker-1", "host": "10.0.0.7"},
        "error": None,
    }
    assert g["partitions"][1]["lag"] is None
    assert g["partitions"][1]["owner"] is None
    assert g["partitions"][1]["earliest_offset"] is None
    assert doc["topics"] == [
        {"topic": T, "partition": 0, "end_offset": 9, "stable_offset": 8, "earliest_offset": 1},
        {"topic": T, "partition": 1, "end_offset": 4, "stable_offset": 4, "earliest_offset": None},
    ]


def test_worst_partitions_put_real_groups_first_then_oldest() -> None:
    snapshots = run(
        ClusterSample(
            time=0.0,
            groups=(
                group("a", committed={(T, 0): 0, (T, 1): 0}),
                group("b.replay.x", committed={(T, 0): 0}),
            ),
            end_offsets={(T, 0): 100, (T, 1): 10},
        ),
        ClusterSample(
            time=10.0,
            groups=(
                group("a", committed={(T, 0): 0, (T, 1): 10}),
                group("b.replay.x", committed={(T, 0): 0}),
            ),
            end_offsets={(T, 0): 200, (T, 1): 20},
        ),
    )
    rows = worst_partitions(snapshots[-1])
    assert [(g, p.partition) for g, p in rows] == [("a", 0), ("a", 1), ("b.replay.x", 0)]
