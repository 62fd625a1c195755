"""After the story: the demo's own lag monitor must say every consumer group is OK, and
those the story fed are at lag 0, within 30 s, as an operator's dashboard would
(issue 26: once it said "8 groups, 4 not OK" after a healthy run, for the commit
marker of each group's last transaction). The detector is the exception to lag 0:
the collector never stops collecting, so its group always has the last few seconds'
snapshots to commit (every ``DETECTOR_COMMIT_INTERVAL_S``); it must be OK. The demo
prints how long that took and puts it in its summary; the e2e tests hold the plain
and the failover run to it."""

from __future__ import annotations

import time
from typing import Any

import httpx

SETTLE_S = 30.0
FED_CONTINUOUSLY = (".detector",)
"""Groups whose input never rests while the demo runs: OK is asked of them, not lag 0."""


def settle(lagmonitor_url: str, timeout_s: float = SETTLE_S) -> dict[str, Any]:
    """Ask ``/api/lag`` until every group of its latest sample is OK with lag 0 (or
    ``timeout_s`` passed): ``{"settled_s": seconds or None, "groups": {group: {status,
    lag, error}}}``, the groups as last seen."""
    started = time.monotonic()
    groups: dict[str, dict[str, Any]] = {}
    while True:
        try:
            document = httpx.get(f"{lagmonitor_url}/api/lag", timeout=5).json()
            groups = {g["group"]: _figures(g) for g in document.get("groups", [])}
        except (httpx.HTTPError, ValueError) as exc:
            groups = {"(lag monitor)": {"status": "ERR", "lag": None, "error": str(exc)}}
        elapsed = time.monotonic() - started
        if groups and all(_ok(name, g) for name, g in groups.items()):
            return {"settled_s": round(elapsed, 1), "groups": groups}
        if elapsed >= timeout_s:
            return {"settled_s": None, "groups": groups}
        time.sleep(0.5)


def describe(lag: dict[str, Any]) -> str:
    """One line for the demo's console."""
    groups = lag["groups"]
    if lag["settled_s"] is not None:
        busy = ", ".join(f"{n} {g['lag']}" for n, g in sorted(groups.items()) if g["lag"])
        return (
            f"lag: all {len(groups)} consumer groups OK {lag['settled_s']:g} s after the "
            f"story, lag 0{f' but {busy} (the collector keeps collecting)' if busy else ''}"
        )
    behind = ", ".join(
        f"{name} {g['status']} lag {g['lag']}{' ' + g['error'] if g['error'] else ''}"
        for name, g in sorted(groups.items())
        if not _ok(name, g)
    )
    return f"lag: not every group OK {SETTLE_S:.0f} s after the story: {behind}"


def _figures(group: dict[str, Any]) -> dict[str, Any]:
    lags = [p.get("lag") for p in group.get("partitions", [])]
    return {
        "status": group.get("status"),
        "lag": sum(lag for lag in lags if lag is not None),
        "error": group.get("error") or None,
    }


def _ok(name: str, group: dict[str, Any]) -> bool:
    caught_up = group["lag"] == 0 or name.endswith(FED_CONTINUOUSLY)
    return group["status"] == "OK" and caught_up and not group["error"]
