"""The lag monitor's principal may Describe every topic a group of the system commits
offsets for, so its page, /metrics and the CLI (often run as admin) say the same."""

from __future__ import annotations

import pytest

from services.ops.kafka_access import Grant, SystemNames, plan


@pytest.mark.parametrize("prefix", ["", "demo."])
def test_the_monitor_may_describe_every_topic_any_principal_reads(prefix: str) -> None:
    names = SystemNames.for_prefix(prefix)
    grants = plan(names)
    monitor = names.user("lagmonitor")
    read = {(g.name, g.pattern) for g in grants if g.resource == "topic" and g.operation == "read"}
    described = {
        (g.name, g.pattern)
        for g in grants
        if g.user == monitor and g.resource == "topic" and g.operation == "describe"
    }
    assert read <= described


def test_fausts_assignor_topic_is_described_by_the_monitor_and_nothing_more() -> None:
    """The detector's group commits ``<app id>-__assignor-__leader``: the demo's page
    showed ``demo.detector`` ERR (Topic authorization failed) for want of this grant."""
    names = SystemNames.for_prefix("demo.")
    leader = f"{names.detector_app_id}-__assignor-__leader"
    monitor = names.user("lagmonitor")
    on_leader = {g.operation for g in plan(names) if g.user == monitor and g.name == leader}
    assert on_leader == {"describe"}
    assert Grant(monitor, "topic", leader, "literal", "describe") in plan(names)
    # Least privilege: the monitor reads no records, anywhere.
    assert not [g for g in plan(names) if g.user == monitor and g.operation != "describe"]
