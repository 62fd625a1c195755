"""The engine's precomputed command ids are exactly the contract's ``command_id``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.contracts.ids import command_id
from services.rules.engine import _compiled
from tests.unit.rules.events import offer


@given(
    offer_id=st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True),
    event_id=st.text(max_size=40),
    index=st.integers(min_value=0, max_value=50),
)
def test_fast_command_id_matches_the_contract(offer_id: str, event_id: str, index: int) -> None:
    compiled = _compiled(offer(id=offer_id))
    assert compiled.command_id(event_id, index) == command_id(offer_id, event_id, index)
