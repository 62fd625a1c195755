"""Schemathesis against an API's own OpenAPI document, over a real port.

``fuzz`` runs every operation of the document with a bounded number of generated
requests, valid ones (positive) and invalid ones (negative), and fails on any 5xx;
for valid requests it also checks that the answer's status, content type and body
are the ones the document declares. ``FuzzReport`` keeps, per operation, the
statuses seen, so a test can assert that every route answered 2xx at least once.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.runtime.access import SignedAuth
from services.runtime.access.signing import Secret, authorization

POSITIVE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
NEGATIVE_CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


class SignedRequests(requests.auth.AuthBase):
    """``SignedAuth`` for ``requests`` (what schemathesis sends with): the same header
    from the same signing function."""

    def __init__(self, secret: str) -> None:
        self._secret = Secret.parse(secret)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        request.headers["Authorization"] = authorization(
            self._secret,
            request.method or "GET",
            request.path_url.encode(),
            body.encode() if isinstance(body, str) else body,
            ts=int(time.time()),
        )
        return request


@dataclass
class FuzzReport:
    secret: str | None = field(default=None, repr=False)
    """The credential ``call`` and ``fuzz_served_api`` sign with."""
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))

    @property
    def requests(self) -> int:
        return sum(sum(c.values()) for c in self.statuses.values())

    @property
    def server_errors(self) -> list[str]:
        return [
            f"{op} {status}"
            for op, counts in self.statuses.items()
            for status in counts
            if status >= 500
        ]

    def record(self, operation: str, status: int) -> None:
        self.statuses[operation][status] += 1

    def without_2xx(self) -> list[str]:
        return sorted(
            op for op, counts in self.statuses.items() if not any(200 <= s < 300 for s in counts)
        )

    def summary(self) -> str:
        return "; ".join(
            f"{op}: {dict(sorted(counts.items()))}" for op, counts in sorted(self.statuses.items())
        )


def label(method: str, path: str) -> str:
    return f"{method.upper()} {path}"


def fuzz(
    document: dict[str, Any],
    base_url: str,
    *,
    examples: int,
    skip: frozenset[str] = frozenset(),
    report: FuzzReport | None = None,
    secret: str | None = None,
) -> FuzzReport:
    """Fuzz every operation of ``document`` served at ``base_url``; raises on the first
    failed check (a 5xx above all). With ``secret`` every request is signed."""
    report = report or FuzzReport()
    session = requests.Session()
    if secret is not None:
        session.auth = SignedRequests(secret)
    schema = schemathesis.openapi.from_dict(document)
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operation = result.ok()
        name = label(operation.method, operation.path)
        if name in skip:
            continue
        for mode, checks in (
            (GenerationMode.POSITIVE, POSITIVE_CHECKS),
            (GenerationMode.NEGATIVE, NEGATIVE_CHECKS),
        ):
            _run_operation(
                operation,
                mode,
                checks=checks,
                name=name,
                base_url=base_url,
                examples=examples,
                report=report,
                session=session,
            )
    return report


def fuzz_served_api(name: str, base_url: str, report: FuzzReport, *, examples: int) -> None:
    """Fuzz the API at ``base_url`` from its own ``/openapi.json`` after the explicit
    requests already in ``report``, signed with ``report.secret`` (a credential with
    every route's scope): no operation may answer 5xx, and every route must have
    answered 2xx at least once."""
    document = httpx.get(f"{base_url}/openapi.json").json()
    fuzz(document, base_url, examples=examples, report=report, secret=report.secret)
    print(f"{name}: {report.requests} requests; {report.summary()}")
    assert report.server_errors == []
    assert report.without_2xx() == []


def _run_operation(
    operation: Any,
    mode: GenerationMode,
    *,
    checks: list[Any],
    name: str,
    base_url: str,
    examples: int,
    report: FuzzReport,
    session: requests.Session,
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, session=session, timeout=30)
        report.record(name, response.status_code)
        assert response.status_code < 500, (name, case.as_curl_command(), response.text)
        case.validate_response(response, checks=checks)

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # Nothing to break: an operation without parameters or body has no invalid input.


def call(
    base_url: str, report: FuzzReport, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    """One explicit request, recorded under its route's label (``route`` overrides the
    path for routes with parameters), signed with ``report.secret``."""
    route = kwargs.pop("route", path)
    if report.secret is not None:
        kwargs.setdefault("auth", SignedAuth(report.secret))
    response = httpx.request(method, f"{base_url}{path}", timeout=30, **kwargs)
    report.record(label(method, route), response.status_code)
    return response
