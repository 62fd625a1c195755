"""The member-drop guard: a run that lost too many members since the last good one
is not published, unless the group says such drops are real."""

from __future__ import annotations

import pytest

from services.collector.chunks import RunBuildError
from services.collector.groups import parse_groups
from services.collector.guard import MemberDropError, check_member_drop
from services.collector.settings import CollectorSettings


def test_a_drop_beyond_the_limit_is_refused_with_a_reason_an_operator_can_act_on() -> None:
    with pytest.raises(MemberDropError) as caught:
        check_member_drop("ok:5", 2500, 1000, max_drop=0.2, allow_mass_leave=False)
    message = str(caught.value)
    assert "ok:5" in message and "from 2500 to 1000 (-60%)" in message
    assert "allow_mass_leave" in message and "nothing is published" in message
    assert isinstance(caught.value, RunBuildError)  # the run ends aborted, like an API refusal


@pytest.mark.parametrize(
    ("previous", "current", "allowed"),
    [
        (2500, 2000, False),  # exactly 20%: allowed
        (2500, 3000, False),  # growth
        (None, 10, False),  # first run: nothing to compare
        (2500, None, False),  # members not read (the run is refused elsewhere)
        (0, 0, False),  # an empty group stays empty
        (2500, 0, True),  # the group opted out
    ],
)
def test_what_passes(previous: int | None, current: int | None, allowed: bool) -> None:
    check_member_drop("vk:1", previous, current, max_drop=0.2, allow_mass_leave=allowed)


def test_just_over_the_limit_is_refused() -> None:
    with pytest.raises(MemberDropError):
        check_member_drop("vk:1", 2500, 1999, max_drop=0.2, allow_mass_leave=False)


def test_the_limit_and_the_opt_out_are_configured() -> None:
    assert CollectorSettings.model_fields["max_member_drop"].default == 0.2
    text = """
groups:
  - network: ok
    group_id: 5
    allow_mass_leave: true
    credentials: {application_key: K, application_secret_key_env: S, access_token_env: T}
  - network: vk
    group_id: 6
    credentials: {access_token_env: T}
"""
    first, second = parse_groups(text).groups
    assert first.allow_mass_leave and not second.allow_mass_leave
