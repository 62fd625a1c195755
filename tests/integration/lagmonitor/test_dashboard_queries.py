"""Every Grafana panel's query, evaluated by a real Prometheus over recorded metrics.

The recording is real exposition: the lag monitor's ``/metrics`` sampling the
real broker (a group with a live member that stalls, one nobody consumes, a
replay group) and scraping four services' HTTP edges, each serving its own
real counters (the collector's, the detector's, the rules worker's and stream
runtime's, the actions' and PostgreSQL sink's) while they grow. Each round is
stored with its timestamp and the labels a Prometheus scrape adds (``job``,
``instance``, ``service`` as ``deploy/prometheus/prometheus.yml`` names them,
and ``up``), written as OpenMetrics, backfilled with ``promtool tsdb
create-blocks-from openmetrics``, and served by ``prometheus`` over that TSDB.
Every expression of ``deploy/grafana/lag-dashboard.json`` (template variables
as "All", i.e. ``.*``) must then succeed and return data at the recorded time.

Prometheus and promtool come from the OS (Debian's ``prometheus`` package;
``./run test`` installs it when missing). ``SL_PROMETHEUS`` names another
``prometheus`` binary, with ``promtool`` beside it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.actions.command_metrics import CommandMetrics
from services.collector.run_metrics import CollectorMetrics
from services.detector.app import DetectorMetrics
from services.lagmonitor.monitor import LagMonitor
from services.lagmonitor.settings import LagMonitorSettings
from services.lagmonitor.throughput import ServiceTarget
from services.rules.worker import RulesMetrics
from services.runtime.http import create_app, serve_in_thread
from services.runtime.pgsink import PgSinkMetrics
from services.runtime.settings import KafkaSettings
from services.runtime.stream import StreamMetrics
from tests.integration.lagmonitor.conftest import REPO, Member, commit, produce
from tests.integration.lagmonitor.test_dashboard_browser import free_port

DASHBOARD = REPO / "deploy" / "grafana" / "lag-dashboard.json"
SCRAPE_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = REPO / "deploy" / "prometheus" / "lag-alerts.yml"
ROUNDS = 6
PAUSE_S = 0.3
BROKEN_BEFORE = (
    'sum by (service) (rate({__name__=~"social_loyalty_.+_total", job=~"social-loyalty.*"}[2m]))'
)


def tool(name: str) -> str:
    configured = os.environ.get("SL_PROMETHEUS")
    if configured:
        path = Path(configured).parent / name if name != "prometheus" else Path(configured)
        if path.is_file():
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(
        f"No {name} for the dashboard query test: `apt-get install -y prometheus` (./run test "
        "installs it on Debian) or set SL_PROMETHEUS to a prometheus binary (promtool beside it).",
        pytrace=False,
    )


@dataclass(frozen=True)
class Target:
    """What a Prometheus scrape of one target adds, as ``prometheus.yml`` configures it."""

    labels: dict[str, str]
    honor_labels: bool

    def attach(self, scraped: dict[str, str]) -> dict[str, str]:
        """Prometheus' rule: on a clash the target's label wins and the scraped one is
        kept as ``exported_<name>``, unless the job honours the scraped labels."""
        if self.honor_labels:
            return {**self.labels, **scraped}
        renamed = {(f"exported_{k}" if k in self.labels else k): v for k, v in scraped.items()}
        return {**renamed, **self.labels}


def scrape_targets() -> dict[str, Target]:
    """service -> its target's labels (job, instance, service) and the job's honor_labels."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    return {
        sc["labels"]["service"]: Target(
            {"job": job["job_name"], "instance": sc["targets"][0], **sc["labels"]},
            bool(job.get("honor_labels", False)),
        )
        for job in config["scrape_configs"]
        for sc in job["static_configs"]
    }


@dataclass
class Services:
    """Four services' HTTP edges, each serving its own real counters."""

    urls: dict[str, str]
    work: Callable[[int], None]


