"""The Grafana dashboard and Prometheus files only use series the monitor exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.lagmonitor.core import ClusterSample, GroupObservation
from services.lagmonitor.monitor import LagMonitor
from services.lagmonitor.settings import LagMonitorSettings

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
METRIC = re.compile(r"\b((?:kafka|lagmonitor)_[a-z_]+)\b")


def exported_names() -> set[str]:
    monitor = LagMonitor(LagMonitorSettings())
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
    assert sum('group=~"$group"' in e for e in exprs) >= 8
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_prometheus_scrapes_the_monitor_and_the_services() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    assert "127.0.0.1:9308" in targets
    assert {f"127.0.0.1:{port}" for port in range(9101, 9106)} <= targets
    for rule_file in config["rule_files"]:
        assert (DEPLOY / "prometheus" / rule_file).is_file()


def test_alerts_ignore_replay_groups_and_use_exported_series() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "lag-alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert used - exported_names() == set()
    for expr in exprs:
        if "kafka_consumergroup" in expr:
            assert 'replay="false"' in expr
