"""The dashboard's first response, rendered on the server from the ``/api/lag`` document.

``curl /`` (a script, a text browser, a page whose JavaScript has not run yet)
gets the groups with their status, the worst partitions, the services and
whether Kafka answers, as HTML. The page's script then takes over and redraws
the same elements from ``/api/lag`` and the live stream, so the markup here is
the markup ``static/dashboard.html``'s script builds (same ids, classes and
``data-*`` hooks, same number formats); the charts are drawn by the script
alone. Pure: a document in, a page out.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from typing import Any

PALETTE = (
    "#3366cc",
    "#dc3912",
    "#109618",
    "#990099",
    "#0099c6",
    "#dd4477",
    "#66aa00",
    "#b82e2e",
    "#316395",
    "#994499",
    "#22aa99",
    "#aaaa11",
)
"""The script's palette; colours are given in order of first sight, as there."""
NO_VALUE = "\N{EN DASH}"


class TemplateChangedError(ValueError):
    """The page no longer has an element the server fills in: fix ``page.py`` with it."""


def fmt_int(value: int | None) -> str:
    return NO_VALUE if value is None else f"{value:,}"


def fmt_duration(seconds: float | None) -> str:
    """The script's ``fmtDuration``."""
    if seconds is None:
        return NO_VALUE
    if seconds < 1:
        return "0 s" if seconds == 0 else f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = int(seconds // 60), int(seconds % 60)
    if minutes < 60:
        return f"{minutes} m {sec} s"
    return f"{minutes // 60} h {minutes % 60} m"


def fmt_rate(value: float | None) -> str:
    """The script's ``fmtRate``."""
    if value is None:
        return NO_VALUE
    if value >= 100:
        return f"{round(value):,}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def fmt_time(at: float | None) -> str:
    """Wall-clock time of a sample; UTC, as the server does not know the reader's zone
    (the script shows local time once it runs)."""
    return "never" if not at else time.strftime("%H:%M:%S UTC", time.gmtime(at))


def _time_lag(p: Mapping[str, Any]) -> str:
    mark = {"lower_bound": "≥ ", "extrapolated": "~ "}.get(p.get("time_lag_kind") or "", "")
    return mark + fmt_duration(p.get("time_lag_s"))


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name)


def _tag(name: str, text: str = "", **attrs: str | None) -> str:
    """One element; attribute names use ``_`` for ``-`` (``data_group``), ``cls`` for class;
    ``""`` gives a bare (boolean) attribute, ``None`` none."""
    names = {k: "class" if k == "cls" else k.replace("_", "-") for k in attrs}
    rendered = "".join(
        f" {names[k]}" if v == "" else f' {names[k]}="{html.escape(v)}"'
        for k, v in attrs.items()
        if v is not None
    )
    return f"<{name}{rendered}>{text}</{name}>"


def _badge(status: str) -> str:
    return _tag("span", html.escape(status), cls=f"badge s-{status}", data_status=status)


class _Colours:
    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        return self._seen.setdefault(name, PALETTE[len(self._seen) % len(PALETTE)])


def _group_rows(groups: Sequence[Mapping[str, Any]], colour: _Colours) -> str:
    rows = []
    for g in groups:
        name = g["group"]
        swatch = _tag("span", cls="swatch", style=f"background:{colour(name)}")
        replay = _tag("span", "replay", cls="tag") if g.get("replay") else ""
        cells = [
            _tag("td", swatch + html.escape(name) + replay, cls="name", title=name),
            _tag("td", _badge(g["status"])),
            _tag("td", html.escape(str(g["state"]))),
            _tag("td", fmt_int(g["members"]), cls="num"),
            _tag("td", fmt_int(g["total_lag"]), cls="num lag"),
            _tag("td", fmt_duration(g.get("max_time_lag_s")), cls="num time-lag"),
            _tag("td", str(len(g["partitions"])), cls="num"),
        ]
        rows.append(
            _tag(
                "tr",
                "".join(cells),
                id=f"group-{_slug(name)}",
                cls="group",
                data_group=name,
                data_status=g["status"],
                tabindex="0",
                aria_expanded="false",
            )
        )
    return "".join(rows)