@pytest.fixture
def services() -> Iterator[Services]:
    registries = {
        name: CollectorRegistry() for name in ("collector", "detector", "rules", "actions")
    }
    collector = CollectorMetrics.on(registries["collector"])
    detector = DetectorMetrics.on(registries["detector"])
    rules = RulesMetrics.on(registries["rules"])
    rules_stream = StreamMetrics.on(registries["rules"])
    actions = CommandMetrics.on(registries["actions"])
    actions_sink = PgSinkMetrics.on(registries["actions"])
    servers, urls = [], {}
    for name, registry in registries.items():
        port = free_port()
        servers.append(serve_in_thread(create_app(name, registry=registry), "127.0.0.1", port))
        urls[name] = f"http://127.0.0.1:{port}"

    def work(n: int) -> None:
        """What a few seconds of the pipeline add to the services' counters."""
        collector.api_requests.labels("vk", "groups.getMembers").inc(n)
        collector.api_calls.labels("vk", "groups.getMembers").inc(3 * n)
        collector.rate_limit_wait_seconds.labels("vk").inc(0.5 * n)
        collector.messages_published.labels("vk").inc(2 * n)
        collector.runs.labels("vk", "succeeded").inc(n)  # its throughput: runs, not reads
        detector.chunks.labels("diffed").inc(n)
        detector.events.labels("PostLiked").inc(4 * n)
        detector.dead_letters.inc(0)
        rules.events_evaluated.inc(4 * n)
        rules.events_unlinked.inc(n)
        rules.commands_emitted.labels("BonusAccrue").inc(3 * n)
        rules_stream.records.labels("social-loyalty.rules").inc(4 * n)
        actions.commands_applied.labels("ledger", "BonusAccrue").inc(3 * n)
        actions.ledger_points.labels("credited").inc(15 * n)
        actions_sink.records.labels("social-loyalty.actions.ledger").inc(3 * n)

    work(1)
    try:
        yield Services(urls, work)
    finally:
        for server in servers:
            server.stop()


Sample = tuple[str, dict[str, str], float, float]
"""(name, labels, value, timestamp)"""


