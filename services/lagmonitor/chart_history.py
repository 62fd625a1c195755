"""The last few minutes of per-group figures for the dashboard's charts.

One point per sample and group (total offset lag, worst time lag, status) is
enough to draw the charts; per-partition history is what Prometheus is for.
Kept in memory here, and in PostgreSQL by ``history_store`` so a restarted
monitor shows the same charts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.lagmonitor.core import Snapshot
from services.lagmonitor.throughput import ServiceRates


@dataclass(frozen=True, slots=True)
class GroupPoint:
    lag: int
    time_lag_s: float | None
    status: str


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    time: float
    groups: dict[str, GroupPoint]
    services: dict[str, float | None] = field(default_factory=dict)
    """Throughput (counter increments per second) per service; None while down."""


def history_point(snapshot: Snapshot, services: Sequence[ServiceRates] = ()) -> HistoryPoint:
    return HistoryPoint(
        time=snapshot.sampled_at,
        groups={
            g.group: GroupPoint(g.total_lag, g.max_time_lag_s, g.status.value)
            for g in snapshot.groups
        },
        services={s.service: s.throughput for s in services},
    )


def point_from_json(document: dict[str, Any]) -> HistoryPoint:
    """The inverse of ``point_to_json`` (a point read back from the database)."""
    return HistoryPoint(
        time=float(document["t"]),
        groups={
            name: GroupPoint(int(g["lag"]), g["time_lag_s"], str(g["status"]))
            for name, g in document.get("groups", {}).items()
        },
        services=dict(document.get("services", {})),
    )


def point_to_json(point: HistoryPoint) -> dict[str, Any]:
    return {
        "t": point.time,
        "groups": {
            name: {"lag": gp.lag, "time_lag_s": gp.time_lag_s, "status": gp.status}
            for name, gp in point.groups.items()
        },
        "services": dict(point.services),
    }


class History:
    """A time-bounded queue of points; old points fall off as new ones arrive."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._points: deque[HistoryPoint] = deque()

    def extend(self, points: Sequence[HistoryPoint]) -> None:
        """Points older than any already here, e.g. read back after a restart, in time order."""
        known = self._points[0].time if self._points else float("inf")
        older = sorted((p for p in points if p.time < known), key=lambda p: p.time)
        self._points.extendleft(reversed(older))
        if self._points:
            newest = self._points[-1].time
            while self._points and self._points[0].time < newest - self.keep_s:
                self._points.popleft()

    def append(self, point: HistoryPoint) -> None:
        self._points.append(point)
        while self._points and self._points[0].time < point.time - self.keep_s:
            self._points.popleft()

    def latest(self) -> HistoryPoint | None:
        return self._points[-1] if self._points else None

    def points(self) -> list[HistoryPoint]:
        return list(self._points)

    def to_json(self) -> list[dict[str, Any]]:
        return [point_to_json(p) for p in self._points]
