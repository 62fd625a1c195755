"""The PostgreSQL-sink runtime's bad-record policy, through the actions service.

A record whose apply raises (PostgreSQL refuses the value) is dead-lettered with its
source and the error, alone, and the next record of the same partition (another
member's) is applied; the service stays up and ready. A transient failure (a lock
PostgreSQL would not grant in time) dead-letters nothing: the service says it is
failing on ``/readyz`` and applies the batch once the database lets it.
"""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from pydantic import SecretStr

from services.actions.settings import ActionsSettings
from services.contracts.bounds import MAX_POINTS
from services.contracts.codec import DecodeError
from services.contracts.models import BonusAccrue, Channel, Command, DeadLetter
from services.contracts.topics import COMMANDS_BONUS, COMMANDS_COUNTER
from services.runtime.settings import DatabaseSettings
from tests.integration.actions.conftest import (
    TOPIC_OF,
    ActionsEnv,
    accrue,
    count,
    mailing,
    message,
    wait_for,
)

INT8_MAX = 2**63 - 1


def _send_to_partition_zero(env: ActionsEnv, *commands: Command) -> None:
    """Every command on partition 0, whatever its member: "the next record on the same
    partition" is then another member's."""
    for command in commands:
        topic = env.topic(TOPIC_OF[type(command)])
        value = env.codec.encode(command, topic)
        env.producer.produce(topic, value, command.member_id.encode(), partition=0)
    assert env.producer.flush(30) == 0


def _readyz(settings: ActionsSettings) -> tuple[int, dict[str, Any]]:
    try:
        response = httpx.get(f"http://127.0.0.1:{settings.port}/readyz", timeout=5)
    except httpx.HTTPError as exc:
        return 0, {"error": str(exc)}
    return response.status_code, response.json()


def _ready(settings: ActionsSettings) -> bool:
    return _readyz(settings)[0] == 200


def _offset(env: ActionsEnv, base: str, partition: int = 0) -> int:
    return int(
        env.scalar(
            "SELECT coalesce(max(next_offset), 0) FROM consumer_offsets "
            "WHERE topic = %s AND partition = %s",
            env.topic(base),
            partition,
        )
        or 0
    )


def _one_dead_letter(env: ActionsEnv) -> DeadLetter:
    letters = wait_for(env.dead_letters, "a dead letter", 30)
    assert len(letters) == 1, letters
    letter: DeadLetter = letters[0]
    return letter


def test_a_credit_that_overflows_the_balance_is_dead_lettered_and_the_next_member_credited(
    env: ActionsEnv,
) -> None:
    """Two credits of 2^63-1 overflowed ``bigint`` and looped. The contract now caps a
    command at ``MAX_POINTS`` (a forged bigger one is refused when decoded), and a
    balance that would still overflow (seeded here, as years of credits would make it)
    is refused by PostgreSQL: both are dead letters and the next member is credited."""
    settings = env.settings()
    env.start(settings, ("bonus",))
    wait_for(lambda: _ready(settings), "the service ready")
    env.query("INSERT INTO accounts (member_id, balance) VALUES ('olga', %s) RETURNING 1",
              INT8_MAX - 5)  # fmt: skip
    topic = env.topic(COMMANDS_BONUS)
    huge = BonusAccrue.model_construct(
        **{**accrue("olga", 5, cid="huge").model_dump(), "points": MAX_POINTS + 1}
    )
    overflow = accrue("olga", 10, cid="overflow")
    _send_to_partition_zero(env, huge, overflow, accrue("pavel", 7))
    wait_for(lambda: _offset(env, COMMANDS_BONUS) == 3, "all three records consumed")

    letters = wait_for(lambda: len(found := env.dead_letters()) == 2 and found, "2 letters", 30)
    refused, overflowed = sorted(letters, key=lambda d: d.original_offset)
    assert (refused.original_topic, refused.original_offset) == (topic, 0)
    assert refused.error_class == "services.contracts.codec.DecodeError"
    assert "points" in refused.reason, refused.reason
    assert (overflowed.original_partition, overflowed.original_offset) == (0, 1)
    assert overflowed.key == b"olga"
    assert overflowed.value == env.codec.encode(overflow, topic)
    assert overflowed.error_class == "psycopg.errors.NumericValueOutOfRange"
    assert "bigint out of range" in overflowed.reason
    assert overflowed.consumer_group == settings.group("bonus")
    balances = dict(env.query("SELECT member_id, balance FROM accounts"))
    assert balances == {"olga": INT8_MAX - 5, "pavel": 7}
    assert env.scalar("SELECT count(*) FROM entries WHERE member_id = 'olga'") == 0
    assert _ready(settings), _readyz(settings)


def test_a_member_id_with_a_nul_byte_is_dead_lettered_and_the_next_member_credited(
    env: ActionsEnv,
) -> None:
    settings = env.settings()
    env.start(settings, ("bonus",))
    wait_for(lambda: _ready(settings), "the service ready")
    topic = env.topic(COMMANDS_BONUS)
    # Built without validation: the contract's bounds refuse a NUL in a member id.
    nul = BonusAccrue.model_construct(**{**accrue("x", 5).model_dump(), "member_id": "ni\x00na"})
    raw = env.codec.encode(nul, topic)
    with pytest.raises(DecodeError, match="member_id"):
        env.codec.decode(raw, topic, (BonusAccrue,))
    _send_to_partition_zero(env, nul, accrue("oleg", 3))
    wait_for(lambda: _offset(env, COMMANDS_BONUS) == 2, "both records consumed")

    letter = _one_dead_letter(env)
    assert (letter.original_partition, letter.original_offset) == (0, 0)
    assert letter.key == b"ni\x00na"
    assert letter.value == raw
    assert letter.error_class == "services.contracts.codec.DecodeError"
    assert "member_id" in letter.reason
    assert dict(env.query("SELECT member_id, balance FROM accounts")) == {"oleg": 3}
    assert _ready(settings), _readyz(settings)


