"""The dashboard in a real headless Chromium, fed by a real monitor on the real broker.

The monitor runs as the supervisor starts it (``python -m services.lagmonitor``,
configured by LAGMONITOR_* only), watching three groups on a fresh topic: one
with a live member and lag, one nobody consumes, one replay group. A small
service on the shared HTTP edge exposes a counter that keeps growing, so the
page's service throughput is live too. The test waits until the page shows
live data (group rows, status colours, the charts drawn over several samples,
the stream connected), checks that every figure on the page is the one
``/api/lag`` gives for the same sample, and saves a screenshot.

Chromium comes from the OS packages (``apt-get install chromium``; ``./run``
installs it when missing); playwright drives it through ``executable_path``
because it cannot download its own browsers here. ``SL_CHROMIUM`` points at
another binary.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright
from prometheus_client import CollectorRegistry, Counter

from services.lagmonitor.page import fmt_duration, fmt_rate
from services.runtime.http import create_app, serve_in_thread
from services.runtime.settings import KafkaSettings
from tests.integration.lagmonitor.conftest import REPO, Member, commit, produce

DEADLINE_S = 60.0  # only reached when something is wrong
INTERVAL_S = 0.5
STATUS_COLOURS = {  # the page's --ok, --warn, ... as the browser computes them
    "OK": "rgb(46, 157, 87)",
    "WARN": "rgb(217, 154, 0)",
    "REWIND": "rgb(122, 90, 245)",
    "STALL": "rgb(224, 103, 43)",
    "STOP": "rgb(211, 58, 58)",
    "ERR": "rgb(139, 30, 30)",
}


def chromium_executable() -> str:
    candidates = [os.environ.get("SL_CHROMIUM", ""), "chromium", "chromium-browser"]
    for candidate in candidates:
        found = candidate and shutil.which(candidate)
        if found:
            return found
    pytest.fail(
        "No Chromium for the browser test: `apt-get install -y chromium` (./run test installs "
        "it on Debian) or set SL_CHROMIUM to a Chromium binary.",
        pytrace=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def busy_service() -> Iterator[str]:
    """A service's HTTP edge whose ``social_loyalty_..._total`` counter grows all the time."""
    registry = CollectorRegistry()
    events = Counter("social_loyalty_detector_events", "Events detected.", registry=registry)
    port = free_port()
    server = serve_in_thread(create_app("detector", registry=registry), "127.0.0.1", port)
    stop = threading.Event()

    def work() -> None:
        while not stop.wait(0.05):
            events.inc(3)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    yield f"http://127.0.0.1:{port}"
    stop.set()
    worker.join(5)
    server.stop()


@dataclass
class MonitorProcess:
    base: str
    prefix: str
    process: subprocess.Popen[bytes]
    log: Path

    def wait_ready(self) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            assert self.process.poll() is None, "the monitor exited:\n" + self.log.read_text()
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "never ready:\n" + self.log.read_text()[-3000:]
            time.sleep(0.1)


@contextlib.contextmanager
def launch(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m services.lagmonitor`` with ``env``; stopped (and must exit 0) afterwards."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.lagmonitor"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    assert process.returncode == 0, log_path.read_text()[-3000:]


@pytest.fixture
def monitor_process(
    kafka_settings: KafkaSettings, unique: Callable[[str], str], tmp_path: Path, busy_service: str
) -> Iterator[MonitorProcess]:
    """``python -m services.lagmonitor`` on a free port, as the supervisor starts it."""
    prefix = unique("social-loyalty.browser")
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "LAGMONITOR_HOST": "127.0.0.1",
        "LAGMONITOR_PORT": str(port),
        "LAGMONITOR_SAMPLE_INTERVAL_S": str(INTERVAL_S),
        "LAGMONITOR_GROUP_PREFIXES": prefix,
        "LAGMONITOR_SERVICES": f"detector={busy_service},gone=http://127.0.0.1:{free_port()}",
        "LAGMONITOR_HISTORY_DB": "false",  # test_history_store.py covers it
    }
    log_path = tmp_path / "lagmonitor.log"
    with launch(env, log_path) as process:
        yield MonitorProcess(f"http://127.0.0.1:{port}", prefix, process, log_path)


