"""The README's first command, end to end: every service, the scripted story, exact balances;
then the Grafana dashboard's queries on the metrics that run exported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.demo.__main__ import STATE_DIR
from tests.e2e.story_check import check_ledger, check_story, run_demo
from tests.integration.lagmonitor.test_dashboard_queries import (
    Sample,
    backfill,
    dashboard_queries,
    samples_of,
    scrape_targets,
    start_prometheus,
)

PROBLEMS_ONLY = ("Partitions not OK",)
"""Panels that list problems: empty after a healthy run, which is what they should show."""


@pytest.mark.timeout(1000)
@pytest.mark.usefixtures("kafka_bootstrap", "database_url")
def test_the_story_credits_exactly_what_the_offers_say(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    result = run_demo(
        tmp_path, "--step-timeout", "240", "--record-metrics", str(metrics), timeout_s=900
    )
    check_story(result)
    check_ledger(result)
    assert result["event_deliveries"] >= len(result["events"])
    _the_service_logs_are_plain_and_the_commits_kept_time(STATE_DIR / "logs")
    _every_panel_evaluates_on_the_demo_metrics(metrics, tmp_path)


def _the_service_logs_are_plain_and_the_commits_kept_time(logs: Path) -> None:
    """No colour code in any service's log file, and the detector's commits never took
    longer than Faust's commit interval (docs/detector.md, "Commit interval")."""
    for log in sorted(logs.glob("*.log")):
        assert "\x1b" not in log.read_text(errors="replace"), f"colour codes in {log}"
    assert "Timer commit is overlapping" not in (logs / "detector.log").read_text()


def _every_panel_evaluates_on_the_demo_metrics(metrics: Path, tmp_path: Path) -> None:
    """The demo's own /metrics, backfilled into a real Prometheus: every dashboard query
    succeeds, and each panel but the problem lists has data."""
    targets = scrape_targets()
    recorded: list[Sample] = []
    for line in metrics.read_text().splitlines():
        scrape = json.loads(line)
        recorded += samples_of(scrape["text"], targets[scrape["service"]], scrape["at"])
    last = max(s[3] for s in recorded)
    prometheus = start_prometheus(backfill(recorded, tmp_path), tmp_path)
    try:
        results = {f"{t}: {q}": (t, prometheus.query(q, last)) for t, q in dashboard_queries()}
    finally:
        prometheus.process.terminate()
        prometheus.process.wait(15)
    failed = {q: r.get("error") for q, (_, r) in results.items() if r["status"] != "success"}
    assert failed == {}
    empty = [
        q
        for q, (title, r) in results.items()
        if not r["data"]["result"] and title not in PROBLEMS_ONLY
    ]
    assert empty == []
