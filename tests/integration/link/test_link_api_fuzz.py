"""The link API under fuzzing (its own OpenAPI document, real PostgreSQL and Kafka, the
simulator's identity providers in a thread of their own): no 5xx, and every route
answers 2xx to at least one valid request (made with real proofs); plus the requests
that used to answer 500."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import httpx
import pytest

from services.link.link_api import MAX_BODY, create_link_app
from services.link.settings import LinkSettings
from services.runtime.access import SignedAuth
from services.runtime.httpapi import BackgroundApi, serve_api_in_thread
from services.simulator import identity_client as idc
from services.simulator.testing import make_simulator, running
from tests.integration.api_fuzz import FuzzReport, call, fuzz_served_api
from tests.integration.link.test_link_api import (
    OK_CLIENT,
    VK_CLIENT,
    identity_for,
    settings,  # noqa: F401
)

EXAMPLES = 40


@pytest.fixture
def simulator() -> Iterator[str]:
    """The simulator served from a thread with its own event loop; its base URL."""
    ready: dict[str, str] = {}
    started = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with running(make_simulator()) as sim:
            ready["url"] = sim.base_url
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(30), "the simulator did not start"
    try:
        yield ready["url"]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


@pytest.fixture
def served(
    settings: LinkSettings,  # noqa: F811
    simulator: str,
) -> Iterator[tuple[BackgroundApi, str]]:
    configured = settings.model_copy(update={"identity": identity_for(simulator)})
    server = serve_api_in_thread(create_link_app(configured), "127.0.0.1", 0)
    try:
        yield server, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def test_fuzz_link_api(
    served: tuple[BackgroundApi, str],
    simulator: str,
    settings: LinkSettings,  # noqa: F811
    api_secret: str,
) -> None:
    _, base = served
    report = FuzzReport(secret=api_secret)
    vk = idc.vk_id_proof_sync(simulator, 4242, VK_CLIENT)
    ok = idc.ok_proof_sync(simulator, 7, OK_CLIENT)
    linked = call(base, report, "POST", "/v1/links", json={"member_id": "m-fuzz", "proof": vk})
    assert linked.status_code == 201, linked.text
    signed_in = call(base, report, "POST", "/v1/sign-in", json={"proof": ok, "register": True})
    assert signed_in.status_code == 201, signed_in.text
    call(
        base,
        report,
        "GET",
        "/v1/members/m-fuzz/links",
        route="/v1/members/{member_id}/links",
    )
    call(
        base,
        report,
        "DELETE",
        "/v1/members/m-fuzz/links/vk/4242",
        route="/v1/members/{member_id}/links/{network}/{social_user_id}",
    )
    fuzz_served_api("link API", base, report, examples=EXAMPLES)


NESTED = b"[" * 100_000


@pytest.mark.parametrize(
    ("method", "path", "content", "status"),
    [
        ("DELETE", "/v1/members/m-1/links/vk/1%00", None, 400),
        ("GET", "/v1/members/m%00/links", None, 400),
        ("GET", "/v1/members/m-1/links?x=%00", None, 400),
        ("GET", "/v1/members/m%FF/links", None, 400),
        ("POST", "/v1/links", NESTED, 413),  # over the link API's body limit
        ("POST", "/v1/links", b"[" * 1000 + b"]" * 1000, 400),
        ("POST", "/v1/sign-in", b'{"a":' * 70 + b"1" + b"}" * 70, 400),
        ("POST", "/v1/links", b'{"member_id": "m\\u0000", "network": "vk"}', 400),
        ("POST", "/v1/links", b'{"member_id": "m\xff"}', 400),
        ("POST", "/v1/links", b"x" * (MAX_BODY + 1), 413),
        ("POST", "/v1/links", b'{"limit": "a"b"}', 422),
    ],
)
def test_requests_that_used_to_fail_are_refused_with_json(
    served: tuple[BackgroundApi, str],
    method: str,
    path: str,
    content: bytes | None,
    status: int,
    *,
    api_auth: SignedAuth,
) -> None:
    _, base = served
    response = httpx.request(
        method,
        f"{base}{path}",
        content=content,
        headers={"Content-Type": "application/json"},
        timeout=30,
        auth=api_auth,
    )
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str) and isinstance(body["detail"], list)
