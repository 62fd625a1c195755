"""What a real API server enforces around the methods: tokens, signatures, rate
limits, injected faults, and counters of what it received.

No HTTP here either: ``Simulator.vk`` and ``Simulator.ok`` take the request's
parameters and return a ``Reply``; ``app`` only moves bytes. So the server's
behaviour is unit-tested without sockets, and the HTTP tests exercise the
clients against exactly the same logic.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from services.simulator import ok_api, vk_api, vkscript
from services.simulator.providers import OkOAuthProvider, Providers
from services.simulator.world import NetworkName, World


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: a JSON body, or a bare status with text (an injected 5xx)."""

    status: int = 200
    body: Any = None
    text: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VkToken:
    kind: Literal["user", "group"] = "user"
    rps: int = 3
    """Requests per second allowed; 0 means unlimited."""


@dataclass(frozen=True, slots=True)
class OkApp:
    application_key: str
    application_secret_key: str
    tokens: Mapping[str, int]
    """access token -> requests per second allowed (0: unlimited)."""
    application_id: str = "512000000001"
    """The client_id of the OAuth code grant (``/oauth/token.do``); its client_secret is
    ``application_secret_key``, as on OK."""


FaultKind = Literal["http", "error", "truncate"]


@dataclass
class Fault:
    """After ``after`` matching calls pass, the next ``remaining`` calls of ``method`` on
    ``network`` fail with ``code`` (an API error) or, when ``http_status`` is set, with
    that HTTP status. ``after`` is how a test fails a page in the middle of a run.

    With ``truncate`` set the call succeeds but its page is cut to that many items
    (0: an empty page) and, on OK, claims the list has ended (``has_more: false``):
    the short page a real API sometimes sends mid-list, which a client must not take
    for the whole list."""

    network: NetworkName
    method: str
    code: int = 0
    remaining: int = 1
    http_status: int | None = None
    message: str = ""
    after: int = 0
    truncate: int | None = None

    @property
    def kind(self) -> FaultKind:
        if self.http_status is not None:
            return "http"
        return "error" if self.truncate is None else "truncate"


class Faults:
    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self._faults.append(fault)

    def clear(self) -> None:
        self._faults.clear()

    def pending(self) -> list[Fault]:
        return list(self._faults)

    def take(self, network: NetworkName, method: str, *, kind: FaultKind) -> Fault | None:
        """The first armed fault of ``kind`` for the call, consumed once."""
        for fault in self._faults:
            if fault.network == network and fault.method in {method, "*"} and fault.kind == kind:
                if fault.after > 0:
                    fault.after -= 1
                    return None
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None


LIST_FIELDS = ("items", "members", "media_topics", "users", "comments")
"""Where each method's page of items is: VK's ``items``, OK's per-method fields."""


def truncated(body: Any, keep: int) -> Any:
    """The page ``body`` cut to ``keep`` items; OK's ``has_more`` then says the list ended.

    Counts (VK's ``count``, OK's ``totalCount``) are left as they were: the API
    that sends a short page does not correct its totals either.
    """
    if not isinstance(body, dict):
        return body
    out = dict(body)
    for name in LIST_FIELDS:
        if isinstance(out.get(name), list):
            out[name] = out[name][:keep]
    if "has_more" in out:
        out["has_more"] = False
    return out


class SlidingWindow:
    """At most ``rate`` requests per key in any ``period`` seconds, as VK counts them."""

    def __init__(self, clock: Callable[[], float], period: float = 1.0) -> None:
        self._clock = clock
        self._period = period
        self._seen: dict[str, deque[float]] = {}

    def allow(self, key: str, rate: int) -> bool:
        if rate <= 0:
            return True
        now = self._clock()
        seen = self._seen.setdefault(key, deque())
        while seen and now - seen[0] >= self._period:
            seen.popleft()
        if len(seen) >= rate:
            return False
        seen.append(now)
        return True


