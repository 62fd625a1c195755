"""Bad input at the offers API (real PostgreSQL, the served app): a clear 422, never
a 500, and nothing stored."""

from __future__ import annotations

import json

import httpx
import pytest

from services.contracts.bounds import MAX_NAME, MAX_PARAM_NAME, MAX_PARAMS, MAX_TEXT
from services.runtime.access import SignedAuth

HUGE = "1" * 5000


def _refused(base: str, auth: SignedAuth, body: bytes, content_type: str) -> dict[str, object]:
    response = httpx.post(
        f"{base}/offers",
        content=body,
        headers={"Content-Type": content_type},
        auth=auth,
        timeout=30,
    )
    assert response.status_code == 422, response.text
    answer: dict[str, object] = response.json()
    listed = httpx.get(f"{base}/offers", auth=auth, timeout=30)
    assert listed.status_code == 200 and listed.json() == [], listed.text
    return answer


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (f'{{"id": "big", "version": 1, "name": "n", "budget": {HUGE}}}', "application/json"),
        (f"id: big\nversion: 1\nname: n\nbudget: {HUGE}\n", "application/yaml"),
        (f"id: big\nversion: 1\nname: n\nbudget: 0x{'f' * 5000}\n", "application/yaml"),
    ],
    ids=["json", "yaml", "yaml-hex"],
)
def test_an_integer_of_thousands_of_digits_is_a_422_not_a_500(
    base: str, body: str, content_type: str, *, api_auth: SignedAuth
) -> None:
    answer = _refused(base, api_auth, body.encode(), content_type)
    assert "an integer of 5000 characters" in str(answer["error"]) or "5002" in str(
        answer["error"]
    ), answer
    assert answer["detail"] == [{"field": "(offer)", "message": answer["error"]}]


def _offer(**change: object) -> dict[str, object]:
    return {
        "id": "pushy",
        "version": 1,
        "name": "Pushy",
        "trigger": "POST_LIKED",
        "reward": {"points": 5},
        "actions": [
            {"type": "accrue"},
            {"type": "message", "channel": "push", "template": "t", "params": {"title": "hi"}},
        ],
        **change,
    }


def _with_params(params: dict[str, str]) -> dict[str, object]:
    message = {"type": "message", "channel": "push", "template": "t", "params": params}
    return _offer(actions=[{"type": "accrue"}, message])


@pytest.mark.parametrize(
    ("offer", "field", "message"),
    [
        (_offer(name="n" * 900_000), "name", f"at most {MAX_NAME} characters"),
        (_with_params({"push": "x" * 500_000}), "actions.1.message.params", "renders up to"),
        (
            _with_params({f"p{i}": "v" for i in range(MAX_PARAMS)}),
            "actions.1.message.params",
            f"at most {MAX_PARAMS}",
        ),
        (
            _with_params({"k" * (MAX_PARAM_NAME + 1): "v"}),
            "actions.1.message.params",
            f"at most {MAX_PARAM_NAME}",
        ),
        (
            _with_params({"title": "x" * (MAX_TEXT - 5) + "{offer_name}"}),
            "actions.1.message.params",
            f"renders up to {MAX_TEXT - 5 + MAX_NAME} characters",
        ),
    ],
    ids=["name-900kb", "param-500kb", "params-count", "param-name", "param-rendered"],
)
def test_an_offer_whose_commands_the_contract_would_refuse_is_a_422(
    base: str, offer: dict[str, object], field: str, message: str, *, api_auth: SignedAuth
) -> None:
    answer = _refused(base, api_auth, json.dumps(offer).encode(), "application/json")
    problems = {e["field"]: e["message"] for e in answer["detail"]}  # type: ignore[attr-defined]
    assert field in problems and message in problems[field], problems
    assert len(json.dumps(answer)) < 5_000, "the answer does not echo the oversized value"


def test_an_offer_at_the_bounds_is_created(base: str, *, api_auth: SignedAuth) -> None:
    offer = _with_params({f"p{i}": "x" * MAX_TEXT for i in range(MAX_PARAMS - 1)})
    offer["name"] = "n" * MAX_NAME
    response = httpx.post(f"{base}/offers", json=offer, auth=api_auth, timeout=30)
    assert response.status_code == 201, response.text
