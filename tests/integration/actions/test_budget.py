"""Offer budgets enforced by the ledger, against a real broker and PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

from services.actions.bonus import BonusHandler
from services.actions.consumers import CommandItem
from services.actions.schema import migrate, use_schema
from services.actions.settings import DeductPolicy
from services.contracts.models import PointsCredited, PointsDeducted
from services.runtime.db import connect
from services.runtime.pgsink import Item
from tests.integration.actions.conftest import ActionsEnv, accrue, deduct, wait_for


def _offsets(env: ActionsEnv) -> int:
    return int(env.scalar("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets") or 0)


def test_a_budget_credits_what_fits_skips_the_rest_and_a_reversal_gives_it_back(
    env: ActionsEnv,
) -> None:
    first = accrue("alice", 60, cid="b-1", budget=100)
    env.send(first, first, accrue("bob", 60, cid="b-2", budget=100), first)
    env.send(accrue("carol", 10, cid="b-3", budget=100))  # exhausted: nothing
    env.start(env.settings(), ("bonus",))
    wait_for(lambda: _offsets(env) == 5, "five commands consumed")

    rows = env.query("SELECT command_id, points, requested, shortfall FROM entries ORDER BY 1")
    assert rows == [("b-1", 60, 60, 0), ("b-2", 40, 60, 20)]  # duplicates credited once
    assert env.query("SELECT spent, budget FROM offer_budgets") == [(100, 100)]
    assert env.query("SELECT command_id, kind, reason FROM skipped_commands") == [
        ("b-3", "bonus", "budget")
    ]
    assert env.scalar("SELECT count(*) FROM accounts WHERE member_id = 'carol'") == 0

    env.send(deduct("alice", 60, cid="u-1", reverses="b-1"))  # an unlike: 60 back
    env.send(accrue("dave", 50, cid="b-4", budget=100), accrue("carol", 10, cid="b-3", budget=100))
    wait_for(lambda: _offsets(env) == 8, "eight commands consumed")
    assert env.scalar("SELECT points FROM entries WHERE command_id = 'b-4'") == 50
    assert env.scalar("SELECT budget_refund FROM entries WHERE command_id = 'u-1'") == 60
    assert env.scalar("SELECT spent FROM offer_budgets") == 90
    # b-3 was skipped once; its redelivery stays skipped though there is room now
    assert env.scalar("SELECT count(*) FROM entries WHERE command_id = 'b-3'") == 0

    outcomes = wait_for(lambda: _at_least(env.outcomes(), 4), "four outcomes")
    credited = {o.command_id: o.points for o in outcomes if isinstance(o, PointsCredited)}
    assert credited == {"b-1": 60, "b-2": 40, "b-4": 50}  # no PointsCredited for b-3
    assert [o.command_id for o in outcomes if isinstance(o, PointsDeducted)] == ["u-1"]


def test_undo_takes_back_only_what_the_budget_let_the_credit_give(env: ActionsEnv) -> None:
    env.send(accrue("bob", 50, cid="c-0"))  # points from an offer without a budget
    env.send(accrue("alice", 60, cid="c-1", budget=100), accrue("bob", 60, cid="c-2", budget=100))
    env.send(accrue("carol", 10, cid="c-3", budget=100))  # refused: the budget is spent
    env.start(env.settings(), ("bonus",))
    wait_for(lambda: _offsets(env) == 4, "four commands consumed")
    # The rules asked for 60 and 10 back (their member state records the full reward).
    env.send(
        deduct("bob", 60, cid="v-2", reverses="c-2"), deduct("carol", 10, cid="v-3", reverses="c-3")
    )
    wait_for(lambda: _offsets(env) == 6, "six commands consumed")
    assert env.scalar("SELECT points FROM entries WHERE command_id = 'c-2'") == 40
    assert env.scalar("SELECT points FROM entries WHERE command_id = 'v-2'") == -40
    assert env.scalar("SELECT balance FROM accounts WHERE member_id = 'bob'") == 50
    assert env.scalar("SELECT count(*) FROM entries WHERE command_id = 'v-3'") == 0
    assert env.scalar("SELECT count(*) FROM accounts WHERE member_id = 'carol'") == 0


def test_a_budget_is_never_exceeded_by_concurrent_consumers(env: ActionsEnv) -> None:
    budget, members, each = 1_000, 120, 13  # asks 1,560 in all
    commands = [accrue(f"m{i:03d}", each, cid=f"c-{i}", budget=budget) for i in range(members)]
    env.send(*commands)
    env.send(*commands[:40])  # redelivered duplicates
    env.start(env.settings(), ("bonus",))  # two consumers of one group share the partitions
    env.start(env.settings(), ("bonus",))
    wait_for(lambda: _offsets(env) == members + 40, "every command consumed", timeout=90)

    credited = env.scalar("SELECT coalesce(sum(points), 0) FROM entries")
    assert credited == budget == env.scalar("SELECT spent FROM offer_budgets")
    entries = env.scalar("SELECT count(*) FROM entries")
    skipped = env.scalar("SELECT count(*) FROM skipped_commands")
    assert entries + skipped == members  # each command id answered once: credited or skipped
    assert env.scalar("SELECT count(*) FROM entries WHERE shortfall > 0") <= 1
    assert env.scalar("SELECT sum(balance) FROM accounts") == budget


def test_concurrent_ledger_transactions_never_overspend_a_budget(env: ActionsEnv) -> None:
    """Eight transactions at once, each crediting its own members against one budget:
    the offer_budgets row lock is all that keeps them from overspending."""
    with connect(env.database) as conn:
        migrate(conn, env.schema)
    budget, workers, per_worker, each = 500, 8, 10, 9  # asks 720
    start = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work(w: int) -> None:
        try:
            with connect(env.database) as conn:
                use_schema(conn, env.schema)
                items: list[CommandItem] = [
                    Item(
                        "t", w, n, None, None, accrue(f"w{w}m{n}", each, f"w{w}c{n}", budget=budget)
                    )
                    for n in range(per_worker)
                ]
                start.wait(30)
                with conn.transaction():
                    BonusHandler(DeductPolicy.CLAMP).apply(conn, items, None)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert env.scalar("SELECT sum(points) FROM entries") == budget
    assert env.scalar("SELECT spent FROM offer_budgets") == budget
    skipped = env.scalar("SELECT count(*) FROM skipped_commands")
    assert env.scalar("SELECT count(*) FROM entries") + skipped == workers * per_worker


def _at_least(found: list[Any], n: int) -> list[Any] | None:
    return found if len(found) >= n else None
