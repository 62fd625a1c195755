"""Run the demo story as a user would and check what it leaves behind (shared by e2e and chaos)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.demo.story import ALICE, BOB, CAROL, DAVE, EVE, FINAL_BALANCES, NEW_VK_POSTS

ROOT = Path(__file__).resolve().parents[2]


def run_demo(
    tmp_path: Path, *extra: str, timeout_s: float = 900, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``python -m services.demo --exit-when-done``; fails with the demo's output if it fails.
    ``env`` is laid over the test's environment (another cluster's stack directory).

    On a timeout the demo gets SIGTERM (it stops its services, like Ctrl-C) before
    the test fails, so no service outlives the test and holds the demo's ports.
    """
    summary = tmp_path / "summary.json"
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        demo = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.demo",
                "--exit-when-done",
                "--summary",
                str(summary),
                *extra,
            ],
            cwd=ROOT,
            env={**os.environ, **(env or {}), "COLUMNS": "160"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            code = demo.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            demo.send_signal(signal.SIGTERM)
            demo.wait(timeout=120)
            code = None
    output = log.read_text()[-20_000:]
    assert code is not None, f"the demo took over {timeout_s:.0f}s:\n{output}"
    assert code == 0, f"the demo failed:\n{output}"
    print(output)
    result: dict[str, Any] = json.loads(summary.read_text())
    return result


def expected_events(posts: dict[str, list[int]]) -> Counter[tuple[str, str, int | None]]:
    """(event type, network:user, post id) for everything the story does after the baseline."""
    vk = posts["vk"]
    ok = posts["ok"]

    def who(member: Any) -> str:
        return f"{member.network}:{member.social_user_id}"

    events: list[tuple[str, str, int | None]] = [
        *(("ProfileLinked", who(m), None) for m in (ALICE, BOB, CAROL, DAVE)),
        *(("GroupJoined", who(m), None) for m in (ALICE, BOB, EVE, CAROL)),
        *(("PostLiked", who(ALICE), vk[n]) for n in range(NEW_VK_POSTS)),
        ("PostLiked", who(BOB), vk[0]),
        *(("PostLiked", who(EVE), vk[n]) for n in range(3)),
        ("PostUnliked", who(BOB), vk[0]),
        ("PostLiked", who(BOB), vk[0]),
        ("PostReposted", who(BOB), vk[1]),
        ("CommentPosted", who(CAROL), ok[0]),
        ("RepostDeleted", who(BOB), vk[1]),
        ("GroupLeft", who(BOB), None),
    ]
    return Counter(events)


def check_story(result: dict[str, Any]) -> None:
    assert result["balances"] == FINAL_BALANCES
    seen = Counter(
        (e["type"], f"{e['network']}:{e['social_user_id']}", e.get("post_id"))
        for e in result["events"]
    )
    assert seen == expected_events(result["posts"])
    ids = [e["event_id"] for e in result["events"]]
    assert len(ids) == len(set(ids))
    # One welcome push per linked member, delivered once each, whatever was retried.
    delivered = Counter(str(m.get("to")) for m in result["messages"])
    assert delivered == Counter({"alice": 1, "bob": 1, "carol": 1, "dave": 1})


def check_ledger(result: dict[str, Any]) -> None:
    """The ledger as the demo's database holds it: every entry sums to the balances, and
    no offer rewarded one event twice under two command ids (the primary key already
    refuses one command id twice)."""
    entries = result["ledger"]
    assert len({e["command_id"] for e in entries}) == len(entries)
    effects = Counter(
        (e["member_id"], e["offer_id"], e["source_event_id"], e["points"] > 0) for e in entries
    )
    assert [effect for effect, n in effects.items() if n > 1] == []
    sums: Counter[str] = Counter()
    for entry in entries:
        sums[entry["member_id"]] += entry["points"]
    assert {m: b for m, b in result["balances"].items() if b} == dict(sums)


def check_lag(result: dict[str, Any]) -> None:
    """The demo's lag monitor said every consumer group OK, those the story fed at lag 0,
    within 30 s of the story's end (services/demo/lag.py): no dashboard cries wolf after
    a healthy run."""
    lag = result["lag"]
    assert lag["settled_s"] is not None, lag
    assert len(lag["groups"]) >= 4, lag
