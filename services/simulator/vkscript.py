"""The part of VKScript the simulator understands: ``return <expression>;``.

An expression is an API call ``API.section.method({...})``, an array or object
of expressions, or a literal (number, string, true/false/null). That is what
batching clients send (``return [API.groups.getMembers({...}), ...];``); loops,
variables and arithmetic are refused with VK's own "unable to compile" error,
so a client that relies on them fails loudly here instead of silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_CALLS = 25


class VkScriptError(ValueError):
    """The code is not in the supported subset (VK error 12)."""


@dataclass(frozen=True, slots=True)
class ApiCall:
    method: str
    params: dict[str, Any]


Expr = Any
"""``ApiCall``, ``list[Expr]``, ``dict[str, Expr]`` or a JSON scalar."""

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>-?\d+(?:\.\d+)?)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[\[\]{}(),:;.])
    )""",
    re.VERBOSE,
)


def _tokens(code: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    code = code.rstrip()
    while pos < len(code):
        match = _TOKEN.match(code, pos)
        if match is None or match.end() == pos:
            raise VkScriptError(f"unexpected character at {pos}: {code[pos : pos + 10]!r}")
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, code: str) -> None:
        self.tokens = _tokens(code)
        self.pos = 0
        self.calls = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        token = self.peek()
        if token is None:
            raise VkScriptError("unexpected end of code")
        if (value is not None and token[1] != value) or (kind is not None and token[0] != kind):
            raise VkScriptError(f"expected {value or kind}, got {token[1]!r}")
        self.pos += 1
        return token[1]

    def program(self) -> Expr:
        self.take("return")
        expr = self.expr()
        if self.peek() == ("punct", ";"):
            self.take(";")
        if self.peek() is not None:
            raise VkScriptError(f"unexpected {self.peek()[1]!r} after return")  # type: ignore[index]
        return expr

    def expr(self) -> Expr:
        token = self.peek()
        if token is None:
            raise VkScriptError("unexpected end of code")
        kind, value = token
        if value == "[":
            return self.array()
        if value == "{":
            return self.obj()
        if kind == "number":
            self.take()
            return float(value) if "." in value else int(value)
        if kind == "string":
            self.take()
            return _unquote(value)
        if kind == "name" and value == "API":
            return self.call()
        if kind == "name" and value in {"true", "false", "null"}:
            self.take()
            return {"true": True, "false": False, "null": None}[value]
        raise VkScriptError(f"unsupported expression at {value!r}")

    def array(self) -> list[Expr]:
        self.take("[")
        items: list[Expr] = []
        while self.peek() != ("punct", "]"):
            items.append(self.expr())
            if self.peek() != ("punct", "]"):
                self.take(",")
        self.take("]")
        return items

    def obj(self) -> dict[str, Expr]:
        self.take("{")
        out: dict[str, Expr] = {}
        while self.peek() != ("punct", "}"):
            token = self.peek()
            if token is None or token[0] not in {"name", "string"}:
                raise VkScriptError("expected a key")
            self.take()
            key = _unquote(token[1]) if token[0] == "string" else token[1]
            self.take(":")
            out[key] = self.expr()
            if self.peek() != ("punct", "}"):
                self.take(",")
        self.take("}")
        return out

    def call(self) -> ApiCall:
        self.take("API")
        parts: list[str] = []
        while self.peek() == ("punct", "."):
            self.take(".")
            parts.append(self.take(kind="name"))
        if len(parts) != 2:
            raise VkScriptError("an API call is API.section.method(...)")
        self.take("(")
        params: dict[str, Any] = {}
        if self.peek() != ("punct", ")"):
            params = self.obj()
        self.take(")")
        self.calls += 1
        return ApiCall(method=".".join(parts), params=params)


def _unquote(literal: str) -> str:
    if literal.startswith("'"):
        literal = '"' + literal[1:-1].replace('\\"', '"').replace('"', '\\"') + '"'
    value = json.loads(literal)
    assert isinstance(value, str)
    return value


def parse(code: str) -> Expr:
    """The returned expression of ``code``; raises ``VkScriptError`` outside the subset."""
    parser = _Parser(code)
    expr = parser.program()
    if parser.calls > MAX_CALLS:
        raise TooManyCallsError(f"{parser.calls} API calls, at most {MAX_CALLS}")
    return expr


class TooManyCallsError(VkScriptError):
    """More than 25 API calls in one execute (VK error 13)."""


def evaluate(expr: Expr, run: Callable[[ApiCall], Any]) -> Any:
    """The value of ``expr`` with every API call replaced by ``run(call)``, in order."""
    if isinstance(expr, ApiCall):
        return run(expr)
    if isinstance(expr, list):
        return [evaluate(item, run) for item in expr]
    if isinstance(expr, dict):
        return {key: evaluate(value, run) for key, value in expr.items()}
    return expr