def _worst_rows(groups: Sequence[Mapping[str, Any]]) -> tuple[str, int]:
    """The script's ``renderWorst``: partitions behind, non-replay first, then by time lag."""
    behind = [(g, p) for g in groups for p in g["partitions"] if (p.get("lag") or 0) > 0]
    behind.sort(
        key=lambda gp: (
            bool(gp[0].get("replay")),
            -(gp[1]["time_lag_s"] if gp[1].get("time_lag_s") is not None else -1.0),
            -(gp[1].get("lag") or 0),
        )
    )
    rows = []
    for g, p in behind[:10]:
        cells = [
            _tag("td", html.escape(g["group"]), cls="name", title=g["group"]),
            _tag("td", html.escape(p["topic"]), cls="name"),
            _tag("td", str(p["partition"]), cls="num"),
            _tag("td", fmt_int(p.get("committed_offset")), cls="num"),
            _tag("td", fmt_int(p.get("end_offset")), cls="num"),
            _tag("td", fmt_int(p.get("lag")), cls="num"),
            _tag("td", _time_lag(p), cls="num", title=p.get("time_lag_kind")),
            _tag("td", _badge(p["status"])),
        ]
        rows.append(
            _tag(
                "tr",
                "".join(cells),
                data_group=g["group"],
                data_topic=p["topic"],
                data_partition=str(p["partition"]),
            )
        )
    return "".join(rows), len(behind)


def _service_rows(services: Sequence[Mapping[str, Any]], colour: _Colours) -> str:
    rows = []
    for s in services:
        swatch = _tag("span", cls="swatch", style=f"background:{colour(s['service'])}")
        up = "UP" if s["up"] else "DOWN"
        items = [] if s["up"] else [_tag("li", html.escape(s.get("error") or "down"))]
        items += [
            _tag(
                "li",
                _tag("b", fmt_rate(c.get("rate")), cls="rate")
                + " "
                + html.escape(c["name"].removesuffix("_total")),
                data_counter=c["name"],
            )
            for c in s.get("counters", [])
        ]
        cells = [
            _tag("td", swatch + html.escape(s["service"]), cls="name", title=s.get("url")),
            _tag("td", _tag("span", up, cls=f"badge s-{up}", title=s.get("error") or "")),
            _tag("td", fmt_rate(s.get("throughput")), cls="num throughput"),
            _tag("td", _tag("ul", "".join(items), cls="counters"), cls="counters"),
        ]
        rows.append(
            _tag(
                "tr",
                "".join(cells),
                id=f"service-{_slug(s['service'])}",
                data_service=s["service"],
                data_up=str(bool(s["up"])).lower(),
            )
        )
    return "".join(rows)


def _kafka_banner(kafka: Mapping[str, Any]) -> str:
    """The script's ``renderKafka`` text for an unreachable cluster."""
    why = (kafka.get("error") or "the last sample failed").removeprefix("Kafka unreachable: ")
    last = kafka.get("last_success_at")
    return (
        f"Kafka is unreachable ({kafka.get('bootstrap_servers') or '?'}) since "
        f"{fmt_time(kafka.get('unreachable_since'))}: {why}. Last successful sample: "
        f"{fmt_time(last)}" + ("; the figures below are from then." if last else ".")
    )


def _replace(page: str, old: str, new: str) -> str:
    if old not in page:
        raise TemplateChangedError(f"dashboard.html has no {old!r} to fill in")
    return page.replace(old, new, 1)