READ_PAGE = """() => {
  const text = (row, sel) => row.querySelector(sel).textContent;
  const groups = {};
  for (const row of document.querySelectorAll("#groups-body > tr.group")) {
    const cells = row.querySelectorAll("td");
    const badge = row.querySelector(".badge");
    groups[row.dataset.group] = {
      status: row.dataset.status, badge: badge.textContent,
      colour: getComputedStyle(badge).backgroundColor,
      state: cells[2].textContent, members: cells[3].textContent, lag: text(row, ".lag"),
      time_lag: text(row, ".time-lag"), partitions: cells[6].textContent,
      replay_tag: row.querySelector(".tag") !== null,
    };
  }
  const worst = [];
  for (const row of document.querySelectorAll("#worst-body tr")) {
    const cells = [...row.querySelectorAll("td")].map(c => c.textContent);
    worst.push({group: row.dataset.group, topic: row.dataset.topic,
                partition: Number(row.dataset.partition), committed: cells[3], end: cells[4],
                lag: cells[5], status: cells[7]});
  }
  const services = {};
  for (const row of document.querySelectorAll("#services-body tr")) {
    services[row.dataset.service] = {up: row.dataset.up, throughput: text(row, ".throughput")};
  }
  return {updated: document.body.dataset.updated, groups, worst, services};
}"""

LIVE = """([live, idle]) => {
  const row = document.querySelector(`#groups-body tr[data-group="${live}"]`);
  const line = document.querySelector(`#chart-lag polyline[data-group="${live}"]`);
  const timeLine = document.querySelector(`#chart-time-lag polyline[data-group="${idle}"]`);
  const busy = document.querySelector('#services-body tr[data-service="detector"]');
  const through = document.querySelector('#chart-throughput polyline[data-service="detector"]');
  const points = el => el ? el.getAttribute("points").trim().split(/\\s+/).length : 0;
  return row !== null && row.querySelector(".lag").textContent !== "0"
    && document.getElementById("connection").dataset.mode === "sse"
    && points(line) >= 3 && points(timeLine) >= 2 && points(through) >= 2
    && busy !== null && busy.dataset.up === "true"
    && parseFloat(busy.querySelector(".throughput").textContent) > 0;
}"""


def wait_live(page: Page, args: list[str], shot: Path) -> None:
    """Wait for live data on the page; on failure keep a screenshot of what it showed."""
    try:
        page.wait_for_function(LIVE, arg=args, timeout=DEADLINE_S * 1000, polling=200)
    except Exception:
        page.screenshot(path=str(shot), full_page=True)
        raise AssertionError(
            f"the page never showed live data (screenshot: {shot}); it showed:\n"
            + page.inner_text("body")[:3000]
        ) from None


