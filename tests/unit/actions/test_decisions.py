"""The actions decisions without a database: every branch the integration tests drive
through PostgreSQL, decided here from the rows alone.

Each unit test and the integration test it mirrors:

* ``test_credits_and_deductions_become_outcomes_with_the_balance_after``
  ~ test_ledger.py::test_duplicates_credit_once_and_the_api_shows_the_balance
* ``test_a_repeated_command_id_makes_no_entry_and_no_outcome``
  ~ the same
  ~ and test_actions_chaos.py (each effect once)
* ``test_clamp_and_allow_negative_outcomes``
  ~ test_ledger.py::test_clamp_records_the_shortfall_and_allow_negative_goes_below_zero
* ``test_a_budget_credits_what_fits_skips_the_rest_and_a_reversal_refunds``
  ~ test_budget.py::test_a_budget_credits_what_fits_skips_the_rest_and_a_reversal_gives_it_back
* ``test_undoing_a_credit_the_budget_refused_takes_nothing``
  ~ test_budget.py::test_undo_takes_back_only_what_the_budget_let_the_credit_give
* ``test_the_offers_to_lock_and_the_budget_kept``
  ~ test_budget.py (the rows locked and the budget stored)
* ``test_service_messages_go_to_opted_out_members_marketing_does_not``
  ~ test_notify.py::test_opted_out_member_gets_no_marketing_but_service_messages_and_duplicates_once
* ``test_marketing_in_quiet_hours_is_scheduled_for_their_end``
  ~ test_notify.py::test_quiet_hours_delay_marketing_until_the_window_ends
* ``test_a_held_message_is_checked_again_but_never_held_twice``
  ~ test_review_fixes.py::test_a_member_who_opts_out_during_quiet_hours_gets_no_delayed_marketing
  ~ test_delayed_messages_go_out_under_steady_traffic
* ``test_a_template_that_does_not_render_fails_the_message``
  ~ test_review_fixes.py::test_a_delayed_message_whose_template_vanished_fails_cleanly
* ``test_the_last_mailing_command_of_a_batch_is_the_subscription``
  ~ test_review_fixes.py::test_a_replayed_mailing_set_changes_no_subscription (the live part)
* ``test_counters_add_from_the_stored_value_within_a_batch``
  ~ test_notify.py::test_counters_add_once_per_command

Which ids are new (``entries``, ``applied_commands``, ``deliveries``) and the replayed
``MailingSet`` skip are the database's answers; the flaky provider, dead letters and
offsets are the runtime's: those stay integration tests.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from services.actions.decisions import (
    MessagePolicy,
    budgeted_offers,
    decide_counters,
    decide_mailing,
    decide_message,
    latest_budgets,
    ledger_outcomes,
    reversal_credits,
)
from services.actions.ledger import Budgets, apply_batch
from services.actions.settings import DeductPolicy
from services.actions.templates import Rendered
from services.contracts.models import (
    BonusAccrue,
    BonusDeduct,
    Channel,
    CounterIncrement,
    MailingSet,
    PointsCredited,
    PointsDeducted,
    SendMessage,
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MSK = ZoneInfo("Europe/Moscow")
BASE = {"member_id": "m1", "offer_id": "o", "source_event_id": "e", "issued_at": NOW}


def accrue(cid: str, points: int, member: str = "m1", budget: int | None = None) -> BonusAccrue:
    return BonusAccrue(
        **{**BASE, "member_id": member}, command_id=cid, points=points, reason="r", budget=budget
    )


def deduct(cid: str, points: int, reverses: str | None = None) -> BonusDeduct:
    return BonusDeduct(**BASE, command_id=cid, points=points, reason="undo", reverses=reverses)


def test_credits_and_deductions_become_outcomes_with_the_balance_after() -> None:
    entries, balances = apply_batch(
        {"m1": 10}, [accrue("a", 50), deduct("d", 20)], DeductPolicy.CLAMP
    )
    assert balances == {"m1": 40}
    assert ledger_outcomes(entries, NOW) == [
        PointsCredited(command_id="a", member_id="m1", occurred_at=NOW, points=50, balance=60),
        PointsDeducted(command_id="d", member_id="m1", occurred_at=NOW, points=20, balance=40),
    ]


def test_a_repeated_command_id_makes_no_entry_and_no_outcome() -> None:
    entries, balances = apply_batch({}, [accrue("a", 5), accrue("a", 5)], DeductPolicy.CLAMP, {"b"})
    assert [o.command_id for o in ledger_outcomes(entries, NOW)] == ["a"]
    assert balances == {"m1": 5}
    entries, balances = apply_batch({}, [accrue("b", 5)], DeductPolicy.CLAMP, {"b"})
    assert ledger_outcomes(entries, NOW) == [] and balances == {}


def test_clamp_and_allow_negative_outcomes() -> None:
    clamp, _ = apply_batch({"m1": 30}, [deduct("d", 50)], DeductPolicy.CLAMP)
    (out,) = ledger_outcomes(clamp, NOW)
    assert (out.points, out.balance, clamp[0].shortfall) == (30, 0, 20)
    negative, _ = apply_batch({"m1": 30}, [deduct("d", 50)], DeductPolicy.ALLOW_NEGATIVE)
    (out,) = ledger_outcomes(negative, NOW)
    assert (out.points, out.balance, negative[0].shortfall) == (50, -20, 0)


def test_a_budget_credits_what_fits_skips_the_rest_and_a_reversal_refunds() -> None:
    budgets = Budgets(spent={"o": 80})
    commands = [accrue("a", 30, budget=100), accrue("b", 10, "m2", budget=100)]
    entries, _ = apply_batch({}, commands, DeductPolicy.CLAMP, set(), budgets)
    assert [(o.command_id, o.points) for o in ledger_outcomes(entries, NOW)] == [("a", 20)]
    assert [c.command_id for c in budgets.skipped] == ["b"]  # no entry, no outcome
    undo = [deduct("u", 30, reverses="a")]
    credits = reversal_credits(undo, {"a": ("o", 20)}, refused=set())
    budgets = Budgets(spent={"o": 100}, credits=credits)
    entries, _ = apply_batch({"m1": 20}, undo, DeductPolicy.CLAMP, set(), budgets)
    assert [(o.points, o.balance) for o in ledger_outcomes(entries, NOW)] == [(20, 0)]
    assert budgets.spent == {"o": 80}


def test_undoing_a_credit_the_budget_refused_takes_nothing() -> None:
    undo = [deduct("u", 10, reverses="b")]
    credits = reversal_credits(undo, {}, refused={"b"})
    assert credits == {"b": ("o", 0)}
    budgets = Budgets(spent={"o": 100}, credits=credits)
    entries, balances = apply_batch({"m1": 40}, undo, DeductPolicy.CLAMP, set(), budgets)
    assert entries == [] and balances == {}


def test_the_offers_to_lock_and_the_budget_kept() -> None:
    commands = [accrue("a", 1, budget=50), accrue("b", 1), accrue("c", 1, budget=70)]
    assert budgeted_offers(commands, {"x": ("other", 5)}) == ["o", "other"]
    assert budgeted_offers([accrue("b", 1)], {}) == []
    assert latest_budgets(commands) == {"o": 70}


POLICY = MessagePolicy(
    mailing_default_enabled=False, quiet_start=time(22), quiet_end=time(9), zone=MSK
)
RENDERED = Rendered("Hi", "Thank you")


def message(marketing: bool, cid: str = "s1") -> SendMessage:
    return SendMessage(
        **BASE, command_id=cid, channel=Channel.PUSH, template_id="t", marketing=marketing
    )


def test_service_messages_go_to_opted_out_members_marketing_does_not() -> None:
    off = {("m1", "push"): False}
    service = decide_message(message(False), RENDERED, off, POLICY, NOW)
    assert service.status == "sending" and service.outgoing is not None
    assert service.outgoing.rendered == RENDERED
    marketing = decide_message(message(True), RENDERED, off, POLICY, NOW)
    assert (marketing.status, marketing.reason) == (
        "suppressed",
        "mailing disabled for this channel",
    )
    unknown = decide_message(message(True), RENDERED, {}, POLICY, NOW)
    assert unknown.status == "suppressed"  # mailing_default_enabled=False
    on = decide_message(message(True), RENDERED, {("m1", "push"): True}, POLICY, NOW)
    assert on.status == "sending"  # 15:00 in Moscow: outside quiet hours


def test_marketing_in_quiet_hours_is_scheduled_for_their_end() -> None:
    night = datetime(2026, 3, 2, 20, 30, tzinfo=UTC)  # 23:30 in Moscow
    on = {("m1", "push"): True}
    held = decide_message(message(True), RENDERED, on, POLICY, night)
    assert (held.status, held.reason) == ("scheduled", "quiet hours")
    assert held.send_after == datetime(2026, 3, 3, 9, 0, tzinfo=MSK)
    assert decide_message(message(False), RENDERED, on, POLICY, night).status == "sending"


def test_a_held_message_is_checked_again_but_never_held_twice() -> None:
    night = datetime(2026, 3, 2, 20, 30, tzinfo=UTC)
    opted_out = decide_message(message(True), RENDERED, {}, POLICY, night, due=True)
    assert opted_out.reason == "mailing disabled for this channel while held"
    still_night = decide_message(
        message(True), RENDERED, {("m1", "push"): True}, POLICY, night, due=True
    )
    assert still_night.status == "sending"


def test_a_template_that_does_not_render_fails_the_message() -> None:
    failed = decide_message(message(False), "template 't' is gone", {}, POLICY, NOW)
    assert (failed.status, failed.reason, failed.outgoing) == (
        "failed",
        "template 't' is gone",
        None,
    )


def mailing(cid: str, enabled: bool, member: str = "m1") -> MailingSet:
    return MailingSet(
        **{**BASE, "member_id": member}, command_id=cid, channel=Channel.SMS, enabled=enabled
    )


def test_the_last_mailing_command_of_a_batch_is_the_subscription() -> None:
    decision = decide_mailing(
        [mailing("1", False), mailing("2", True), mailing("3", False, "m2")], NOW
    )
    assert {k: c.command_id for k, c in decision.subscriptions.items()} == {
        ("m1", "sms"): "2",
        ("m2", "sms"): "3",
    }
    assert [(o.command_id, o.enabled) for o in decision.outcomes] == [
        ("1", False),
        ("2", True),
        ("3", False),
    ]
    assert decide_mailing([], NOW).subscriptions == {}


def counter(cid: str, by: int, name: str = "likes") -> CounterIncrement:
    return CounterIncrement(**BASE, command_id=cid, name=name, by=by)


def test_counters_add_from_the_stored_value_within_a_batch() -> None:
    decision = decide_counters(
        [counter("1", 1), counter("2", 2), counter("3", 5, "posts")], {("m1", "likes"): 10}, NOW
    )
    assert decision.values == {("m1", "likes"): 13, ("m1", "posts"): 5}
    assert [(o.command_id, o.by, o.value) for o in decision.outcomes] == [
        ("1", 1, 11),
        ("2", 2, 13),
        ("3", 5, 5),
    ]