def render_page(template: str, document: Mapping[str, Any] | None, kafka: Mapping[str, Any]) -> str:
    """The dashboard with the monitor's current state in it.

    ``document`` is ``/api/lag`` (``None`` before the first good sample), ``kafka``
    the monitor's Kafka state (its ``kafka`` part, also given without a document).
    """
    reachable = bool(kafka.get("reachable"))
    tried = kafka.get("last_attempt_at") is not None
    page = template
    groups: Sequence[Mapping[str, Any]] = document["groups"] if document else ()
    services: Sequence[Mapping[str, Any]] = document.get("services", ()) if document else ()
    colour = _Colours()
    state = "up" if reachable else "down" if tried else "unknown"
    sampled_at = document["sampled_at"] if document else None
    page = _replace(
        page,
        '<body data-updated="" data-kafka="unknown">',
        f'<body data-updated="{sampled_at if sampled_at is not None else ""}" '
        f'data-kafka="{state}">',
    )
    if state == "down":
        page = _replace(page, "<title>Consumer lag", "<title>Kafka unreachable · Consumer lag")
        page = _replace(
            page,
            '<div id="kafka-down" role="alert" hidden></div>',
            _tag("div", html.escape(_kafka_banner(kafka)), id="kafka-down", role="alert"),
        )
    page = _replace(
        page, '<span id="updated">never</span>', _tag("span", fmt_time(sampled_at), id="updated")
    )
    if document is not None:
        bad = sum(1 for g in groups if g["status"] != "OK" and not g.get("replay"))
        summary = (
            f"{len(groups)} groups, {bad} not OK, sampled in "
            f"{document.get('poll_duration_s', 0.0) * 1000:.0f} ms"
        )
        if services:
            summary += f", {sum(1 for s in services if s['up'])} of {len(services)} services up"
    else:
        summary = "Kafka unreachable: no figures" if state == "down" else ""
    page = _replace(
        page,
        '<span class="meta" id="summary"></span>',
        _tag("span", html.escape(summary), cls="meta", id="summary"),
    )
    page = _replace(
        page,
        '<tbody id="groups-body"></tbody>',
        _tag("tbody", _group_rows(groups, colour), id="groups-body"),
    )
    current = document is not None and bool(document.get("current", True))
    unreachable = state == "down" and not current
    no_sample = document is None and state != "down"
    groups_empty = (
        "Kafka is unreachable: no consumer group figures."
        if unreachable
        else "No sample of Kafka yet."
        if no_sample
        else "No consumer groups yet."
    )
    page = _replace(
        page,
        '<div class="empty" id="groups-empty">No consumer groups yet.</div>',
        _tag("div", groups_empty, cls="empty", id="groups-empty", hidden="" if groups else None),
    )
    worst, behind = _worst_rows(groups)
    page = _replace(page, '<tbody id="worst-body"></tbody>', _tag("tbody", worst, id="worst-body"))
    # "Caught up" only from a sample of now, as the script says it.
    worst_empty = (
        "No current figures: Kafka is unreachable."
        if unreachable
        else "No sample of Kafka yet."
        if no_sample
        else "Every partition is caught up."
    )
    page = _replace(
        page,
        '<div class="empty" id="worst-empty">Every partition is caught up.</div>',
        _tag("div", worst_empty, cls="empty", id="worst-empty", hidden="" if behind else None),
    )
    errors = [*(document.get("errors", ()) if document else ())]
    errors += [f"{g['group']}: {g['error']}" for g in groups if g.get("error")]
    page = _replace(
        page,
        '<ul id="errors"></ul>',
        _tag("ul", "".join(_tag("li", html.escape(e)) for e in errors), id="errors"),
    )
    page = _replace(
        page,
        '<tbody id="services-body"></tbody>',
        _tag("tbody", _service_rows(services, colour), id="services-body"),
    )
    if services:
        page = _replace(
            page,
            '<div class="empty" id="services-empty">',
            '<div class="empty" id="services-empty" hidden>',
        )
    return page
