"""Paging and batching arithmetic, kept apart so it can be checked exhaustively."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

MAX_EXECUTE_CALLS = 25
"""VK runs at most 25 API calls in one ``execute``."""


def pages_needed(total: int, page_size: int) -> int:
    """Pages of ``page_size`` that hold ``total`` items (one page for an empty list)."""
    if page_size < 1 or total < 0:
        raise ValueError("page_size must be positive and total non-negative")
    return max(1, -(-total // page_size))


def page_offsets(total: int, page_size: int, start: int = 0) -> list[int]:
    """Offsets of the pages that cover items ``start .. total-1``."""
    if page_size < 1 or total < 0 or start < 0:
        raise ValueError("page_size must be positive, total and start non-negative")
    return list(range(start, total, page_size))


def chunked(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` cut into consecutive lists of at most ``size``."""
    if size < 1:
        raise ValueError("size must be positive")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def min_requests(calls: int, batch: int = MAX_EXECUTE_CALLS) -> int:
    """The fewest HTTP requests that can make ``calls`` API calls with ``execute``."""
    return -(-calls // batch) if calls > 0 else 0


@dataclass(frozen=True, slots=True)
class Call:
    """One API method call, before it is sent alone or inside ``execute``."""

    method: str
    params: Mapping[str, str | int] = field(default_factory=dict)


def execute_code(calls: Sequence[Call]) -> str:
    """The VKScript that runs ``calls`` in one request and returns their results in order.

    It is the simplest form VKScript has, ``return [API.a.b({...}), ...];``, with
    the arguments as JSON objects; nothing the server could evaluate differently.
    """
    if not calls:
        raise ValueError("execute needs at least one call")
    if len(calls) > MAX_EXECUTE_CALLS:
        raise ValueError(f"execute takes at most {MAX_EXECUTE_CALLS} calls, got {len(calls)}")
    parts = [
        f"API.{call.method}({json.dumps(dict(call.params), separators=(',', ':'))})"
        for call in calls
    ]
    return "return [" + ",".join(parts) + "];"
