"""``python -m services.cli lag show`` against real groups: the table an operator reads
says what Kafka's own consumer-group tool says, and what ``--json`` says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

from services.lagmonitor.cli import GROUP_COLUMNS, PARTITION_COLUMNS
from services.runtime.settings import KafkaSettings
from tests.integration.lagmonitor.conftest import (
    REPO,
    Member,
    commit,
    kafka_tool_describe,
    produce,
)


def lag_show(bootstrap: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "lag", "show", *args],
        cwd=REPO,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def parse(
    text: str,
) -> tuple[dict[str, dict[str, str]], dict[tuple[str, str, int | str], dict[str, str]]]:
    groups_block, partitions_block = text.strip().split("\n\n")
    group_lines = groups_block.splitlines()
    assert group_lines[0].split() == list(GROUP_COLUMNS)
    groups = {}
    for line in group_lines[1:]:
        row = dict(zip(GROUP_COLUMNS, line.split(), strict=True))
        groups[row["GROUP"]] = row
    partition_lines = partitions_block.splitlines()
    assert partition_lines[0].split() == list(PARTITION_COLUMNS)
    partitions = {}
    for line in partition_lines[1:]:
        row = dict(zip(PARTITION_COLUMNS, line.split(), strict=True))
        number = row["PARTITION"]  # "-" for a group with no partition, as Kafka's tool
        partitions[(row["GROUP"], row["TOPIC"], int(number) if number.isdigit() else number)] = row
    return groups, partitions


def test_lag_show_prints_the_figures_kafkas_tool_prints(
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    unique: Callable[[str], str],
    join_group: Callable[[str, str, int], Member],
) -> None:
    bootstrap = kafka_settings.bootstrap_servers
    topic = make_topic("cli", partitions=3)
    produce(kafka_settings, topic, {0: 30, 1: 12, 2: 4})
    prefix = unique("social-loyalty.cli")
    live, idle, replay = f"{prefix}.live", f"{prefix}.idle", f"{prefix}.replay.offer-2"
    member = join_group(live, topic, 3)
    member.commit({0: 10, 1: 12, 2: 1})
    commit(kafka_settings, idle, topic, {0: 29, 2: 0})
    commit(kafka_settings, replay, topic, {1: 3})

    started = time.monotonic()
    done = lag_show(bootstrap, "--group", prefix, "--pause", "0.5")
    member.heartbeat()
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    groups, partitions = parse(done.stdout)
    tool = kafka_tool_describe(bootstrap, live, idle, replay)

    assert set(partitions) == set(tool)
    assert len(partitions) == 3 + 2 + 1
    for key, theirs in tool.items():
        ours = partitions[key]
        for column in ("CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"):
            assert ours[column] == theirs[column], (key, column)
    assert partitions[(live, topic, 0)]["LAG"] == "20"
    assert partitions[(idle, topic, 2)]["LAG"] == "4"

    assert set(groups) == {live, idle, replay}
    assert [groups[live][c] for c in ("REPLAY", "STATE", "MEMBERS", "LAG")] == [
        "no",
        "Stable",
        "1",
        str(20 + 0 + 3),
    ]
    assert [groups[idle][c] for c in ("STATE", "MEMBERS", "LAG")] == ["Empty", "0", "5"]
    assert groups[replay]["REPLAY"] == "yes"
    assert all(g["STATUS"] == "OK" for g in groups.values())  # two samples: not enough to judge
    print(f"lag show: {took:.1f} s for 2 samples 0.5 s apart")

    as_json = lag_show(bootstrap, "--group", live, "--json", "--samples", "1")
    assert as_json.returncode == 0, as_json.stderr
    (document_group,) = json.loads(as_json.stdout)["groups"]
    assert {p["partition"]: p["lag"] for p in document_group["partitions"]} == {0: 20, 1: 0, 2: 3}

    nobody = unique("social-loyalty.nobody")
    nothing = lag_show(bootstrap, "--group", nobody, "--samples", "1")
    assert nothing.returncode == 0
    assert nothing.stdout.startswith(f"no consumer groups under '{nobody}' on {bootstrap}; ")


def test_lag_show_says_when_kafka_does_not_answer() -> None:
    started = time.monotonic()
    done = lag_show("127.0.0.1:1", "--samples", "1", KAFKA_CONNECT_TIMEOUT_S="2")
    assert done.returncode == 2
    assert done.stderr.startswith("error:")
    assert len(done.stderr.strip().splitlines()) == 1
    assert "127.0.0.1:1" in done.stderr
    assert time.monotonic() - started < 30


def test_lag_show_prints_dashes_for_groups_without_committed_offsets(
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    unique: Callable[[str], str],
    join_group: Callable[[str, str, int], Member],
) -> None:
    """As kafka-consumer-groups: a member that never committed has "-" for the offset
    and the lag; a group whose members left before committing has no partition at all
    (this crashed with TypeError: 'int' object is not iterable)."""
    from services.runtime import kafka

    topic = make_topic("cli-nocommit", partitions=2)
    produce(kafka_settings, topic, {0: 5, 1: 7})
    prefix = unique("social-loyalty.cli-nocommit")
    live, gone = f"{prefix}.live", f"{prefix}.gone"
    join_group(live, topic, 2)
    leaver = kafka.consumer(kafka_settings, gone)
    leaver.subscribe([topic])
    deadline = time.monotonic() + 20
    while not leaver.assignment():
        assert time.monotonic() < deadline, "the leaver never got its partitions"
        leaver.poll(0.2)
    leaver.close()

    done = lag_show(kafka_settings.bootstrap_servers, "--group", prefix, "--samples", "1")
    assert done.returncode == 0, done.stderr
    groups, partitions = parse(done.stdout)
    assert groups[gone]["STATE"] == "Empty"
    assert groups[gone]["LAG"] == "-"
    row = partitions[(gone, "-", "-")]
    assert (row["CURRENT-OFFSET"], row["LOG-END-OFFSET"], row["LAG"]) == ("-", "-", "-")
    for partition, end in ((0, "5"), (1, "7")):
        row = partitions[(live, topic, partition)]
        assert (row["CURRENT-OFFSET"], row["LOG-END-OFFSET"], row["LAG"]) == ("-", end, "-")

    as_json = lag_show(kafka_settings.bootstrap_servers, "--group", prefix, "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    by_group = {g["group"]: g for g in json.loads(as_json.stdout)["groups"]}
    assert by_group[gone]["partitions"] == []
    assert {p["committed_offset"] for p in by_group[live]["partitions"]} == {None}
