from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from services.actions.ledger import Budgets, apply_batch, apply_one
from services.actions.settings import DeductPolicy
from services.contracts.models import BonusAccrue, BonusDeduct

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _cmd(kind: type, cid: str, points: int, member: str = "m") -> BonusAccrue | BonusDeduct:
    return kind(  # type: ignore[no-any-return]
        command_id=cid,
        member_id=member,
        offer_id="o",
        source_event_id="e",
        issued_at=NOW,
        points=points,
        reason="r",
    )


def test_clamp_deducts_what_there_is_and_records_the_rest() -> None:
    entry = apply_one(10, _cmd(BonusDeduct, "d", 25), DeductPolicy.CLAMP)
    assert entry is not None
    assert (entry.points, entry.shortfall, entry.balance) == (-10, 15, 0)


def test_clamp_leaves_an_already_negative_balance_alone() -> None:
    entry = apply_one(-5, _cmd(BonusDeduct, "d", 3), DeductPolicy.CLAMP)
    assert entry is not None
    assert (entry.points, entry.shortfall, entry.balance) == (0, 3, -5)


def test_allow_negative_goes_below_zero() -> None:
    entry = apply_one(10, _cmd(BonusDeduct, "d", 25), DeductPolicy.ALLOW_NEGATIVE)
    assert entry is not None
    assert (entry.points, entry.shortfall, entry.balance) == (-25, 0, -15)


def test_a_batch_skips_ids_applied_before_and_repeated_within() -> None:
    commands = [
        _cmd(BonusAccrue, "a", 5),
        _cmd(BonusAccrue, "a", 5),
        _cmd(BonusAccrue, "b", 7, "n"),
        _cmd(BonusAccrue, "old", 100),
    ]
    entries, balances = apply_batch({"m": 1}, commands, DeductPolicy.CLAMP, {"old"})
    assert [e.command.command_id for e in entries] == ["a", "b"]
    assert balances == {"m": 6, "n": 7}


ops = st.lists(
    st.tuples(st.booleans(), st.integers(1, 50), st.sampled_from("abcdefgh")), max_size=40
)


@given(ops)
def test_clamp_never_goes_negative_and_entries_add_up(raw: list[tuple[bool, int, str]]) -> None:
    commands = [_cmd(BonusAccrue if up else BonusDeduct, cid, points) for up, points, cid in raw]
    entries, balances = apply_batch({}, commands, DeductPolicy.CLAMP)
    assert balances.get("m", 0) >= 0
    assert sum(e.points for e in entries) == balances.get("m", 0)
    assert len({e.command.command_id for e in entries}) == len(entries)


@given(ops)
def test_applying_twice_changes_nothing(raw: list[tuple[bool, int, str]]) -> None:
    commands = [_cmd(BonusAccrue if up else BonusDeduct, cid, points) for up, points, cid in raw]
    entries, balances = apply_batch({}, commands, DeductPolicy.ALLOW_NEGATIVE)
    again, after = apply_batch(
        balances, commands, DeductPolicy.ALLOW_NEGATIVE, {e.command.command_id for e in entries}
    )
    assert again == [] and after == {}


def _budgeted(cid: str, points: int, budget: int, member: str = "m") -> BonusAccrue:
    return BonusAccrue(
        command_id=cid, member_id=member, offer_id="o", source_event_id="e",
        issued_at=NOW, points=points, reason="r", budget=budget,
    )  # fmt: skip


def test_a_budget_credits_what_fits_then_nothing() -> None:
    budgets = Budgets(spent={"o": 90})
    commands = [_budgeted("a", 7, 100), _budgeted("b", 7, 100, "n"), _budgeted("c", 7, 100)]
    entries, balances = apply_batch({}, commands, DeductPolicy.CLAMP, budgets=budgets)
    assert [(e.command.command_id, e.points, e.shortfall) for e in entries] == [
        ("a", 7, 0),
        ("b", 3, 4),  # the remainder, the rest recorded as the shortfall
    ]
    assert [c.command_id for c in budgets.skipped] == ["c"]  # exhausted: no entry
    assert budgets.spent == {"o": 100}
    assert balances == {"m": 7, "n": 3}


def test_a_deduction_reversing_a_budgeted_credit_gives_it_back() -> None:
    budgets = Budgets(spent={"o": 0})
    credit = _budgeted("a", 10, 10)
    undo = _cmd(BonusDeduct, "d", 10).model_copy(update={"reverses": "a"})
    entries, _ = apply_batch(
        {}, [credit, _budgeted("b", 5, 10, "n"), undo], DeductPolicy.CLAMP, budgets=budgets
    )
    assert [e.refund for e in entries] == [0, 10]  # "b" skipped: the budget was spent
    assert budgets.spent == {"o": 0}
    again, _ = apply_batch({}, [_budgeted("c", 5, 10, "n")], DeductPolicy.CLAMP, budgets=budgets)
    assert [e.points for e in again] == [5]


def test_without_a_budget_the_ledger_credits_everything() -> None:
    budgets = Budgets()
    entries, _ = apply_batch(
        {}, [_cmd(BonusAccrue, "a", 10**9)], DeductPolicy.CLAMP, budgets=budgets
    )
    assert [e.points for e in entries] == [10**9]
    assert budgets.spent == {} and budgets.skipped == []


@given(st.lists(st.tuples(st.integers(1, 50), st.booleans()), max_size=60), st.integers(1, 300))
def test_a_budget_is_never_exceeded(steps: list[tuple[int, bool]], budget: int) -> None:
    budgets = Budgets(spent={"o": 0})
    commands: list[BonusAccrue | BonusDeduct] = []
    for i, (points, undo) in enumerate(steps):
        if undo and i:
            commands.append(
                _cmd(BonusDeduct, f"d{i}", points).model_copy(update={"reverses": f"a{i - 1}"})
            )
        else:
            commands.append(_budgeted(f"a{i}", points, budget, member=f"m{i % 3}"))
    entries, _ = apply_batch({}, commands, DeductPolicy.ALLOW_NEGATIVE, budgets=budgets)
    net = sum(e.points for e in entries if e.budget is not None) - sum(e.refund for e in entries)
    assert 0 <= budgets.spent["o"] == net <= budget
