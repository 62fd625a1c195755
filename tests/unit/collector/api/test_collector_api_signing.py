"""OK request signing, pinned to the worked example OK's client libraries document."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from services.collector.api.ok import session_secret, signature, signed_form
from services.simulator.ok_api import expected_signature

# The server-server example published with aiookru (MIT), computed as apiok.ru describes.
APP_KEY = "ABCDEFGHIGKLMNOPK"
APP_SECRET = "ABC123DEF456GHI789JKL123"
TOKEN = "-s-84W-s3egarWUsbkq-IWTucuedzTKT8VUXIA.s4Xx8IW7"


def test_the_documented_example_signs_to_the_documented_sig() -> None:
    secret = session_secret(TOKEN, APP_SECRET)
    assert secret == "b1a2b89707a94624c43afae67d59274c"
    params = {"application_key": APP_KEY, "format": "json", "method": "events.get"}
    assert signature(params, secret) == "232c8eb921951c4dba9b72606f9ddb4c"


def test_the_signed_form_carries_the_token_but_does_not_sign_it() -> None:
    form = signed_form(
        "events.get",
        {},
        application_key=APP_KEY,
        access_token=TOKEN,
        application_secret_key=APP_SECRET,
    )
    assert form == {
        "application_key": APP_KEY,
        "format": "json",
        "method": "events.get",
        "sig": "232c8eb921951c4dba9b72606f9ddb4c",
        "access_token": TOKEN,
    }


def test_session_key_and_sig_are_left_out_of_the_signature() -> None:
    secret = session_secret(TOKEN, APP_SECRET)
    base = {"method": "group.getMembers", "uid": "1"}
    assert signature({**base, "session_key": "x", "sig": "y", "access_token": "z"}, secret) == (
        signature(base, secret)
    )


keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
values = st.text(alphabet="0123456789ABCDEFabcdef,.:-", max_size=20)


@given(params=st.dictionaries(keys, values, max_size=8), token=values, secret=values)
def test_client_and_simulator_agree_on_every_signature(
    params: dict[str, str], token: str, secret: str
) -> None:
    """Two independent implementations of OK's rule, so a shared misreading would have to
    be made twice."""
    signed = signature(params, session_secret(token, secret))
    assert signed == expected_signature(params, token, secret)
    assert signed == signed.lower() and len(signed) == 32


@given(params=st.dictionaries(keys, values, min_size=1, max_size=8))
def test_the_order_parameters_arrive_in_does_not_change_the_signature(
    params: dict[str, str],
) -> None:
    secret = hashlib.md5(b"s").hexdigest()
    reversed_params = dict(reversed(list(params.items())))
    assert signature(params, secret) == signature(reversed_params, secret)
