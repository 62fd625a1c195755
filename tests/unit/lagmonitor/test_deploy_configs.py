"""The Grafana dashboard and Prometheus files only use series the monitor exports."""

from __future__ import annotations

import json
import re
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.lagmonitor.core import ClusterSample, GroupObservation
from services.lagmonitor.monitor import LagMonitor
from services.lagmonitor.settings import LagMonitorSettings
from services.lagmonitor.throughput import Reading, ServiceTarget

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
METRIC = re.compile(r"\b((?:kafka|lagmonitor)_[a-z_]+)\b")
SERVICE_PORTS = {8082, 8083, 8084, 8086, 9308}


def exported_names() -> set[str]:
    monitor = LagMonitor(LagMonitorSettings(services=(ServiceTarget("s", "http://s:1"),)))
    monitor.apply_services({"s": Reading(0.0, {"social_loyalty_s_events_total": 1.0})})
    monitor.apply_services({"s": Reading(1.0, {"social_loyalty_s_events_total": 2.0})})
    monitor.apply(
        ClusterSample(
            time=1.0,
            groups=(GroupObservation("g", committed={("t", 0): 1, ("t", 1): 2}),),
            end_offsets={("t", 0): 2, ("t", 1): 2},
            stable_offsets={("t", 0): 2},
        )
    )
    text = generate_latest(monitor.metrics.registry).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_grafana_dashboard_queries_exported_series_and_filters_by_group() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "lag-dashboard.json").read_text())
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert "group" in variables
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert used - exported_names() == set()
    assert sum('group=~"$group"' in e for e in exprs) >= 8  # consumergroup= or group=
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def scrape_targets(name: str) -> set[str]:
    config = yaml.safe_load((DEPLOY / "prometheus" / name).read_text())
    for rule_file in config["rule_files"]:
        assert (DEPLOY / "prometheus" / rule_file).is_file()
    return {
        t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }


def test_prometheus_scrapes_the_monitor_and_every_service_port() -> None:
    targets = scrape_targets("prometheus.yml")
    assert {f"127.0.0.1:{port}" for port in SERVICE_PORTS} <= targets


def test_compose_prometheus_scrapes_every_exposed_service_by_its_compose_name() -> None:
    services = compose()["services"]
    targets = scrape_targets("prometheus.compose.yml")
    hosts = {t.split(":")[0] for t in targets}
    ports = {int(t.split(":")[1]) for t in targets}
    assert hosts <= set(services)
    assert ports >= SERVICE_PORTS
    exposed = {
        int(mapping.split(":")[1]) for svc in services.values() for mapping in svc.get("ports", [])
    }
    assert ports - {6066} <= exposed  # the workers' 6066 stays inside the network


def test_alerts_ignore_replay_groups_and_use_exported_series() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "lag-alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert used - exported_names() == set()
    for expr in exprs:
        if "kafka_consumergroup" in expr:
            assert 'replay="false"' in expr


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return document


def module_of(command: list[str]) -> str:
    assert command[:2] == ["python", "-m"], command
    return command[2]


def runnable(module: str) -> bool:
    """``python -m module`` works: a package with ``__main__.py`` or a module file."""
    path = REPO.joinpath(*module.split("."))
    return (path / "__main__.py").is_file() or path.with_suffix(".py").is_file()


def test_every_compose_command_runs_an_existing_service_module() -> None:
    services = compose()["services"]
    python = {name: svc for name, svc in services.items() if "command" in svc and "build" in svc}
    assert {
        "simulator", "sinks", "collector", "detector", "readmodel", "rules", "rules-api",
        "actions", "lagmonitor",
    } <= set(python)  # fmt: skip
    for name, svc in python.items():
        module = module_of(svc["command"])
        assert module.startswith("services."), (name, module)
        assert runnable(module), f"{name}: python -m {module} has no __main__"
        assert find_spec(module) is not None, (name, module)
        env = svc["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:29092", name
        assert env["DATABASE_URL"].endswith("@postgres:5432/social_loyalty")
        for dependency in svc.get("depends_on", {}):
            assert dependency in services, (name, dependency)


def test_compose_mounts_and_image_sources_exist() -> None:
    for svc in compose()["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source
    cmd = re.search(r'^CMD \["python", "-m", "([a-z_.]+)"', dockerfile, re.MULTILINE)
    assert cmd is not None
    assert runnable(cmd.group(1))


def test_compose_lag_monitor_watches_every_service_it_can_reach() -> None:
    services = compose()["services"]
    env = services["lagmonitor"]["environment"]
    targets = LagMonitorSettings.model_validate({"services": env["LAGMONITOR_SERVICES"]}).services
    assert {t.name for t in targets} >= {"collector", "detector", "rules", "actions"}
    for target in targets:
        host = target.url.split("//")[1].split(":")[0]
        assert host in services, target
    assert env["LAGMONITOR_GROUP_PREFIXES"] == "social-loyalty"


def test_the_kafka_unreachable_alerts_match_what_the_monitor_exports_after_a_failed_sample() -> (
    None
):
    monitor = LagMonitor(LagMonitorSettings())
    monitor.fail("Kafka unreachable: no broker answered")
    text = generate_latest(monitor.metrics.registry).decode()
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    rules = yaml.safe_load((DEPLOY / "prometheus" / "lag-alerts.yml").read_text())
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}

    down = re.fullmatch(r"(\w+) == (\d+)", exprs["LagMonitorKafkaUnreachable"])
    assert down is not None
    assert values[down[1]] == float(down[2])
    stale = re.fullmatch(r"time\(\) - (\w+) > (\d+)", exprs["LagMonitorSamplesStale"])
    assert stale is not None
    assert time.time() - values[stale[1]] > float(stale[2])
