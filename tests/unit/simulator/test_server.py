"""What the simulated servers enforce: tokens, signatures, rate limits, faults, counters."""

from __future__ import annotations

from typing import Any

from services.collector.api.ok import signed_form
from services.simulator.enforcement import Fault, OkApp, Simulator, VkToken
from services.simulator.world import World


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def vk_simulator(clock: Clock) -> Simulator:
    world = World()
    world.add_group("vk", 1, [1, 2, 3])
    world.add_group("ok", 2, [4, 5])
    return Simulator(
        world,
        vk_tokens={"user": VkToken("user", 3), "group": VkToken("group", 20)},
        ok_app=OkApp("KEY", "SECRET", {"tok": 2}),
        clock=clock,
    )


def members(sim: Simulator, token: str = "user", **extra: str) -> Any:
    params = {"group_id": "1", "access_token": token, "v": "5.199", **extra}
    return sim.vk("groups.getMembers", params).body


def error_code(body: object) -> int:
    assert isinstance(body, dict) and "error" in body, body
    return int(body["error"]["error_code"])


def test_bad_or_missing_token_is_5_and_missing_version_is_8() -> None:
    sim = vk_simulator(Clock())
    assert error_code(members(sim, token="nope")) == 5
    assert error_code(sim.vk("wall.get", {"owner_id": "-1", "v": "5.199"}).body) == 5
    assert error_code(sim.vk("wall.get", {"owner_id": "-1", "access_token": "user"}).body) == 8


def test_the_rate_limit_is_per_token_and_per_second() -> None:
    clock = Clock()
    sim = vk_simulator(clock)
    assert [members(sim) for _ in range(3)] == [{"response": {"count": 3, "items": [1, 2, 3]}}] * 3
    assert error_code(members(sim)) == 6
    assert "response" in members(sim, token="group")  # another token, another budget
    clock.now = 0.99
    assert error_code(members(sim)) == 6
    clock.now = 1.0
    assert "response" in members(sim)
    assert sim.counters()["rate_limited"] == {"vk:groups.getMembers": 2}


def test_faults_fire_the_given_number_of_times_and_a_captcha_carries_its_sid() -> None:
    sim = vk_simulator(Clock())
    sim.faults.add(Fault("vk", "groups.getMembers", code=14, remaining=2))
    first = members(sim, token="group")
    assert error_code(first) == 14
    assert "captcha_sid" in first["error"]
    assert error_code(members(sim, token="group")) == 14
    assert "response" in members(sim, token="group")
    sim.faults.add(Fault("vk", "*", http_status=502))
    reply = sim.vk("wall.get", {"owner_id": "-1", "access_token": "group", "v": "5.199"})
    assert reply.status == 502


def test_a_fault_with_after_lets_that_many_calls_pass_first() -> None:
    sim = vk_simulator(Clock())
    sim.faults.add(Fault("vk", "groups.getMembers", code=10, remaining=1, after=2))
    bodies = [members(sim, token="group") for _ in range(4)]
    assert ["error" in body for body in bodies] == [False, False, True, False]
    assert error_code(bodies[2]) == 10
    assert sim.faults.pending() == []


def test_error_bodies_echo_the_request_but_never_the_token() -> None:
    sim = vk_simulator(Clock())
    body = members(sim, token="nope")
    shown = {p["key"]: p["value"] for p in body["error"]["request_params"]}
    assert shown["method"] == "groups.getMembers" and shown["group_id"] == "1"
    assert "access_token" not in shown


def test_execute_counts_one_request_and_each_call() -> None:
    sim = vk_simulator(Clock())
    code = 'return [API.groups.getMembers({"group_id": 1}), API.wall.get({"owner_id": -1})];'
    reply = sim.vk("execute", {"code": code, "access_token": "user", "v": "5.199"})
    assert reply.body["response"][0]["count"] == 3
    assert sim.counters()["requests"] == {"vk:execute": 1}
    assert sim.counters()["calls"] == {"vk:groups.getMembers": 1, "vk:wall.get": 1}
    broken = sim.vk("execute", {"code": "var a = 1;", "access_token": "user", "v": "5.199"})
    assert error_code(broken.body) == 12


def ok_call(
    sim: Simulator, method: str, secret: str = "SECRET", token: str = "tok", **params: str
) -> Any:
    form = signed_form(
        method, params, application_key="KEY", access_token=token, application_secret_key=secret
    )
    return sim.ok(form).body


def test_ok_checks_key_session_and_signature_in_that_order() -> None:
    sim = vk_simulator(Clock())
    good = ok_call(sim, "group.getMembers", uid="2")
    assert [m["userId"] for m in good["members"]] == ["4", "5"]
    assert ok_call(sim, "group.getMembers", token="old", uid="2")["error_code"] == 102
    assert ok_call(sim, "group.getMembers", secret="wrong", uid="2")["error_code"] == 104
    tampered = signed_form(
        "group.getMembers",
        {"uid": "2"},
        application_key="KEY",
        access_token="tok",
        application_secret_key="SECRET",
    )
    tampered["uid"] = "3"
    assert sim.ok(tampered).body["error_code"] == 104
    assert sim.ok({**tampered, "application_key": "OTHER"}).body["error_code"] == 101


def test_ok_anchors_do_not_shift_when_members_join_between_pages() -> None:
    clock = Clock()
    sim = vk_simulator(clock)
    sim.world.add_members("ok", 2, [10, 20, 30])
    first = ok_call(sim, "group.getMembers", uid="2", count="2")
    assert [m["userId"] for m in first["members"]] == ["4", "5"]
    sim.world.add_members("ok", 2, [1])  # joins before the anchor: must not repeat "5"
    clock.now = 5
    second = ok_call(sim, "group.getMembers", uid="2", count="2", anchor=first["anchor"])
    assert [m["userId"] for m in second["members"]] == ["10", "20"]
    assert second["has_more"] is True
