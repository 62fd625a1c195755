"""The page after the demo's story, in a real Chromium: no false alarm, no ERR, at rest
(``tests/e2e/test_demo_story.py`` runs the story once and checks this too).

The story is the demo's own (``python -m services.demo``, every service under the
supervisor, each Kafka client as its own principal with the ACLs of
``services/ops/kafka_access.py``, the lag monitor included), left running after
the story as a user leaves it. Within 30 s of the story's end the page must show
every group OK and no error (the demo's page once said "8 groups, 4 not OK": a
STALL for the commit marker of each transactional group's last transaction and
ERR for the detector's Faust assignor topic the monitor could not describe),
``/metrics`` and ``lag show`` must agree, and the throughput of a system at rest
must read near zero. A screenshot is kept under the test's ``tmp_path``.

The demo has one namespace (topics ``demo.``, database ``social_loyalty_demo``,
``deploy/.local/demo``): the test cannot run beside another demo. Its ports are moved
(``SL_PORT_OFFSET``, :data:`PORT_OFFSET`) so it does not collide with a system running
on the default ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import sync_playwright
from prometheus_client.parser import text_string_to_metric_families

from services.lagmonitor.page import NO_VALUE
from services.ops.system import Ports
from tests.integration.lagmonitor.conftest import REPO
from tests.integration.lagmonitor.test_dashboard_browser import chromium_executable

PORT_OFFSET = 14_000
STORY_TIMEOUT_S = 900.0
SETTLE_S = 30.0
"""The acceptance: every group OK within 30 s of the story's end."""
AT_REST_PER_S = 2.0
"""Throughput of the whole system at rest: the collector's runs (a few a second in the
demo, whose groups are collected every few seconds) and nothing else."""

ALL_OK = """() => {
  const rows = [...document.querySelectorAll("#groups-body > tr.group")];
  return rows.length > 0 && rows.every(r => r.dataset.status === "OK")
    && document.querySelectorAll('.badge[data-status="ERR"]').length === 0
    && document.querySelectorAll("#errors li").length === 0
    && document.getElementById("connection").dataset.mode === "sse";
}"""

READ = """() => ({
  groups: Object.fromEntries([...document.querySelectorAll("#groups-body > tr.group")]
    .map(r => [r.dataset.group, r.dataset.status])),
  summary: document.getElementById("summary").textContent,
  errors: [...document.querySelectorAll("#errors li")].map(li => li.textContent),
  services: Object.fromEntries([...document.querySelectorAll("#services-body tr")]
    .map(r => [r.dataset.service, r.querySelector(".throughput").textContent])),
})"""


def _wait_for_story(demo: subprocess.Popen[bytes], summary: Path, log: Path) -> None:
    deadline = time.monotonic() + STORY_TIMEOUT_S
    while not summary.exists():
        assert demo.poll() is None, "the demo ended:\n" + log.read_text()[-6000:]
        assert time.monotonic() < deadline, "the story never ended:\n" + log.read_text()[-6000:]
        time.sleep(0.5)


def _not_ok(document: dict[str, Any]) -> list[str]:
    """Every group or partition that is not OK, with its offsets, for the failure message."""
    lines = []
    for g in document["groups"]:
        if g["status"] != "OK" or g["error"]:
            lines.append(f"{g['group']}: {g['status']} {g['error'] or ''}")
            lines += [
                f"  {p['topic']}[{p['partition']}] committed {p['committed_offset']} "
                f"end {p['end_offset']} stable {p['stable_offset']} lag {p['lag']} "
                f"{p['status']} {p['error'] or ''}"
                for p in g["partitions"]
                if p["status"] != "OK"
            ]
    return lines


def _cli_statuses(base_env: dict[str, str]) -> dict[str, str]:
    """``lag show -g demo. --output json`` as an operator runs it (the environment's login)."""
    done = subprocess.run(
        [sys.executable, "-m", "services.lagmonitor", "show", "-g", "demo.", "--output", "json"],
        cwd=REPO,
        env=base_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {g["group"]: g["status"] for g in json.loads(done.stdout)["groups"]}


def _metrics_statuses(base: str) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return {
        s.labels["consumergroup"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "kafka_consumergroup_group_status_code"
    }


def check_page_after_story(
    demo: subprocess.Popen[bytes], summary: Path, log: Path, env: dict[str, str], out: Path
) -> str:
    """With the demo left running after its story: within 30 s of the story's end the
    page (in Chromium) shows every group OK and no error, ``/metrics`` and ``lag show``
    agree, the system at rest reads near zero; a screenshot in ``out``. Returns a line
    with the figures."""
    base = f"http://127.0.0.1:{ports().lagmonitor}"
    shot = out / "dashboard-after-demo.png"
    _wait_for_story(demo, summary, log)
    story_end = time.monotonic()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable(),
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"{base}/", wait_until="domcontentloaded")
            left_ms = max(1.0, SETTLE_S - (time.monotonic() - story_end)) * 1000
            try:
                page.wait_for_function(ALL_OK, timeout=left_ms, polling=200)
                settled = time.monotonic() - story_end
            except Exception:
                page.screenshot(path=str(shot), full_page=True)
                shown = page.evaluate(READ)
                document = httpx.get(f"{base}/api/lag", timeout=10).json()
                raise AssertionError(
                    f"{SETTLE_S:.0f} s after the story the page showed {shown['summary']!r} "
                    f"(screenshot: {shot}):\n" + "\n".join(_not_ok(document) or [json.dumps(shown)])
                ) from None
            rested = _wait_at_rest(base)
            page.wait_for_timeout(1500)  # the page draws the sample that said so
            page.screenshot(path=str(shot), full_page=True)
            shown = page.evaluate(READ)
        finally:
            browser.close()
    document = httpx.get(f"{base}/api/lag", timeout=10).json()
    metrics = _metrics_statuses(base)
    cli = _cli_statuses(env)
    assert shot.stat().st_size > 20_000
    groups = {g["group"]: g for g in document["groups"]}
    for expected in ("demo.detector", "demo.rules", "demo.actions.bonus", "demo.readmodel"):
        assert expected in groups, sorted(groups)
    assert _not_ok(document) == []
    assert set(shown["groups"].values()) == {"OK"}
    assert shown["errors"] == []
    assert shown["summary"].split(", ")[1] == "0 not OK"
    assert set(metrics) == set(groups)
    assert set(metrics.values()) == {0.0}  # OK
    assert {name: status for name, status in cli.items() if name in groups} == {
        name: "OK" for name in groups
    }
    page_rates = [float(v.replace(",", "")) for v in shown["services"].values() if v != NO_VALUE]
    assert page_rates
    assert sum(page_rates) < AT_REST_PER_S, shown["services"]
    return f"all groups OK {settled:.1f} s after the story; at rest: {rested}; screenshot {shot}"


def ports() -> Ports:
    return Ports(**{k: v + PORT_OFFSET for k, v in vars(Ports()).items()})


def _wait_at_rest(base: str) -> dict[str, float]:
    """Throughput per service once the story's last records have been counted."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        services = httpx.get(f"{base}/api/services", timeout=10).json()["services"]
        rates = {s["service"]: s["throughput"] for s in services if s["throughput"] is not None}
        if rates and sum(rates.values()) < AT_REST_PER_S:
            return rates
        assert time.monotonic() < deadline, f"not at rest {SETTLE_S:.0f} s on: {services}"
        time.sleep(1.0)