def read_same_sample(page: Page, base: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the page shows and what /api/lag says, for the same sample.

    The page renders each sample as the stream delivers it; reading both until
    their sample times agree rules out comparing two different samples."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        shown: dict[str, Any] = page.evaluate(READ_PAGE)
        document: dict[str, Any] = httpx.get(f"{base}/api/lag", timeout=5).json()
        again: dict[str, Any] = page.evaluate(READ_PAGE)
        if shown == again and float(shown["updated"]) == document["sampled_at"]:
            return shown, document
        assert time.monotonic() < deadline, "page and /api/lag never showed the same sample"
        time.sleep(INTERVAL_S / 5)


def test_dashboard_shows_live_lag_status_and_throughput_in_chromium(  # noqa: PLR0917
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    join_group: Callable[[str, str, int], Member],
    monitor_process: MonitorProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    base, prefix = monitor_process.base, monitor_process.prefix
    topic = make_topic("browser", partitions=3)
    produce(kafka_settings, topic, {0: 20, 1: 10, 2: 5})
    live, idle, replay = f"{prefix}.live", f"{prefix}.idle", f"{prefix}.replay.offer-7"
    join_group(live, topic, 3).commit({0: 5, 1: 10, 2: 1})  # lag 15 + 0 + 4
    commit(kafka_settings, idle, topic, {0: 18, 1: 2})  # lag 2 + 8, nobody consuming
    commit(kafka_settings, replay, topic, {0: 1})
    monitor_process.wait_ready()
    shot = tmp_path / "dashboard.png"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable(),
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/", wait_until="domcontentloaded")
            wait_live(page, [live, idle], shot)
            first_update = page.evaluate("document.body.dataset.updated")
            # Live means it keeps changing without a reload.
            page.wait_for_function(
                "u => document.body.dataset.updated !== u",
                arg=first_update,
                timeout=DEADLINE_S * 1000,
                polling=100,
            )
            shown, document = read_same_sample(page, base)
            page.screenshot(path=str(shot), full_page=True)
            drill = open_drill_down(page, live, tmp_path / "drill-down.png")
            drill_document: dict[str, Any] = httpx.get(f"{base}/api/lag", timeout=5).json()
        finally:
            browser.close()

    with capsys.disabled():
        print(f"\ndashboard screenshot: {shot}")
    assert shot.stat().st_size > 20_000

    groups = {g["group"]: g for g in document["groups"]}
    assert set(shown["groups"]) == set(groups) == {live, idle, replay}
    for name, group in groups.items():
        row = shown["groups"][name]
        assert row["status"] == row["badge"] == group["status"]
        assert row["colour"] == STATUS_COLOURS[group["status"]]
        assert row["state"] == group["state"]
        assert row["members"] == str(group["members"])
        assert row["lag"] == f"{group['total_lag']:,}"
        assert row["time_lag"] == fmt_duration(group["max_time_lag_s"])
        assert row["partitions"] == str(len(group["partitions"]))
        assert row["replay_tag"] is group["replay"]
    assert (groups[live]["total_lag"], groups[live]["members"]) == (19, 1)
    assert (groups[idle]["total_lag"], groups[idle]["members"]) == (10, 0)
    assert groups[replay]["replay"] is True
    assert groups[idle]["max_time_lag_s"] is not None

    lagging = {
        (g["group"], p["topic"], p["partition"]): p
        for g in document["groups"]
        for p in g["partitions"]
        if p["lag"]
    }
    assert {(w["group"], w["topic"], w["partition"]) for w in shown["worst"]} == set(lagging)
    for w in shown["worst"]:
        p = lagging[(w["group"], w["topic"], w["partition"])]
        assert (w["committed"], w["end"], w["lag"], w["status"]) == (
            str(p["committed_offset"]),
            str(p["end_offset"]),
            str(p["lag"]),
            p["status"],
        )

    services = {s["service"]: s for s in document["services"]}
    assert shown["services"]["detector"]["up"] == "true"
    assert shown["services"]["gone"]["up"] == "false"
    assert services["gone"]["up"] is False
    throughput = services["detector"]["throughput"]
    assert throughput > 0
    assert shown["services"]["detector"]["throughput"] == fmt_rate(throughput)
    check_drill_down(drill, drill_document, live)
    with capsys.disabled():
        print(f"browser test: live page checked in {time.monotonic() - started:.1f} s")


READ_DRILL = """group => {
  const drill = document.querySelector(`tr.drill[data-partitions-of="${group}"]`);
  if (!drill) return null;
  const rows = [];
  for (const row of drill.querySelectorAll(":scope table.partitions > tbody > tr")) {
    const cell = sel => row.querySelector(sel).textContent;
    rows.push({topic: row.dataset.topic, partition: Number(row.dataset.partition),
               owner: cell(".owner"), host: cell(".host"), earliest: cell(".earliest"),
               committed: cell(".committed"), end: cell(".end"), lag: cell(".lag"),
               status: row.querySelector(".badge").textContent});
  }
  const expanded = document.querySelector(`#groups-body tr.group[data-group="${group}"]`)
    .getAttribute("aria-expanded");
  return {updated: document.body.dataset.updated, expanded, rows};
}"""


def open_drill_down(page: Page, group: str, shot: Path) -> dict[str, Any]:
    """Click the group's row; its partitions open under it and stay open as samples arrive."""
    page.click(f'#groups-body tr.group[data-group="{group}"]')
    page.wait_for_selector(f'tr.drill[data-partitions-of="{group}"]', timeout=DEADLINE_S * 1000)
    opened_at = page.evaluate("document.body.dataset.updated")
    page.wait_for_function(
        "u => document.body.dataset.updated !== u",
        arg=opened_at,
        timeout=DEADLINE_S * 1000,
        polling=100,
    )
    page.screenshot(path=str(shot), full_page=True)
    drill: dict[str, Any] = page.evaluate(READ_DRILL, group)
    assert drill is not None, "the drill-down closed when the next sample arrived"
    # Only the clicked group is open; a second click closes it.
    assert page.locator("tr.drill").count() == 1
    page.click(f'#groups-body tr.group[data-group="{group}"]')
    page.wait_for_function(
        'g => !document.querySelector(`tr.drill[data-partitions-of="${g}"]`)',
        arg=group,
        timeout=DEADLINE_S * 1000,
    )
    return drill


def check_drill_down(drill: dict[str, Any], document: dict[str, Any], group: str) -> None:
    """Each partition of the group as /api/lag has it: owner client id and host, earliest,
    committed and end offsets (offsets do not move in this test, so any sample will do)."""
    assert drill["expanded"] == "true"
    (described,) = [g for g in document["groups"] if g["group"] == group]
    rows = {(r["topic"], r["partition"]): r for r in drill["rows"]}
    assert len(rows) == len(described["partitions"]) == 3
    for p in described["partitions"]:
        row = rows[(p["topic"], p["partition"])]
        owner = p["owner"]
        assert owner is not None, p
        assert owner["client_id"].endswith(group)  # the member's client.id
        assert owner["host"] == "127.0.0.1"
        assert (row["owner"], row["host"]) == (owner["client_id"], owner["host"])
        assert p["earliest_offset"] == 0
        assert (row["earliest"], row["committed"], row["end"], row["lag"]) == (
            "0",
            str(p["committed_offset"]),
            str(p["end_offset"]),
            str(p["lag"]),
        )
        assert row["status"] == p["status"]


UNREACHABLE = """() => {
  const banner = document.getElementById("kafka-down");
  return !banner.hidden && document.body.dataset.kafka === "down" && banner.textContent.length > 0;
}"""


def test_page_says_kafka_is_unreachable_in_chromium(tmp_path: Path) -> None:
    """A monitor whose only broker is a closed port: the page says so, and never "caught up"."""
    closed = f"127.0.0.1:{free_port()}"
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": closed,
        "LAGMONITOR_HOST": "127.0.0.1",
        "LAGMONITOR_PORT": str(port),
        "LAGMONITOR_SAMPLE_INTERVAL_S": str(INTERVAL_S),
        "LAGMONITOR_REQUEST_TIMEOUT_S": str(INTERVAL_S),
        "LAGMONITOR_HISTORY_DB": "false",
    }
    base = f"http://127.0.0.1:{port}"
    shot = tmp_path / "kafka-unreachable.png"
    with launch(env, tmp_path / "lagmonitor.log") as process:
        deadline = time.monotonic() + DEADLINE_S
        while True:  # the first sample has failed
            assert process.poll() is None, (tmp_path / "lagmonitor.log").read_text()
            try:
                lag = httpx.get(f"{base}/api/lag", timeout=2)
                if lag.status_code == 503 and lag.json()["kafka"]["last_attempt_at"]:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the monitor never tried Kafka"
            time.sleep(0.1)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium_executable(),
                args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
            )
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"{base}/", wait_until="domcontentloaded")
                try:
                    page.wait_for_function(UNREACHABLE, timeout=DEADLINE_S * 1000, polling=100)
                finally:
                    page.screenshot(path=str(shot), full_page=True)
                banner = page.inner_text("#kafka-down")
                title = page.title()
                groups_empty = page.inner_text("#groups-empty")
                worst_empty = page.inner_text("#worst-empty")
                visible = page.is_visible("#kafka-down")
            finally:
                browser.close()
    assert visible
    assert banner.startswith(f"Kafka is unreachable ({closed}) since ")
    assert "Last successful sample: never." in banner
    assert title.startswith("Kafka unreachable")
    assert groups_empty == "Kafka is unreachable: no consumer group figures."
    assert worst_empty == "No current figures: Kafka is unreachable."
