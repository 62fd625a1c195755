from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from services.actions.ledger import apply_batch, apply_one
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
    assert (entry.points, entry.shortfall, entry.balance) == (-10, 15, 0)


def test_clamp_leaves_an_already_negative_balance_alone() -> None:
    entry = apply_one(-5, _cmd(BonusDeduct, "d", 3), DeductPolicy.CLAMP)
    assert (entry.points, entry.shortfall, entry.balance) == (0, 3, -5)


def test_allow_negative_goes_below_zero() -> None:
    entry = apply_one(10, _cmd(BonusDeduct, "d", 25), DeductPolicy.ALLOW_NEGATIVE)
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
