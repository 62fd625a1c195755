"""The catalog, the drift planner, and asyncapi.yaml kept in step with both."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from services.contracts.asyncapi import dump, render
from services.contracts.models import COMMAND_TYPES, RECORD_TYPES
from services.contracts.topics import (
    EVENTS,
    ObservedTopic,
    ReplicationError,
    TopicSettings,
    catalog,
    plan,
    reassignment,
    replicated,
)

ROOT = Path(__file__).resolve().parents[3]
SETTINGS = TopicSettings.model_construct()


def test_catalog_has_the_decided_topics_and_retention() -> None:
    specs = {spec.name: spec for spec in catalog(SETTINGS)}
    assert set(specs) == {
        "social.snapshots", "social.events", "loyalty.commands.bonus", "loyalty.commands.notify",
        "loyalty.commands.mailing", "loyalty.commands.counter", "loyalty.outcomes",
        "loyalty.deadletter", "social-loyalty.rules.by-member",
        "social-loyalty.rules.links-changelog", "social-loyalty.rules.members-changelog",
        "social-loyalty.detector-keys-changelog", "social-loyalty.detector-groups-changelog",
    }  # fmt: skip
    assert specs["social.events"].configs["retention.ms"] == "-1"
    assert specs["social.events"].cleanup_policy == "delete"
    assert specs["social.snapshots"].retention_ms == 7 * 86_400_000
    assert specs["loyalty.deadletter"].retention_ms == 30 * 86_400_000
    # Replication is undecided (0) until the cluster's size decides it: replicated().
    assert all(spec.partitions == 6 and spec.replication_factor == 0 for spec in specs.values())
    assert not any("min.insync.replicas" in spec.configs for spec in specs.values())


def test_the_rules_workers_internal_topics_are_in_the_catalog_with_their_partitioner() -> None:
    specs = {spec.name: spec for spec in catalog(SETTINGS, rules_app_id="x.rules")}
    for stem in ("links-changelog", "members-changelog"):
        assert specs[f"x.rules.{stem}"].cleanup_policy == "compact"
        assert specs[f"x.rules.{stem}"].retention_ms == -1
    assert specs["x.rules.by-member"].cleanup_policy == "delete"
    # Commands and internal topics: murmur2 (rules and replay alike); social.events keeps
    # the partitioner it was written with since the start (a log kept forever).
    assert specs["loyalty.commands.bonus"].partitioner == "murmur2_random"
    assert specs["x.rules.by-member"].partitioner == "murmur2_random"
    assert specs["social.events"].partitioner == "consistent_random"


def test_the_detectors_internal_topics_are_named_as_faust_names_them() -> None:
    """Faust names a table's changelog ``<app id>-<table>-changelog`` and knows no
    prefix, so the catalog takes the app id whole; by default it is the prefixed
    ``social-loyalty.detector``, so a test's catalog never touches another's."""
    specs = {spec.name: spec for spec in catalog(SETTINGS, detector_app_id="d.det")}
    assert specs["d.det-keys-changelog"].cleanup_policy == "compact"
    assert "retention.ms" not in specs["d.det-groups-changelog"].configs
    assert not any("retirement" in name for name in specs)  # the manifest does that now
    prefixed = TopicSettings(prefix="t.x.", partitions=3)
    names = {spec.name for spec in catalog(prefixed)}
    assert "t.x.social-loyalty.detector-keys-changelog" in names
    assert all(name.startswith("t.x.") for name in names)


def test_every_command_type_has_exactly_one_command_topic() -> None:
    carried = [
        name
        for spec in catalog(SETTINGS)
        if spec.name.startswith("loyalty.commands.")
        for name in spec.value_types
    ]
    assert sorted(carried) == sorted(COMMAND_TYPES)


def test_settings_prefix_and_partitions_apply_to_every_topic() -> None:
    settings = TopicSettings(prefix="test.x.", partitions=3, replication_factor=3)
    specs = catalog(settings)
    assert all(spec.name.startswith("test.x.") and spec.partitions == 3 for spec in specs)
    assert all(spec.configs["min.insync.replicas"] == "2" for spec in specs)
    assert settings.name(EVENTS) == "test.x.social.events"


def test_plan_creates_missing_and_accepts_matching_topics() -> None:
    specs = catalog(SETTINGS)
    observed = {
        spec.name: ObservedTopic(spec.name, spec.partitions, {**spec.configs, "segment.ms": "1"})
        for spec in specs[1:]
    }
    plans = plan(specs, observed)
    assert plans[0].create and not plans[0].in_sync
    assert all(p.in_sync for p in plans[1:]), "configs the catalog does not name are not drift"


def test_plan_reports_fewer_partitions_and_changed_configs_but_not_more_partitions() -> None:
    events = next(spec for spec in catalog(SETTINGS) if spec.name == "social.events")
    fewer = plan(
        [events], {events.name: ObservedTopic(events.name, 2, {"retention.ms": "604800000"})}
    )[0]
    assert fewer.add_partitions == 6
    assert fewer.config_changes == {
        "retention.ms": ("604800000", "-1"),
        "cleanup.policy": (None, "delete"),
    }
    assert "social.events: retention.ms=604800000, catalog says -1" in fewer.describe()
    more = plan([events], {events.name: ObservedTopic(events.name, 12, dict(events.configs))})[0]
    assert more.in_sync and "more than the catalog" in more.describe()[0]


def test_asyncapi_yaml_is_rendered_from_the_catalog() -> None:
    text = (ROOT / "asyncapi.yaml").read_text()
    assert text == dump(render()), (
        "asyncapi.yaml is stale: python -m services.contracts.asyncapi > asyncapi.yaml"
    )


def test_asyncapi_describes_every_topic_its_schemas_and_services() -> None:
    document = yaml.safe_load((ROOT / "asyncapi.yaml").read_text())
    assert document["asyncapi"].startswith("3.")
    channels = {c["address"]: c for c in document["channels"].values()}
    specs = [spec for spec in catalog(SETTINGS) if spec.value_types]  # internal: no contract
    assert set(channels) == {spec.name for spec in specs}
    messages = document["components"]["messages"]
    for spec in specs:
        channel = channels[spec.name]
        binding = channel["bindings"]["kafka"]
        assert binding["partitions"] == spec.partitions
        assert binding["topicConfiguration"]["retention.ms"] == spec.retention_ms
        assert binding["topicConfiguration"]["cleanup.policy"] == [spec.cleanup_policy]
        for full_name in spec.value_types:
            message = messages[full_name.rsplit(".", 1)[-1]]
            ref = message["payload"]["schema"]["$ref"]
            assert (ROOT / ref).is_file() and ref.endswith(f"{full_name}.avsc")
            key_ref = message["bindings"]["kafka"]["key"].get("x-avro-schema")
            if key_ref:
                assert (ROOT / key_ref).is_file()
                assert Path(key_ref).stem in RECORD_TYPES
        services = {
            (op["x-service"], op["action"])
            for op in document["operations"].values()
            if op["channel"]["$ref"].endswith(
                next(k for k, c in document["channels"].items() if c["address"] == spec.name)
            )
        }
        assert services == {(s, "send") for s in spec.producers} | {
            (s, "receive") for s in spec.consumers
        }


@pytest.mark.parametrize("env_partitions", ["12"])
def test_partitions_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, env_partitions: str
) -> None:
    monkeypatch.setenv("TOPIC_PARTITIONS", env_partitions)
    monkeypatch.setenv("TOPIC_PREFIX", "staging.")
    specs = catalog(TopicSettings())
    assert {spec.partitions for spec in specs} == {12}
    assert specs[0].name == "staging.social.snapshots"


def test_asyncapi_has_no_yaml_anchors_and_shows_headers_and_an_example_per_message() -> None:
    text = (ROOT / "asyncapi.yaml").read_text()
    assert not re.search(r"[&*]id\d+", text), "YAML anchors/aliases: readers cannot follow them"
    messages = yaml.safe_load(text)["components"]["messages"]
    families = ("social_loyalty.events.", "social_loyalty.commands.", "social_loyalty.outcomes.")
    for name, message in messages.items():
        (example,) = message["examples"]
        assert example["payload"], name
        if message["title"].startswith(families):
            assert set(message["headers"]["required"]) <= set(example["headers"]), name
            assert example["headers"]["ce_type"] == message["title"]


def test_replication_follows_the_cluster_when_unset() -> None:
    specs = catalog(SETTINGS)
    three = replicated(specs, brokers=3)
    assert all(spec.replication_factor == 3 for spec in three)
    assert all(spec.configs["min.insync.replicas"] == "2" for spec in three)
    five = replicated(specs, brokers=5)
    assert all(spec.replication_factor == 3 for spec in five)
    one = replicated(specs, brokers=1)
    assert all(spec.replication_factor == 1 for spec in one)
    assert not any("min.insync.replicas" in spec.configs for spec in one)
    two = replicated(specs, brokers=2)
    assert all(spec.replication_factor == 2 for spec in two)
    assert not any("min.insync.replicas" in spec.configs for spec in two)


def test_an_explicit_factor_wins_but_not_beyond_the_cluster() -> None:
    explicit = catalog(TopicSettings(replication_factor=2))
    assert all(spec.replication_factor == 2 for spec in replicated(explicit, brokers=3))
    with pytest.raises(ReplicationError, match="at most 1"):
        replicated(explicit, brokers=1)


def test_fewer_replicas_than_the_catalog_is_drift_with_the_reassignment_command() -> None:
    events = next(s for s in replicated(catalog(SETTINGS), 3) if s.name == "social.events")
    observed = ObservedTopic(
        events.name,
        2,
        dict(events.configs),
        assignment={0: (2,), 1: (3, 1, 2)},
        behind=(1,),
    )
    found = plan([events], {events.name: observed})[0]
    assert found.replicas == 1 and not found.in_sync
    lines = "\n".join(found.describe())
    assert "1 replica(s) on some partitions, the catalog says 3" in lines
    assert "ReassignPartitionsCommand" in lines and "--reassignment-json-file" in lines
    assert "under-replicated now: partitions [1]" in lines
    moves = reassignment(observed, 3, [1, 2, 3])
    assert moves == {
        "version": 1,
        "partitions": [{"topic": "social.events", "partition": 0, "replicas": [2, 1, 3]}],
    }
