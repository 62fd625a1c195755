"""The VKScript subset: what parses, what it evaluates to, and what is refused."""

from __future__ import annotations

import pytest

from services.simulator.vkscript import (
    ApiCall,
    TooManyCallsError,
    VkScriptError,
    evaluate,
    parse,
)


def test_an_array_of_calls_with_json_arguments() -> None:
    program = parse(
        'return [API.groups.getMembers({"group_id": 1, "offset": 1000}), '
        'API.likes.getList({"type": "post", "item_id": -5})];'
    )
    assert program == [
        ApiCall("groups.getMembers", {"group_id": 1, "offset": 1000}),
        ApiCall("likes.getList", {"type": "post", "item_id": -5}),
    ]


def test_vkscript_object_literals_with_bare_keys_and_single_quotes() -> None:
    program = parse(
        "return {a: API.wall.get({owner_id: -1, filter: 'all'}), b: [1, 2.5, true, null]}"
    )
    assert program == {
        "a": ApiCall("wall.get", {"owner_id": -1, "filter": "all"}),
        "b": [1, 2.5, True, None],
    }


def test_evaluation_runs_calls_in_order_and_keeps_the_shape() -> None:
    seen: list[str] = []

    def run(call: ApiCall) -> object:
        seen.append(call.method)
        return len(seen)

    program = parse("return [API.a.b({}), {x: API.c.d()}, 7];")
    assert evaluate(program, run) == [1, {"x": 2}, 7]
    assert seen == ["a.b", "c.d"]


@pytest.mark.parametrize(
    "code",
    [
        "var x = API.wall.get({}); return x;",
        "return API.wall.get({}).items;",
        "while (true) { }",
        "return [API.wall({})];",
        'return API.wall.get({"a": 1}) + 1;',
        "return [1, 2",
    ],
)
def test_anything_outside_the_subset_is_refused(code: str) -> None:
    with pytest.raises(VkScriptError):
        parse(code)


def test_more_than_25_calls_is_vk_error_13() -> None:
    code = "return [" + ",".join(["API.wall.get({})"] * 26) + "];"
    with pytest.raises(TooManyCallsError):
        parse(code)
    assert len(parse("return [" + ",".join(["API.wall.get({})"] * 25) + "];")) == 25