class Simulator:
    """The simulated API server of both networks over one ``World``."""

    def __init__(
        self,
        world: World,
        *,
        vk_tokens: Mapping[str, VkToken] | None = None,
        ok_app: OkApp | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.world = world
        self.vk_tokens = dict(vk_tokens or {})
        self.ok_app = ok_app
        self.providers = Providers(
            ok=OkOAuthProvider(ok_app.application_id, ok_app.application_secret_key)
            if ok_app is not None
            else None
        )
        """The simulated identity providers (VK ID, OK OAuth, Sign in with Apple)."""
        self.faults = Faults()
        self._window = SlidingWindow(clock)
        self.requests: Counter[str] = Counter()
        """HTTP requests received, by ``network:method`` (``vk:execute`` counts once)."""
        self.calls: Counter[str] = Counter()
        """API methods run, by ``network:method``, inside ``execute`` too."""
        self.rejected: Counter[str] = Counter()
        """Requests refused for the rate limit, by ``network:method``."""
        self.on_request: list[Callable[[NetworkName, str], None]] = []
        """Called as each request arrives: lets a test change the world mid-collection."""

    def counters(self) -> dict[str, dict[str, int]]:
        return {
            "requests": dict(self.requests),
            "calls": dict(self.calls),
            "rate_limited": dict(self.rejected),
        }

    def reset_counters(self) -> None:
        self.requests.clear()
        self.calls.clear()
        self.rejected.clear()

    # -- VK -------------------------------------------------------------------------

    def vk(self, method: str, params: Mapping[str, str]) -> Reply:
        """Answer ``/method/<method>`` as VK does (HTTP 200 with ``response`` or ``error``)."""
        self.requests[f"vk:{method}"] += 1
        for hook in list(self.on_request):
            hook("vk", method)
        fault = self.faults.take("vk", method, kind="http")
        if fault is not None:
            return Reply(status=fault.http_status or 500, text=fault.message or "Bad gateway")
        try:
            token = params.get("access_token")
            if not token:
                raise vk_api.VkApiError(5, "User authorization failed: no access_token passed.")
            if token not in self.vk_tokens:
                raise vk_api.error(5)
            if not params.get("v"):
                raise vk_api.error(8)
            if not self._window.allow(f"vk:{token}", self.vk_tokens[token].rps):
                self.rejected[f"vk:{method}"] += 1
                raise vk_api.error(6)
            self._raise_fault("vk", method)
            if method == "execute":
                return Reply(body=self._execute(params.get("code", "")))
            self.calls[f"vk:{method}"] += 1
            result = self._cut("vk", method, vk_api.call(self.world, method, params))
            return Reply(body={"response": result})
        except vk_api.VkApiError as exc:
            return Reply(body=_vk_error_body(exc, method, params))

    def _raise_fault(self, network: NetworkName, method: str) -> None:
        fault = self.faults.take(network, method, kind="error")
        if fault is None:
            return
        if network == "ok":
            raise ok_api.error(fault.code, fault.message or "injected")
        extra: dict[str, Any] = {}
        if fault.code == 14:
            extra = {"captcha_sid": "548747100691", "captcha_img": "https://captcha.invalid/?sid=1"}
        raise vk_api.error(fault.code, fault.message, **extra)

    def _cut(self, network: NetworkName, method: str, body: Any) -> Any:
        """``body``, or the short page an armed ``truncate`` fault asks for."""
        fault = self.faults.take(network, method, kind="truncate")
        return body if fault is None or fault.truncate is None else truncated(body, fault.truncate)

    def _execute(self, code: str) -> dict[str, Any]:
        try:
            program = vkscript.parse(code)
        except vkscript.TooManyCallsError as exc:
            raise vk_api.error(13, str(exc)) from None
        except vkscript.VkScriptError as exc:
            raise vk_api.error(12, str(exc)) from None
        errors: list[dict[str, Any]] = []

        def run(call: vkscript.ApiCall) -> Any:
            self.calls[f"vk:{call.method}"] += 1
            try:
                self._raise_fault("vk", call.method)
                result = vk_api.call(self.world, call.method, call.params)
                return self._cut("vk", call.method, result)
            except vk_api.VkApiError as exc:
                errors.append(
                    {"method": call.method, "error_code": exc.code, "error_msg": exc.message}
                )
                return False

        body: dict[str, Any] = {"response": vkscript.evaluate(program, run)}
        if errors:
            body["execute_errors"] = errors
        return body

    # -- OK -------------------------------------------------------------------------

    def ok(self, params: Mapping[str, str]) -> Reply:
        """Answer ``/fb.do`` as OK does: the result, or ``error_code``/``error_msg``."""
        method = params.get("method", "")
        self.requests[f"ok:{method}"] += 1
        for hook in list(self.on_request):
            hook("ok", method)
        fault = self.faults.take("ok", method, kind="http")
        if fault is not None:
            return Reply(status=fault.http_status or 500, text=fault.message or "Bad gateway")
        try:
            self._check_ok_request(method, params)
            self._raise_fault("ok", method)
            self.calls[f"ok:{method}"] += 1
            if method == "users.getCurrentUser":
                return Reply(body=self._current_ok_user(params))
            return Reply(body=self._cut("ok", method, ok_api.call(self.world, method, params)))
        except ok_api.OkApiError as exc:
            return Reply(
                body={"error_code": exc.code, "error_msg": exc.message, "error_data": None},
                headers={"invocation-error": str(exc.code)},
            )

    def _ok_user_tokens(self) -> Mapping[str, int]:
        return self.providers.ok.tokens if self.providers.ok is not None else {}

    def _current_ok_user(self, params: Mapping[str, str]) -> dict[str, Any]:
        token = params.get("access_token") or params.get("session_key") or ""
        uid = self._ok_user_tokens().get(token)
        if uid is None:
            raise ok_api.error(102, "Session expired")
        return {"uid": str(uid), "first_name": "Sim", "last_name": f"User{uid}", "name": ""}

    def _check_ok_request(self, method: str, params: Mapping[str, str]) -> None:
        app = self.ok_app
        if app is None or params.get("application_key") != app.application_key:
            raise ok_api.error(101, "Application key is invalid")
        if not method:
            raise ok_api.error(100, "Missing required parameter method")
        token = params.get("access_token") or params.get("session_key") or ""
        if token not in app.tokens and token not in self._ok_user_tokens():
            raise ok_api.error(102, "Session expired")
        expected = ok_api.expected_signature(params, token, app.application_secret_key)
        if params.get("sig", "").lower() != expected:
            raise ok_api.error(104, "Invalid signature")
        if not self._window.allow(f"ok:{token}", app.tokens.get(token, 0)):
            self.rejected[f"ok:{method}"] += 1
            raise ok_api.error(8, "Too many requests")


def _vk_error_body(exc: vk_api.VkApiError, method: str, params: Mapping[str, str]) -> Any:
    shown = [{"key": "method", "value": method}, {"key": "oauth", "value": "1"}]
    shown += [
        {"key": key, "value": str(value)}
        for key, value in params.items()
        if key not in {"access_token", "code"}
    ]
    return {
        "error": {
            "error_code": exc.code,
            "error_msg": exc.message,
            "request_params": shown,
            **exc.extra,
        }
    }
