"""``SendMessage.params`` is bounded (``bounds.Params``): how many, how long a name, how
long a value. A 500 KB push parameter was delivered; now such a record is refused when
it is built or encoded, and decoding it is a ``DecodeError`` (a dead letter)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from services.contracts.bounds import MAX_PARAM_NAME, MAX_PARAMS, MAX_TEXT
from services.contracts.codec import DecodeError, SingleObjectCodec
from services.contracts.examples import all_records
from services.contracts.models import SendMessage
from services.contracts.schemas import SCHEMA_DIR

SINGLE = SingleObjectCodec()
TOPIC = "unit.message-params"


def _message() -> SendMessage:
    message = next(r for r in all_records() if isinstance(r, SendMessage))
    return message


TOO_BIG = [
    pytest.param({"push": "x" * 500_000}, "at most 1000", id="500-kb-value"),
    pytest.param({"title": "x" * (MAX_TEXT + 1)}, "at most 1000", id="value"),
    pytest.param({"k" * (MAX_PARAM_NAME + 1): "v"}, "at most 64", id="name"),
    pytest.param({"k" * 500_000: "v"}, "at most 64", id="500-kb-name"),
    pytest.param({f"p{i}": "v" for i in range(MAX_PARAMS + 1)}, "at most 32", id="count"),
    pytest.param({"title": "a\x00b"}, "x00", id="nul"),
]


@pytest.mark.parametrize(("params", "reason"), TOO_BIG)
def test_params_out_of_bounds_are_refused_everywhere(params: dict[str, str], reason: str) -> None:
    message = _message()
    value: dict[str, Any] = {**message.to_avro(), "params": params}
    with pytest.raises(ValidationError, match=reason):
        SendMessage.model_validate(value)
    with pytest.raises(ValueError, match=reason):
        SINGLE.encode_plain("SendMessage", value)
    forged = SINGLE.encode(message.model_copy(update={"params": params}))  # no check on this path
    for decode in (SINGLE.decode, lambda data: SINGLE.decode_plain(data, TOPIC)):
        with pytest.raises(DecodeError, match=reason) as caught:
            decode(forged)
        assert len(caught.value.reason) < 300, "a reason does not carry the oversized value"


def test_params_at_the_bounds_are_taken() -> None:
    message = _message()
    params = {f"{i:0{MAX_PARAM_NAME}d}": "x" * MAX_TEXT for i in range(MAX_PARAMS)}
    value = {**message.to_avro(), "params": params}
    data = SINGLE.encode_plain("SendMessage", value)
    assert SINGLE.decode(data) == SendMessage.model_validate(value)
    assert SINGLE.decode_plain(data, TOPIC)[1]["params"] == params


def test_the_schema_states_the_bounds_other_teams_read() -> None:
    schema = json.loads((SCHEMA_DIR / "social_loyalty.commands.SendMessage.avsc").read_text())
    doc = next(f["doc"] for f in schema["fields"] if f["name"] == "params")
    assert f"at most {MAX_PARAMS}" in doc, doc
    assert f"at most {MAX_PARAM_NAME} characters" in doc, doc
    assert f"at most {MAX_TEXT}" in doc, doc
