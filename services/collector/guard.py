"""The last check before a run is published: did the group lose too many members?

The clients already refuse a member list that disagrees with the API's own count.
This guard does not trust the API alone: a list that is short *and* agrees with a
wrong count (an API that truncates both), or a count check turned off, would still
look to the detector like a mass leave and cost members their points. So a run
whose member count fell by more than a set fraction since the last succeeded run
publishes nothing, unless the group says such drops are real (``allow_mass_leave``).
"""

from __future__ import annotations

from services.collector.chunks import RunBuildError


class MemberDropError(RunBuildError):
    """The member count fell further than allowed since the last succeeded run."""


def check_member_drop(
    group: str,
    previous: int | None,
    current: int | None,
    *,
    max_drop: float,
    allow_mass_leave: bool,
) -> None:
    """Raise ``MemberDropError`` if ``current`` is more than ``max_drop`` below ``previous``.

    Nothing to compare (a first run, members not read, an empty group before) and
    groups that allow mass leaves pass.
    """
    if allow_mass_leave or previous is None or current is None or previous <= 0:
        return
    drop = (previous - current) / previous
    if drop <= max_drop:
        return
    raise MemberDropError(
        f"{group}: the member count fell from {previous} to {current} (-{drop:.0%}) since the "
        f"last succeeded run, more than the {max_drop:.0%} allowed (COLLECTOR_MAX_MEMBER_DROP); "
        "nothing is published, so a short read cannot look like members leaving. If they "
        "really left, set allow_mass_leave: true for the group (or run `collect "
        "--allow-mass-leave`) and collect again."
    )
