"""Acceptance: 10,000 mixed commands (with duplicates) through the actions service
while it is killed with SIGKILL at random points, at least 10 times.

The commands are produced in waves; each cycle produces a wave, starts
``python -m services.actions run`` as a subprocess, waits for it to make progress
(or not, sometimes), sleeps a random moment and kills it with ``kill -9``. A final
run drains everything and is stopped with SIGTERM. Then: every balance equals the
expected sum exactly, every command id took effect once, no message reached the
SMTP / HTTP sinks twice, and every ledger entry has its outcome on the topic.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from services.actions.sinks import free_port
from services.contracts.models import (
    BonusAccrue,
    BonusDeduct,
    Channel,
    Command,
    CounterIncrement,
    MailingSet,
    PointsCredited,
    PointsDeducted,
    SendMessage,
)
from tests.integration.actions.conftest import (
    ActionsEnv,
    accrue,
    count,
    deduct,
    mailing,
    message,
    wait_for,
)

pytestmark = pytest.mark.chaos

TOTAL = 10_000
WAVES = 12
KILLS = 12
SEND_CONCURRENCY = 8


def _workload(rng: random.Random) -> list[Command]:
    """10,000 commands: ~60% bonus, 20% notify, 12% counter, 8% mailing, with one in
    six being a duplicate of an earlier command (same id, as a replay would send)."""
    members = [f"member-{i}" for i in range(300)]
    unique: list[Command] = []
    plan = [("bonus", 5000), ("notify", 1700), ("counter", 1000), ("mailing", 650)]
    for kind, n in plan:
        for i in range(n):
            member = rng.choice(members)
            cid = f"{kind}-{i}-{uuid.uuid4().hex[:8]}"
            if kind == "bonus":
                points = rng.randint(1, 100)
                unique.append(
                    deduct(member, points, cid)
                    if rng.random() < 0.25
                    else accrue(member, points, cid)
                )
            elif kind == "notify":
                channel = rng.choice(list(Channel))
                unique.append(message(member, channel, marketing=rng.random() < 0.3, cid=cid))
            elif kind == "counter":
                unique.append(
                    count(member, rng.choice(["likes", "comments"]), rng.randint(1, 3), cid)
                )
            else:
                # mailing goes to other members, so whether a marketing message is
                # suppressed does not depend on the race between two topics
                unique.append(
                    mailing(f"mail-{i % 200}", rng.choice(list(Channel)), rng.random() < 0.5, cid)
                )
    rng.shuffle(unique)
    commands = list(unique)
    while len(commands) < TOTAL:
        at = rng.randrange(len(commands))
        commands.insert(rng.randrange(at, len(commands) + 1), commands[at])
    return commands


def _progress(env: ActionsEnv) -> int:
    return int(env.scalar("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets") or 0)


def test_kill_minus_nine_ten_times_and_every_effect_lands_exactly_once(
    env: ActionsEnv, tmp_path: Path
) -> None:
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "7")))
    commands = _workload(rng)
    port = free_port()
    child_env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": env.kafka.bootstrap_servers,
        "DATABASE_URL": env.database.database_url.get_secret_value(),
        "TOPIC_PREFIX": env.topics.prefix,
        "TOPIC_PARTITIONS": str(env.topics.partitions),
        "ACTIONS_DB_SCHEMA": env.schema,
        "ACTIONS_GROUP_PREFIX": env.group_prefix,
        "ACTIONS_INSTANCE_ID": "chaos",
        "ACTIONS_SESSION_TIMEOUT_MS": "6000",
        "ACTIONS_BATCH_SIZE": "200",
        "ACTIONS_POLL_TIMEOUT_S": "0.2",
        "ACTIONS_DEDUCT_POLICY": "allow_negative",
        "ACTIONS_SEND_CONCURRENCY": str(SEND_CONCURRENCY),
        "ACTIONS_SMTP_PORT": str(env.sinks.smtp_port),
        "ACTIONS_SMS_URL": f"{env.sinks.http_url}/sms",
        "ACTIONS_PUSH_URL": f"{env.sinks.http_url}/push",
        "ACTIONS_VIBER_URL": f"{env.sinks.http_url}/viber",
        "ACTIONS_PORT": str(port),
        "ACTIONS_HOST": "127.0.0.1",
    }
    log_path = tmp_path / "actions.log"

    def start() -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "services.actions", "run", "--loglevel", "warning"],
                env=child_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).parents[3],
            )

    started = time.monotonic()
    wave = -(-len(commands) // WAVES)
    kills = 0
    for cycle in range(KILLS):
        env.send(*commands[cycle * wave : (cycle + 1) * wave])
        before = _progress(env)
        child = start()
        if rng.random() < 0.8:  # most kills mid-batch; some during start-up
            deadline = time.monotonic() + 60
            while _progress(env) <= before and time.monotonic() < deadline:
                assert child.poll() is None, log_path.read_text()[-3000:]
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.6))
        else:
            time.sleep(rng.uniform(0.3, 1.5))
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        kills += 1
    env.send(*commands[KILLS * wave :])
    child = start()
    wait_for(lambda: _progress(env) == len(commands), "all 10,000 messages applied", 150)
    wait_for(lambda: env.scalar("SELECT count(*) FROM outbox") == 0 or None, "outbox drained", 30)
    child.send_signal(signal.SIGTERM)
    assert child.wait(60) == 0, log_path.read_text()[-3000:]
    elapsed = time.monotonic() - started

    unique: dict[str, Command] = {}
    for command in commands:
        unique.setdefault(command.command_id, command)
    bonus = [c for c in unique.values() if isinstance(c, BonusAccrue | BonusDeduct)]
    notify = [c for c in unique.values() if isinstance(c, SendMessage)]
    counters = [c for c in unique.values() if isinstance(c, CounterIncrement)]
    mailings = [c for c in unique.values() if isinstance(c, MailingSet)]

    # ledger: exact balances, one entry per command id
    expected: dict[str, int] = defaultdict(int)
    for b in bonus:
        expected[b.member_id] += b.points if isinstance(b, BonusAccrue) else -b.points
    balances = dict(env.query("SELECT member_id, balance FROM accounts"))
    assert balances == dict(expected)
    assert env.scalar("SELECT count(*) FROM entries") == len(bonus)
    ledger_sums = dict(env.query("SELECT member_id, sum(points)::bigint FROM entries GROUP BY 1"))
    assert ledger_sums == dict(expected)

    # counters and mailing: once per command id
    expected_counters: Counter[tuple[str, str]] = Counter()
    for k in counters:
        expected_counters[(k.member_id, k.name)] += k.by
    got_counters = {
        (m, n): v for m, n, v in env.query("SELECT member_id, name, value FROM counters")
    }
    assert got_counters == dict(expected_counters)
    assert env.scalar("SELECT count(*) FROM applied_commands") == len(counters) + len(mailings)

    # notifications: every command has one delivery row; nothing arrived twice
    statuses = Counter(dict(env.query("SELECT status, count(*) FROM deliveries GROUP BY 1")))
    assert sum(statuses.values()) == len(notify)
    got = env.sinks.log.messages()
    keys = Counter(m["key"] for m in got)
    assert [k for k, n in keys.items() if n > 1] == []
    sent = {r[0] for r in env.query("SELECT command_id FROM deliveries WHERE status = 'sent'")}
    in_doubt = {
        r[0] for r in env.query("SELECT command_id FROM deliveries WHERE status = 'sending'")
    }
    assert sent <= set(keys), "a message marked sent never reached a sink"
    assert set(keys) <= sent | in_doubt, "a sink got a message the ledger does not know"
    assert len(in_doubt) <= kills * SEND_CONCURRENCY
    assert statuses["failed"] == 0

    # outcomes: at least once, so every entry's outcome is on the topic
    outcomes = env.outcomes()
    points_ids = {o.command_id for o in outcomes if isinstance(o, PointsCredited | PointsDeducted)}
    assert points_ids == {c.command_id for c in bonus}

    rate = len(commands) / elapsed
    print(
        f"\nchaos: {len(commands)} messages ({len(unique)} unique), {kills} kill -9, "
        f"{elapsed:.1f}s end to end ({rate:.0f} msg/s incl. restarts); "
        f"deliveries {dict(statuses)}, "
        f"in doubt after kills {len(in_doubt)}, sink messages {len(got)}"
    )
