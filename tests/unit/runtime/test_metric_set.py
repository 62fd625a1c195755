"""Metrics are built on the registry a process passes (``MetricSet``), never as
module-level globals."""

from __future__ import annotations

import ast
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, generate_latest

from services.runtime.metric_set import MetricSet

SERVICES = Path(__file__).resolve().parents[3] / "services"
METRIC_TYPES = {"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"}


class _Example(MetricSet):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.seen = Counter("example_seen", "Things seen.", ["kind"], registry=registry)


def test_one_set_per_registry_and_each_registry_serves_its_own() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    assert _Example.on(first) is _Example.on(first)  # asked twice, registered once
    assert _Example.on(first) is not _Example.on(second)
    _Example.on(first).seen.labels("like").inc(3)
    assert b'example_seen_total{kind="like"} 3.0' in generate_latest(first)
    assert b"example_seen_total{" not in generate_latest(second)


def _module_level_metrics(path: Path) -> list[str]:
    """``file:line`` of every metric a module builds at its top level."""
    found = []
    for node in ast.parse(path.read_text()).body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if isinstance(value, ast.Call):
            name = getattr(value.func, "id", None) or getattr(value.func, "attr", None)
            if name in METRIC_TYPES:
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_module_declares_a_metric_at_module_level() -> None:
    found = [hit for path in sorted(SERVICES.rglob("*.py")) for hit in _module_level_metrics(path)]
    assert found == [], f"build these on a registry (a MetricSet): {found}"


def test_the_scan_finds_a_module_level_metric(tmp_path: Path) -> None:
    """The scan itself finds one (a check that cannot fail proves nothing)."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import prometheus_client\n"
        "from prometheus_client import Counter\n"
        'SEEN = Counter("x", "y")\n'
        'LAG: prometheus_client.Gauge = prometheus_client.Gauge("z", "w")\n'
    )
    assert _module_level_metrics(probe) == ["probe.py:3", "probe.py:4"]