def test_a_counter_that_overflows_is_dead_lettered_and_the_next_member_counted(
    env: ActionsEnv,
) -> None:
    settings = env.settings()
    env.start(settings, ("counter",))
    wait_for(lambda: _ready(settings), "the service ready")
    # One step is at most MAX_COUNTER_STEP; a counter at the top is what years make.
    env.query("INSERT INTO counters (member_id, name, value) VALUES ('rita', 'likes', %s) "
              "RETURNING 1", INT8_MAX)  # fmt: skip
    _send_to_partition_zero(
        env,
        count("rita", "likes", 1, cid="one-too-many"),
        count("sava", "likes", 2, cid="next"),
    )
    wait_for(lambda: _offset(env, COMMANDS_COUNTER) == 2, "both records consumed")

    letter = _one_dead_letter(env)
    assert letter.original_topic == env.topic(COMMANDS_COUNTER)
    assert (letter.original_partition, letter.original_offset) == (0, 0)
    assert letter.key == b"rita"
    assert letter.error_class == "psycopg.errors.NumericValueOutOfRange"
    counters = {m: v for m, _, v in env.query("SELECT member_id, name, value FROM counters")}
    assert counters == {"rita": INT8_MAX, "sava": 2}
    applied = {r[0] for r in env.query("SELECT command_id FROM applied_commands")}
    assert applied == {"next"}  # the refused one can still apply if redriven
    assert _ready(settings), _readyz(settings)


def test_a_transient_failure_retries_dead_letters_nothing_and_readiness_says_so(
    env: ActionsEnv,
) -> None:
    url = env.database.database_url.get_secret_value()
    # The service waits at most 300 ms for a lock, so a held lock is a quick
    # LockNotAvailable (an OperationalError) rather than a hang.
    impatient = url + ("&" if "?" in url else "?") + "options=-c%20lock_timeout%3D300"
    settings = env.settings(database=DatabaseSettings(database_url=SecretStr(impatient)))
    env.start(settings, ("bonus",))
    wait_for(lambda: _ready(settings), "the service ready")
    with psycopg.connect(url) as locker:
        locker.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(env.schema)))
        locker.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        _send_to_partition_zero(env, accrue("tanya", 4), accrue("uliana", 6))
        _, body = wait_for(
            lambda: (r := _readyz(settings))[0] == 503 and "failing" in r[1]["reason"] and r,
            "readiness to say the consumer is failing",
            30,
        )
        assert "LockNotAvailable" in body["reason"], body
        assert _offset(env, COMMANDS_BONUS) == 0
        locker.rollback()
    wait_for(lambda: _offset(env, COMMANDS_BONUS) == 2, "the batch applied once the lock is gone")
    balances = dict(env.query("SELECT member_id, balance FROM accounts"))
    assert balances == {"tanya": 4, "uliana": 6}
    wait_for(lambda: _ready(settings), "ready again", 30)
    assert env.dead_letters() == []


def _applied(env: ActionsEnv, kind: str, command_id: str) -> bool:
    tables = {
        "bonus": "SELECT count(*) FROM entries WHERE command_id = %s",
        "notify": "SELECT count(*) FROM deliveries WHERE command_id = %s",
        "mailing": "SELECT count(*) FROM applied_commands WHERE command_id = %s",
        "counter": "SELECT count(*) FROM applied_commands WHERE command_id = %s",
    }
    return bool(env.scalar(tables[kind], command_id))


@pytest.mark.parametrize("kind", ["bonus", "notify", "mailing", "counter"])
def test_garbage_and_a_wrong_record_type_on_each_command_topic_are_dead_letters(
    env: ActionsEnv, kind: str
) -> None:
    """Per topic the actions service reads: bytes that are not a record, and a record
    of another topic's type, are dead letters with their reason; the next command on
    the partition is applied and the service stays ready."""
    choices: dict[str, Command] = {
        "bonus": accrue("vera", 3, cid="good"),
        "notify": message("vera", cid="good"),
        "mailing": mailing("vera", Channel.EMAIL, False, cid="good"),
        "counter": count("vera", "likes", 1, cid="good"),
    }
    good = choices[kind]
    wrong: Command = count("wanda", "likes") if kind != "counter" else accrue("wanda", 1)
    base = TOPIC_OF[type(good)]
    topic = env.topic(base)
    settings = env.settings()
    env.start(settings, (kind,))
    wait_for(lambda: _ready(settings), "the service ready")
    env.producer.produce(topic, b"not a record", b"wanda", partition=0)
    env.producer.produce(topic, env.codec.encode(wrong, topic), b"wanda", partition=0)
    env.producer.produce(topic, env.codec.encode(good, topic), b"vera", partition=0)
    assert env.producer.flush(30) == 0
    wait_for(lambda: _offset(env, base) == 3, "all three records consumed")

    letters = wait_for(lambda: len(found := env.dead_letters()) == 2 and found, "2 letters", 30)
    garbage, misplaced = sorted(letters, key=lambda d: d.original_offset)
    assert (garbage.original_topic, garbage.original_offset) == (topic, 0)
    assert garbage.value == b"not a record"
    assert garbage.error_class == "services.contracts.codec.DecodeError"
    assert misplaced.original_offset == 1
    assert "where" in misplaced.reason, misplaced.reason  # "got a X record where Y ..."
    assert _applied(env, kind, "good")
    assert _ready(settings), _readyz(settings)
