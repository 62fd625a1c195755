"""``curl /`` of a running monitor shows the groups and their status, no placeholders.

The monitor runs as the supervisor starts it (``python -m services.lagmonitor``)
on the real broker, watching a group with a live member that is caught up and a
group nobody consumes that is behind. The page is fetched with httpx, as a
script or a text browser would: no JavaScript runs.
"""

from __future__ import annotations

import html
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from services.lagmonitor.page import fmt_duration
from services.runtime.settings import KafkaSettings
from tests.integration.lagmonitor.conftest import Member, commit, produce
from tests.integration.lagmonitor.test_dashboard_browser import DEADLINE_S, free_port, launch

ROW = re.compile(r'<tr id="group-[^"]*" class="group" data-group="([^"]+)" data-status="([A-Z]+)"')


def test_curl_of_the_page_shows_every_group_and_its_status(
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    join_group: Callable[[str, str, int], Member],
    unique: Callable[[str], str],
    tmp_path: Path,
) -> None:
    prefix = unique("social-loyalty.curl")
    topic = make_topic("curl", partitions=2)
    produce(kafka_settings, topic, {0: 6, 1: 3})
    caught_up, behind = f"{prefix}.caught-up", f"{prefix}.behind"
    join_group(caught_up, topic, 2).commit({0: 6, 1: 3})
    commit(kafka_settings, behind, topic, {0: 1, 1: 0})
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "LAGMONITOR_HOST": "127.0.0.1",
        "LAGMONITOR_PORT": str(port),
        # One sample in the test's time: the page and /api/lag show the same one.
        "LAGMONITOR_SAMPLE_INTERVAL_S": "60",
        "LAGMONITOR_GROUP_PREFIXES": prefix,
        "LAGMONITOR_HISTORY_DB": "false",
    }
    base = f"http://127.0.0.1:{port}"
    with launch(env, tmp_path / "lagmonitor.log") as process:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            assert process.poll() is None, (tmp_path / "lagmonitor.log").read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the monitor never became ready"
            time.sleep(0.1)
        page = httpx.get(f"{base}/", timeout=5)
        document: dict[str, Any] = httpx.get(f"{base}/api/lag", timeout=5).json()

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.text
    assert f'data-updated="{document["sampled_at"]}"' in text  # the same sample
    groups = {g["group"]: g for g in document["groups"]}
    assert set(groups) == {caught_up, behind}
    shown = {html.unescape(name): status for name, status in ROW.findall(text)}
    assert shown == {name: g["status"] for name, g in groups.items()}
    assert (groups[caught_up]["total_lag"], groups[behind]["total_lag"]) == (0, 5 + 3)
    for name, g in groups.items():
        row = text.split(f'data-group="{html.escape(name)}"', 1)[1].split("</tr>", 1)[0]
        assert f'<span class="badge s-{g["status"]}" data-status="{g["status"]}">' in row
        assert f'<td class="num lag">{g["total_lag"]:,}</td>' in row
        assert f'<td class="num time-lag">{fmt_duration(g["max_time_lag_s"])}</td>' in row
    assert f"2 groups, {sum(g['status'] != 'OK' for g in groups.values())} not OK" in text
    worst = text.split('id="worst-body"', 1)[1].split("</tbody>", 1)[0]
    assert worst.count(f'data-group="{behind}"') == 2  # both its partitions are behind
    # None of the placeholders a script-less reader used to get.
    assert '<span id="updated">never</span>' not in text
    assert 'id="groups-empty">' not in text  # hidden when groups are shown
    assert 'data-kafka="up"' in text