def samples_of(text: str, target: Target, at: float) -> list[Sample]:
    """A scrape's samples as Prometheus stores them: with its target's labels, and ``up``."""
    found: list[Sample] = [("up", dict(target.labels), 1.0, at)]
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_created"):  # Prometheus 2.42 ignores these by default
                continue
            found.append((s.name, target.attach(s.labels), float(s.value), at))
    return found


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def openmetrics(samples: Sequence[Sample]) -> str:
    """OpenMetrics text: each name's samples together, each series in time order."""
    by_name: dict[str, list[Sample]] = {}
    for sample in samples:
        by_name.setdefault(sample[0], []).append(sample)
    lines: list[str] = []
    for name, found in sorted(by_name.items()):
        lines.append(f"# TYPE {name} unknown")
        found.sort(key=lambda s: (sorted(s[1].items()), s[3]))
        for _, labels, value, at in found:
            pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{name}{{{pairs}}} {_number(value)} {at:.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def backfill(recorded: Sequence[Sample], workdir: Path) -> Path:
    """A Prometheus TSDB holding ``recorded`` (``promtool tsdb create-blocks-from``)."""
    source = workdir / "recorded.om.txt"
    source.write_text(openmetrics(recorded))
    tsdb = workdir / "tsdb"
    created = subprocess.run(
        [tool("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    return tsdb


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expression) for every target, the variables as Grafana's "All"."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = re.sub(r"\$\{?(group|topic)\}?", ".*", target["expr"])
            assert "$" not in expr, expr
            queries.append((panel["title"], expr))
    return queries


@dataclass
class Prometheus:
    base: str
    process: subprocess.Popen[bytes]

    def query(self, expr: str, at: float) -> dict[str, Any]:
        response = httpx.get(
            f"{self.base}/api/v1/query", params={"query": expr, "time": at}, timeout=10
        )
        body: dict[str, Any] = response.json()
        return body


def start_prometheus(tsdb: Path, workdir: Path) -> Prometheus:
    config = workdir / "prometheus.yml"
    # No scrape jobs (the recording is the data); the alert rules, so they are checked too.
    config.write_text(json.dumps({"rule_files": [str(ALERTS)]}))
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={tsdb}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1y",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, "prometheus exited:\n" + log.read_text()[-3000:]
        try:
            if httpx.get(f"{base}/-/ready", timeout=2).status_code == 200:
                return Prometheus(base, process)
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "prometheus never ready:\n" + log.read_text()[-3000:]
        time.sleep(0.1)


def test_every_dashboard_panel_returns_data_from_recorded_metrics(  # noqa: PLR0917
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    join_group: Callable[[str, str, int], Member],
    unique: Callable[[str], str],
    services: Services,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    prefix = unique("social-loyalty.panels")
    topic = make_topic("panels", partitions=3)
    produce(kafka_settings, topic, {0: 20, 1: 10, 2: 5})
    live, idle, replay = f"{prefix}.live", f"{prefix}.idle", f"{prefix}.replay.offer-7"
    join_group(live, topic, 3).commit({0: 5, 1: 4, 2: 1})  # held, never moves: STALL
    commit(kafka_settings, idle, topic, {0: 18, 1: 2})
    commit(kafka_settings, replay, topic, {0: 1})

    targets = scrape_targets()
    settings = LagMonitorSettings(
        kafka=kafka_settings,
        cluster="test",
        group_prefixes=(prefix,),
        window_size=3,
        sample_interval_s=PAUSE_S,
        services=tuple(ServiceTarget(name, url) for name, url in services.urls.items()),
    )
    recorded: list[Sample] = []

    async def record() -> None:
        monitor = LagMonitor(settings)
        try:
            for n in range(ROUNDS):
                services.work(n + 1)
                produce(kafka_settings, topic, {2: 2})
                await monitor.poll_once()
                at = time.time()
                text = generate_latest(monitor.metrics.registry).decode()
                recorded.extend(samples_of(text, targets["lagmonitor"], at))
                async with httpx.AsyncClient(timeout=5) as http:
                    for name, url in services.urls.items():
                        page = (await http.get(f"{url}/metrics")).text
                        recorded.extend(samples_of(page, targets[name], at))
                await asyncio.sleep(PAUSE_S)
        finally:
            await monitor.close()

    asyncio.run(record())
    last = max(s[3] for s in recorded)
    assert any(
        s[0] == "kafka_consumergroup_status_code" and s[2] == 3 and s[3] == last for s in recorded
    ), "the live group never stalled: no not-OK partition to show"

    prometheus = start_prometheus(backfill(recorded, tmp_path), tmp_path)
    try:
        results: dict[str, dict[str, Any]] = {}
        for title, expr in dashboard_queries():
            results[f"{title}: {expr}"] = prometheus.query(expr, last)
        variables = httpx.get(
            f"{prometheus.base}/api/v1/label/consumergroup/values",
            params={"match[]": "kafka_consumergroup_lag"},
            timeout=10,
        ).json()
        before = prometheus.query(BROKEN_BEFORE, last)
        rules = httpx.get(f"{prometheus.base}/api/v1/rules", timeout=10).json()
    finally:
        prometheus.process.terminate()
        prometheus.process.wait(15)

    failed = {q: r.get("error") for q, r in results.items() if r["status"] != "success"}
    assert failed == {}
    empty = [q for q, r in results.items() if not r["data"]["result"]]
    assert empty == []
    assert set(variables["data"]) == {live, idle, replay}
    loaded = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
    written = yaml.safe_load(ALERTS.read_text())
    assert loaded == {r["alert"] for g in written["groups"] for r in g["rules"]}
    # What the service panels queried before: Prometheus refuses it, as Grafana showed.
    assert before["status"] == "error"
    assert "same labelset" in before["error"]

    def values(fragment: str) -> dict[str, float]:
        (result,) = [r for q, r in results.items() if fragment in q]
        return {
            json.dumps(x["metric"], sort_keys=True): float(x["value"][1])
            for x in result["data"]["result"]
        }

    # live STALLs (held, not moving), idle STOPs (nobody commits); replay is not counted.
    assert list(values("count(kafka_consumergroup_group_status").values()) == [2.0]
    live_lag = 15 + 6 + (5 + 2 * ROUNDS - 1)
    assert list(values("sum(kafka_consumergroup_lag").values()) == [live_lag + 2 + 8]
    throughput = values("lagmonitor_service_throughput")
    assert {json.loads(k)["service"] for k in throughput} == set(services.urls)
    assert all(v > 0 for v in throughput.values())
    with capsys.disabled():
        print(
            f"\n{len(results)} dashboard queries returned data from {len(recorded)} recorded "
            f"samples in {time.monotonic() - started:.1f} s"
        )
