"""``social-loyalty topics ...``: list the catalog, make the cluster match it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from confluent_kafka import KafkaException

from services.contracts.topics import ObservedTopic, TopicPlan, TopicSpec
from services.runtime.terminal import (
    JsonFlag,
    OutputFormat,
    OutputOption,
    announce_target,
    emit_json,
    wants_json,
)

topics_app = typer.Typer(
    help="The topic catalog: list it, create missing topics, report and fix drift.",
    no_args_is_help=True,
)


def _settle(admin: Any, specs: list[TopicSpec], wait_s: float) -> list[TopicPlan]:
    """Re-read the cluster until it matches or ``wait_s`` passes: metadata of a topic
    just created or grown reaches every broker a moment later."""
    from services.contracts.topics import observe, plan

    deadline = time.monotonic() + wait_s
    while True:
        try:
            remaining = [
                p for p in plan(specs, observe(admin, [s.name for s in specs])) if not p.in_sync
            ]
        except KafkaException:
            remaining = [TopicPlan(specs[0], create=True)]
        if not remaining or time.monotonic() > deadline:
            return remaining
        time.sleep(0.5)


def _catalog() -> list[TopicSpec]:
    """The catalog for this environment: TOPIC_* and the rules worker's group."""
    from services.contracts.topics import RULES_APP_ID, catalog

    return catalog(
        rules_app_id=os.environ.get("RULES_APP_ID", RULES_APP_ID),
        # Unset: TOPIC_PREFIX + social-loyalty.detector, as the detector defaults it.
        detector_app_id=os.environ.get("DETECTOR_APP_ID") or None,
    )


def _spec_row(spec: TopicSpec) -> dict[str, Any]:
    return {
        "topic": spec.name,
        "partitions": spec.partitions,
        "replication_factor": spec.replication_factor or None,  # None: from the cluster
        "retention_ms": spec.retention_ms,
        "cleanup_policy": spec.cleanup_policy,
        "key": spec.key,
        "records": [name.rsplit(".", 1)[-1] for name in spec.value_types],
    }


def _plan_row(topic_plan: TopicPlan) -> dict[str, Any]:
    return {
        "topic": topic_plan.spec.name,
        "in_sync": topic_plan.in_sync,
        "create": topic_plan.create,
        "add_partitions": topic_plan.add_partitions,
        "config_changes": {
            key: {"current": old, "catalog": new}
            for key, (old, new) in sorted(topic_plan.config_changes.items())
        },
        "notes": list(topic_plan.notes),
        "lines": topic_plan.describe(),
    }


@topics_app.command("list")
def list_topics(output: OutputOption = OutputFormat.table, as_json: JsonFlag = False) -> None:
    """Print the catalog (names include TOPIC_PREFIX; the rules worker's internal
    topics are named for RULES_APP_ID, the detector's for DETECTOR_APP_ID), one topic
    a line. rf "-": TOPIC_REPLICATION_FACTOR is unset and the cluster decides (three
    replicas and min.insync.replicas=2 from three brokers, else one per broker)."""
    specs = _catalog()
    if wants_json(output, as_json):
        emit_json([_spec_row(spec) for spec in specs])
        return
    width = max(len(spec.name) for spec in specs)
    typer.echo(f"{'topic':<{width}}  partitions  rf  retention.ms  cleanup  key / records")
    for spec in specs:
        records = ", ".join(name.rsplit(".", 1)[-1] for name in spec.value_types)
        typer.echo(
            f"{spec.name:<{width}}  {spec.partitions:>10}  {spec.replication_factor or '-':>2}  "
            f"{spec.retention_ms:>12}  {spec.cleanup_policy:<7}  {spec.key} / {records}"
        )


def _write_reassignment(
    path: Path,
    plans: list[TopicPlan],
    observed: dict[str, ObservedTopic],
    brokers: list[int],
    *,
    quiet: bool,
) -> None:
    """The reassignment plan of every topic with fewer replicas than the catalog says."""
    from services.contracts.topics import reassignment

    moves = [
        move
        for p in plans
        if p.replicas
        for move in reassignment(observed[p.spec.name], p.spec.replication_factor, brokers)[
            "partitions"
        ]
    ]
    path.write_text(json.dumps({"version": 1, "partitions": moves}, indent=1))
    if not quiet:
        typer.echo(f"reassignment plan ({len(moves)} partitions) written to {path}")


@topics_app.command()
def ensure(
    fix: Annotated[
        bool, typer.Option("--fix", help="Alter configs and add partitions where they drift.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report; change nothing, not even create.")
    ] = False,
    reassignment_json: Annotated[
        Path | None,
        typer.Option(
            "--reassignment-json",
            help="Write the plan that raises under-replicated topics to the catalog's "
            "factor here, for Kafka's reassignment tool (ReassignPartitionsCommand).",
            dir_okay=False,
        ),
    ] = None,
    output: OutputOption = OutputFormat.table,
    as_json: JsonFlag = False,
) -> None:
    """Create missing topics and report drift. Exit 0 when in sync, 1 when drift remains.

    Replication follows the cluster unless TOPIC_REPLICATION_FACTOR is set: three
    replicas and min.insync.replicas=2 from three brokers. A topic with fewer replicas
    than that is drift that only Kafka's reassignment tool can mend: the report says
    how, and --reassignment-json writes the plan.

    Includes the rules worker's and the detector's internal topics (RULES_APP_ID and
    DETECTOR_APP_ID name them), so every topic exists with the right partitions before
    any worker starts. `--output json` prints one document: the plan per topic, what
    was done, what drift remains."""
    from services.contracts.topics import (
        ReplicationError,
        apply,
        broker_count,
        observe,
        plan,
        replicated,
    )
    from services.runtime import kafka
    from services.runtime.settings import KafkaSettings

    machine = wants_json(output, as_json)
    if not dry_run:
        announce_target(database=False)
    settings = KafkaSettings()
    kafka.check_reachable(settings)
    admin = kafka.admin(settings, "topics")
    brokers = sorted(admin.list_topics(timeout=30).brokers)
    try:
        specs = replicated(_catalog(), broker_count(admin))
    except ReplicationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    observed = observe(admin, [spec.name for spec in specs])
    plans = plan(specs, observed)
    if reassignment_json is not None:
        _write_reassignment(reassignment_json, plans, observed, brokers, quiet=machine)
    if not machine:
        for topic_plan in plans:
            for line in topic_plan.describe():
                typer.echo(line)
    done: list[str] = []
    remaining = [p for p in plans if not p.in_sync]
    if not dry_run:
        done = apply(admin, plans, fix=fix)
        if not machine:
            for line in done:
                typer.echo(line)
        remaining = _settle(admin, specs, wait_s=15.0 if done else 0.0)
    if machine:
        emit_json(
            {
                "plan": [_plan_row(p) for p in plans],
                "done": done,
                "drift": [p.spec.name for p in remaining],
                "in_sync": not remaining,
            }
        )
        raise typer.Exit(1 if remaining else 0)
    if dry_run:
        raise typer.Exit(0 if not remaining else 1)
    if remaining:
        typer.echo(f"drift remains in {len(remaining)} topic(s); run with --fix", err=True)
        raise typer.Exit(1)
    typer.echo("in sync")
