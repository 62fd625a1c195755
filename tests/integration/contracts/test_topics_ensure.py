"""``social-loyalty topics ensure`` against the real broker, on a catalog of its own
(a unique TOPIC_PREFIX): create, in sync, drift found, drift fixed."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    ResourceType,
)
from typer.testing import CliRunner

from services.cli import app
from services.contracts.topics import EVENTS, SNAPSHOTS, TopicSettings, catalog, observe
from services.runtime import kafka
from services.runtime.settings import KafkaSettings


@pytest.fixture
def prefix(
    kafka_settings: KafkaSettings, unique: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    name = unique("ensure") + "."
    monkeypatch.setenv("TOPIC_PREFIX", name)
    monkeypatch.setenv("TOPIC_PARTITIONS", "2")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    yield name
    admin = kafka.admin(kafka_settings)
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(name)]
    if mine:
        for future in admin.delete_topics(mine).values():
            future.result(30)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["topics", *args])
    return result.exit_code, result.output


def test_ensure_creates_then_reports_in_sync_then_fixes_drift(
    prefix: str, kafka_settings: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = run("ensure", "--dry-run")
    assert code == 1 and f"{prefix}social.events: missing" in out

    code, out = run("ensure")
    assert code == 0, out
    assert out.count(": created") == 13 and out.rstrip().endswith("in sync")  # 5 internal
    assert f"{prefix}social-loyalty.detector-keys-changelog: created" in out

    code, out = run("ensure")
    assert code == 0 and ": created" not in out and out.count(": in sync") == 13

    admin = kafka.admin(kafka_settings)
    events, snapshots = prefix + EVENTS, prefix + SNAPSHOTS
    resource = ConfigResource(
        ResourceType.TOPIC,
        events,
        incremental_configs=[
            ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)
    specs = catalog(TopicSettings(prefix=prefix, partitions=3))
    for future in admin.create_partitions([NewPartitions(snapshots, 3)]).values():
        future.result(30)  # more partitions than the catalog's 2: noted, not drift

    code, out = run("ensure")
    assert code == 1
    assert f"{events}: retention.ms=3600000, catalog says -1" in out
    assert "more than the catalog" in out

    code, out = run("ensure", "--fix")
    assert code == 0, out
    assert f"{events}: configs set" in out

    observed = observe(admin, [spec.name for spec in specs])
    assert observed[events].configs["retention.ms"] == "-1"
    assert observed[snapshots].partitions == 3

    # A catalog that wants more partitions (TOPIC_PARTITIONS=3) grows the topics.
    monkeypatch.setenv("TOPIC_PARTITIONS", "3")
    code, out = run("ensure")
    assert code == 1 and "partitions below catalog" in out
    code, out = run("ensure", "--fix")
    assert code == 0, out
    assert all(t.partitions == 3 for t in observe(admin, [s.name for s in specs]).values())


def test_list_prints_the_catalog(prefix: str) -> None:
    code, out = run("list")
    assert code == 0
    assert f"{prefix}social.events" in out and "-1" in out
