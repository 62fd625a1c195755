"""The README's first command, end to end: every service, the scripted story, exact balances;
the lag page after it; then the Grafana dashboard's queries on the metrics that run exported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.demo.__main__ import STATE_DIR
from tests.e2e.dashboard_check import PORT_OFFSET, check_page_after_story
from tests.e2e.story_check import ROOT as REPO
from tests.e2e.story_check import check_lag, check_ledger, check_story
from tests.integration.lagmonitor.test_dashboard_queries import (
    Sample,
    backfill,
    dashboard_queries,
    samples_of,
    scrape_targets,
    start_prometheus,
)

PROBLEMS_ONLY = ("Partitions not OK",)
"""Panels that list problems (by the start of their title): empty after a healthy run,
which is what they should show. (The title's longer than this, so an exact match never
excused it: the panel only had data because the commit markers' lag made partitions
STALL after every run.)"""


@pytest.mark.timeout(1200)
@pytest.mark.usefixtures("kafka_bootstrap", "database_url")
def test_the_story_credits_exactly_what_the_offers_say_and_the_page_raises_no_false_alarm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo as a user runs it, left running after the story: exact balances and
    ledger, then the lag page in Chromium (every group OK within 30 s, no ERR, at rest
    near zero: ``dashboard_check``), plain logs, and every dashboard panel on the
    metrics the run exported. One story for all of it (each run costs minutes)."""
    metrics = tmp_path / "metrics.jsonl"
    summary, log = tmp_path / "summary.json", tmp_path / "demo.log"
    env = {**os.environ, "SL_PORT_OFFSET": str(PORT_OFFSET), "COLUMNS": "160"}
    args = ["--summary", str(summary), "--step-timeout", "240", "--record-metrics", str(metrics)]
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "services.demo", *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        figures = check_page_after_story(demo, summary, log, env, tmp_path)
        deadline = time.monotonic() + 120
        while "Done." not in log.read_text(errors="replace"):  # the metrics are recorded
            assert demo.poll() is None, "the demo ended:\n" + log.read_text()[-6000:]
            assert time.monotonic() < deadline, "no 'Done.':\n" + log.read_text()[-6000:]
            time.sleep(0.5)
    finally:
        demo.send_signal(signal.SIGTERM)  # as Ctrl-C: the demo stops its services
        try:
            code = demo.wait(120)
        except subprocess.TimeoutExpired:
            demo.kill()
            code = demo.wait(10)
    with capsys.disabled():
        print(f"\n{figures}")
    assert code == 0, log.read_text()[-6000:]
    result = json.loads(summary.read_text())
    check_story(result)
    check_ledger(result)
    check_lag(result)
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
        if not r["data"]["result"] and not title.startswith(PROBLEMS_ONLY)
    ]
    assert empty == []
