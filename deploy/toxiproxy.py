"""Toxiproxy (Shopify/toxiproxy) for the local stack's network faults.

Toxiproxy is a TCP proxy with an HTTP API: a test puts it between a client and a
server, then adds "toxics" (latency, connection resets, a black hole) or disables the
proxy, and takes them away again. The stack (``deploy/localstack.py start --proxy``)
runs one server with a proxy in front of the broker's proxied listener and one in front
of PostgreSQL; this module builds the server, writes its proxy list and talks to it.

The server is built from source with Go's own client (``go install``, Go 1.23+), once
per bin folder: a missing binary is built again, and Go's build cache makes that a few
seconds after the first time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

VERSION = "v2.12.0"
PACKAGE = "github.com/Shopify/toxiproxy/v2/cmd/server"
MIN_GO = (1, 23)  # toxiproxy v2.12.0's go.mod

KAFKA_PROXY = "kafka"
"""The proxy in front of the broker's proxied listener (``start --proxy``)."""
POSTGRES_PROXY = "postgres"
"""The proxy in front of the stack's private PostgreSQL."""

Stream = Literal["upstream", "downstream"]
"""``downstream``: what the server sends the client; ``upstream``: the other way."""


class ToxiproxyError(RuntimeError):
    """Toxiproxy could not be built, started or told something; the message says why."""


# ------------------------------------------------------------------------ binary


def binary_path(bin_dir: Path) -> Path:
    return bin_dir / f"toxiproxy-server-{VERSION}"


def find_go() -> str:
    """The ``go`` command: on PATH, else where the official tarball puts it."""
    found = shutil.which("go")
    if found:
        return found
    fallback = Path("/usr/local/go/bin/go")
    if fallback.exists():
        return str(fallback)
    raise ToxiproxyError(
        f"Toxiproxy is built from source with Go {MIN_GO[0]}.{MIN_GO[1]}+, and no `go` "
        "is on PATH (nor /usr/local/go/bin/go): install Go, then run the command again"
    )


def _go_version(go: str) -> tuple[int, int]:
    done = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True)
    match = re.match(r"go(\d+)\.(\d+)", done.stdout.strip())
    if done.returncode != 0 or not match:
        raise ToxiproxyError(f"`{go} env GOVERSION` failed: {done.stderr.strip()[-500:]}")
    return int(match.group(1)), int(match.group(2))


