"""The ledger consumer against a real broker and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
from confluent_kafka import TopicPartition

from services.actions.bonus import BonusHandler
from services.actions.consumers import worker
from services.actions.deadletters import read_dead_letters, redrive
from services.actions.schema import migrate
from services.actions.settings import DeductPolicy
from services.contracts.models import Command, PointsCredited, PointsDeducted
from services.contracts.topics import COMMANDS_BONUS, DEADLETTER
from services.runtime import kafka
from services.runtime.access import AccessSettings, SignedAuth
from services.runtime.db import connect
from services.runtime.pgsink import PgSinkWorker
from tests.integration.actions.conftest import ActionsEnv, accrue, deduct, message, wait_for


def test_duplicates_credit_once_and_the_api_shows_the_balance(
    env: ActionsEnv, access_settings: AccessSettings, api_auth: SignedAuth
) -> None:
    settings = env.settings(access=access_settings)
    first = accrue("alice", 50, cid="c-1")
    env.send(first, first, accrue("alice", 5, cid="c-2"), first, deduct("alice", 20, cid="c-3"))
    env.start(settings, ("bonus",))
    wait_for(lambda: env.scalar("SELECT count(*) FROM entries") == 3, "three entries")
    # a replay of the same command later, after the first batch committed
    env.send(first)
    wait_for(
        lambda: env.scalar("SELECT sum(next_offset) FROM consumer_offsets") == 6,
        "the replayed message consumed",
    )
    assert env.scalar("SELECT balance FROM accounts WHERE member_id = 'alice'") == 35
    assert env.scalar("SELECT count(*) FROM entries") == 3

    base = f"http://127.0.0.1:{settings.port}"
    balance = wait_for(
        lambda: _get(f"{base}/v1/members/alice/balance", api_auth), "the read API", timeout=30
    )
    assert balance["balance"] == 35
    assert balance["entries"] == 3
    entries = _get(f"{base}/v1/members/alice/entries?limit=2", api_auth)
    assert [e["command_id"] for e in entries["entries"]] == ["c-3", "c-2"]
    assert httpx.get(f"{base}/v1/members/alice/entries?limit=0", auth=api_auth).status_code == 400
    assert httpx.get(f"{base}/v1/members/alice/balance").status_code == 401
    assert _get(f"{base}/v1/members/nobody/balance", api_auth)["balance"] == 0

    outcomes = wait_for(lambda: _at_least(env.outcomes(), 3), "three outcomes")
    by_id = {o.command_id: o for o in outcomes}
    assert len(outcomes) == 3
    assert isinstance(by_id["c-1"], PointsCredited) and by_id["c-1"].balance == 50
    assert isinstance(by_id["c-3"], PointsDeducted) and by_id["c-3"].balance == 35


def _at_least(found: list[Any], n: int) -> list[Any] | None:
    return found if len(found) >= n else None


def _get(url: str, auth: httpx.Auth) -> Any:
    try:
        response = httpx.get(url, timeout=5, auth=auth)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def test_clamp_records_the_shortfall_and_allow_negative_goes_below_zero(env: ActionsEnv) -> None:
    env.send(accrue("bob", 10), deduct("bob", 25, reverses="orig"), accrue("carol", 5))
    env.send(deduct("carol", 8))
    env.start(env.settings(deduct_policy=DeductPolicy.CLAMP), ("bonus",))
    wait_for(lambda: env.scalar("SELECT count(*) FROM entries") == 4, "four entries")
    rows = env.query(
        "SELECT member_id, points, shortfall, reverses FROM entries WHERE points < 0 ORDER BY 1"
    )
    assert rows == [("bob", -10, 15, "orig"), ("carol", -5, 3, None)]
    assert env.scalar("SELECT sum(balance) FROM accounts") == 0

    env.stop_all()
    env.group_prefix += ".neg"
    env.schema += "_neg"
    env.start(env.settings(deduct_policy=DeductPolicy.ALLOW_NEGATIVE), ("bonus",))
    wait_for(lambda: env.scalar("SELECT count(*) FROM entries") == 4, "four entries again")
    assert env.scalar("SELECT balance FROM accounts WHERE member_id = 'bob'") == -15


def test_restart_seeks_to_the_offsets_stored_in_postgres_not_kafkas(env: ActionsEnv) -> None:
    settings = env.settings()
    with connect(settings.database, autocommit=True) as conn:
        migrate(conn, settings.db_schema)
    env.send(*[accrue(f"m{i % 7}", 1) for i in range(30)])

    def run_until(total: int) -> PgSinkWorker[Command]:
        stop = threading.Event()
        consumer = worker(settings, BonusHandler(settings.deduct_policy), env.codec, stop)
        thread = threading.Thread(target=consumer.run, daemon=True)
        thread.start()
        wait_for(lambda: env.scalar("SELECT count(*) FROM entries") == total, f"{total} entries")
        stop.set()
        thread.join(30)
        return consumer

    first = run_until(30)
    assert first.applied_messages == 30
    env.send(*[accrue(f"m{i % 7}", 1) for i in range(12)])
    # Kafka's committed offsets say "everything read"; PostgreSQL says 30 of 42.
    topic = env.topic(COMMANDS_BONUS)
    mover = kafka.consumer(env.kafka, settings.group("bonus"))
    ends = [TopicPartition(topic, p, kafka.watermarks(mover, topic, p)[1]) for p in range(3)]
    mover.commit(offsets=ends, asynchronous=False)
    mover.close()
    second = run_until(42)
    assert second.applied_messages == 12
    assert env.scalar("SELECT sum(balance) FROM accounts") == 42
    assert env.scalar("SELECT sum(next_offset) FROM consumer_offsets") == 42


def test_garbage_goes_to_the_dead_letter_topic_and_the_next_command_applies(
    env: ActionsEnv,
) -> None:
    env.send_raw(COMMANDS_BONUS, b"not avro at all", key=b"dave")
    env.send(accrue("dave", 7))
    wrong = env.codec.encode(message("dave"), env.topic(COMMANDS_BONUS))
    env.send_raw(COMMANDS_BONUS, wrong, key=b"dave")
    env.send(accrue("dave", 3, cid=uuid.uuid4().hex))
    env.start(env.settings(), ("bonus",))
    wait_for(lambda: env.scalar("SELECT balance FROM accounts WHERE member_id='dave'") == 10, "10")
    letters = wait_for(
        lambda: env.dead_letters() if len(env.dead_letters()) == 2 else None, "2 DLs"
    )
    reasons = sorted(letter.reason for letter in letters)
    assert "wrong magic" in reasons[1]
    assert "where BonusAccrue, BonusDeduct was expected" in reasons[0]
    assert {letter.value for letter in letters} == {b"not avro at all", wrong}
    assert all(letter.original_topic == env.topic(COMMANDS_BONUS) for letter in letters)

    stored = read_dead_letters(env.kafka, env.topic(DEADLETTER))
    assert len(stored) == 2
    garbage = next(s for s in stored if s.letter and s.letter.value == b"not avro at all")
    assert garbage.letter is not None
    assert redrive(env.kafka, [garbage.letter]) == 1
    wait_for(lambda: len(env.dead_letters()) == 3, "the redriven garbage dead-lettered again")