def ensure_binary(bin_dir: Path) -> Path:
    """The toxiproxy server binary in ``bin_dir``, built with ``go install`` if missing.

    ``GOTOOLCHAIN=local``: a Go too old for the module is an error naming the version
    needed, never a toolchain download. The build lands in a folder of its own and is
    moved into place whole, so an interrupted build leaves no half binary behind."""
    target = binary_path(bin_dir)
    if target.exists() and os.access(target, os.X_OK):
        return target
    go = find_go()
    version = _go_version(go)
    if version < MIN_GO:
        raise ToxiproxyError(
            f"Toxiproxy {VERSION} needs Go {MIN_GO[0]}.{MIN_GO[1]}+, `{go}` is "
            f"{version[0]}.{version[1]}: install a newer Go"
        )
    bin_dir.mkdir(parents=True, exist_ok=True)
    build_dir = bin_dir / f".build-{os.getpid()}"
    shutil.rmtree(build_dir, ignore_errors=True)
    print(f"[toxiproxy] building {PACKAGE}@{VERSION} with {go} (once per bin folder)", flush=True)
    env = {**os.environ, "GOBIN": str(build_dir), "GOTOOLCHAIN": "local"}
    try:
        done = subprocess.run(
            [go, "install", f"{PACKAGE}@{VERSION}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        built = build_dir / "server"
        if done.returncode != 0 or not built.exists():
            raise ToxiproxyError(f"go install {PACKAGE}@{VERSION} failed: {done.stderr[-2000:]}")
        os.replace(built, target)
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    return target


# ------------------------------------------------------------------------ server


@dataclass(frozen=True)
class ProxySpec:
    """One proxy: Toxiproxy listens on ``listen`` and forwards to ``upstream``."""

    name: str
    listen: str
    upstream: str
    enabled: bool = True

    def as_json(self) -> dict[str, str | bool]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
        }


def write_config(path: Path, proxies: list[ProxySpec]) -> Path:
    """The server's ``-config`` file: it creates these proxies whenever it starts, so a
    restarted server has them back (without toxics, which live in memory only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([proxy.as_json() for proxy in proxies], indent=2) + "\n")
    return path


def server_command(binary: Path, port: int, config: Path) -> list[str]:
    """The server on loopback only: its API has no authentication."""
    return [str(binary), "-host", "127.0.0.1", "-port", str(port), "-config", str(config)]


# ------------------------------------------------------------------------ client


@dataclass(frozen=True)
class Toxic:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, Any] = field(default_factory=dict)


class Toxiproxy:
    """A client of one Toxiproxy server's HTTP API (``http://127.0.0.1:<port>``).

    Every call raises ``ToxiproxyError`` with the server's own message when it refuses,
    e.g. a proxy name it does not know."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        # httpx is imported where it is used: ``deploy/localstack.py`` imports this module,
        # and its ``fetch-kafka`` and ``--help`` run on a bare python3 before .venv exists.
        import httpx

        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Toxiproxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, body: object = None) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ToxiproxyError(f"toxiproxy at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise ToxiproxyError(
                f"toxiproxy {method} {path}: {response.status_code} {message.strip()}"
            )
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # server

    def version(self) -> str:
        response = self._http.get("/version")
        response.raise_for_status()
        return response.text.strip()

    def wait_ready(self, timeout: float = 15.0, alive: Callable[[], bool] | None = None) -> None:
        """Return once the API answers; ``ToxiproxyError`` after ``timeout`` seconds, or
        as soon as ``alive`` (the server process) says it is gone."""
        import httpx

        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if alive is not None and not alive():
                raise ToxiproxyError(f"toxiproxy for {self.url} exited while starting")
            try:
                self.version()
                return
            except httpx.HTTPError as exc:
                last = str(exc) or type(exc).__name__
            time.sleep(0.1)
        raise ToxiproxyError(f"toxiproxy at {self.url} not answering after {timeout:.0f}s: {last}")

    def reset(self) -> None:
        """Every proxy enabled again and every toxic removed: the state after a fault."""
        self._call("POST", "/reset")

    # proxies

    def proxies(self) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = self._call("GET", "/proxies")
        return result

    def proxy(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/proxies/{name}")
        return result

    def ensure_proxy(self, spec: ProxySpec) -> None:
        """Create the proxy, or bring an existing one of that name to ``spec`` (its
        toxics stay)."""
        existing = self.proxies().get(spec.name)
        if existing is None:
            self._call("POST", "/proxies", spec.as_json())
            return
        wanted = spec.as_json()
        if any(existing.get(key) != value for key, value in wanted.items()):
            self._call("PATCH", f"/proxies/{spec.name}", wanted)

    def delete_proxy(self, name: str) -> None:
        self._call("DELETE", f"/proxies/{name}")

    def set_enabled(self, name: str, enabled: bool) -> None:
        """A disabled proxy closes its connections and refuses new ones (the server
        seems gone); enabled again, it accepts connections again."""
        self._call("PATCH", f"/proxies/{name}", {"enabled": enabled})

    def enable(self, name: str) -> None:
        self.set_enabled(name, True)

    def disable(self, name: str) -> None:
        self.set_enabled(name, False)

    # toxics

    def toxics(self, proxy: str) -> list[Toxic]:
        return [
            Toxic(
                name=t["name"],
                type=t["type"],
                stream=t["stream"],
                toxicity=t["toxicity"],
                attributes=t.get("attributes") or {},
            )
            for t in self._call("GET", f"/proxies/{proxy}/toxics")
        ]

    def add_toxic(
        self,
        proxy: str,
        kind: str,
        attributes: dict[str, int | float],
        *,
        name: str | None = None,
        stream: Stream = "downstream",
        toxicity: float = 1.0,
    ) -> str:
        """Add a toxic of any type Toxiproxy knows; returns its name (for removal)."""
        toxic_name = name or f"{kind}_{stream}"
        self._call(
            "POST",
            f"/proxies/{proxy}/toxics",
            {
                "name": toxic_name,
                "type": kind,
                "stream": stream,
                "toxicity": toxicity,
                "attributes": attributes,
            },
        )
        return toxic_name

    def add_latency(
        self, proxy: str, latency_ms: int, jitter_ms: int = 0, *, stream: Stream = "downstream"
    ) -> str:
        """Delay every chunk of data by ``latency_ms`` (± ``jitter_ms``)."""
        return self.add_toxic(
            proxy, "latency", {"latency": latency_ms, "jitter": jitter_ms}, stream=stream
        )

    def add_reset_peer(
        self, proxy: str, timeout_ms: int = 0, *, stream: Stream = "downstream"
    ) -> str:
        """Reset every connection (TCP RST) after ``timeout_ms``; 0: at once, new
        connections included."""
        return self.add_toxic(proxy, "reset_peer", {"timeout": timeout_ms}, stream=stream)

    def add_timeout(self, proxy: str, timeout_ms: int = 0, *, stream: Stream = "downstream") -> str:
        """Stop all data and close the connection after ``timeout_ms``; 0: hold the data
        forever (a black hole: connections open, nothing arrives)."""
        return self.add_toxic(proxy, "timeout", {"timeout": timeout_ms}, stream=stream)

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    @contextmanager
    def toxic(
        self,
        proxy: str,
        kind: str,
        attributes: dict[str, int | float],
        *,
        stream: Stream = "downstream",
    ) -> Iterator[str]:
        """``with client.toxic("postgres", "latency", {"latency": 500}): ...`` — the
        toxic is removed when the block ends, however it ends."""
        name = self.add_toxic(proxy, kind, attributes, stream=stream)
        try:
            yield name
        finally:
            self.remove_toxic(proxy, name)
