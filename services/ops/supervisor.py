"""A small process supervisor for local runs, the demo and the chaos tests.

Each service runs as its own OS process (``python -m services.<name> ...``) with
its output in ``<log_dir>/<name>.log``, exactly as it would under systemd or in a
container; the supervisor waits for each one's ``/readyz``, restarts a process that
died on its own, and stops them all in reverse order with SIGTERM (then SIGKILL).
The chaos tests use ``kill`` and ``start`` to crash and revive one service.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx


class ServiceFailedError(RuntimeError):
    """A service exited or did not become ready in time; the message quotes its log."""


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service: ``python -m <module> <args...>`` plus its readiness URL."""

    name: str
    args: tuple[str, ...]
    ready_url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 90.0
    login: str | None = None
    """The service whose Kafka principal it logs in as, when not its own name (the
    second worker ``rules-2`` logs in as ``rules``)."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", *self.args]


@dataclass
class _Running:
    spec: ServiceSpec
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float
    restarts: int = 0


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: Linux sends it SIGTERM when the supervisor dies,
    so a supervisor killed with -9 (or a test timing out) leaves no service behind.

    Linux sends it when the *thread* that forked the child ends, not only the process:
    so every child is forked by the supervisor's one spawning thread, which lives until
    ``stop_all`` (a service restarted by the chaos monkey's thread got SIGTERM the
    moment that thread finished)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: ordered stop only
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Starts, watches and stops a set of service processes."""

    def __init__(
        self,
        specs: Iterable[ServiceSpec],
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.log_dir = log_dir
        self.env = dict(os.environ if env is None else env)
        self._running: dict[str, _Running] = {}
        self._held: set[str] = set()  # killed on purpose: not revived until ``start``
        self._say = on_event or (lambda _msg: None)
        # The demo's reviver thread and the chaos monkey call in from other threads.
        self._lock = threading.RLock()
        self._watching = threading.Event()
        self._watcher: threading.Thread | None = None
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="supervisor-spawn")
        log_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------- lifecycle

    def start(self, name: str, *, wait: bool = True) -> None:
        """Start ``name`` (appending to its log) and, by default, wait until it is ready."""
        with self._lock:
            self._held.discard(name)
            self._spawn(name)
        if wait:
            self.wait_ready(name)

    def _spawn(self, name: str) -> None:
        spec = self.specs[name]
        current = self._running.get(name)
        if current is not None and current.process.poll() is None:
            return
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            log.write(f"\n=== start {time.strftime('%H:%M:%S')} ===\n".encode())
            log.flush()
            process = self._spawner.submit(
                subprocess.Popen,
                spec.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # A log file is no terminal: typer's plain tracebacks, not rich's boxes
                # wrapped at 80 columns (unless the caller's environment says otherwise).
                env={"TYPER_USE_RICH": "0", **self.env, **spec.env},
                start_new_session=True,  # Ctrl-C in the terminal reaches the supervisor only
                preexec_fn=_die_with_parent,  # prctl only, no locks taken
            ).result()
        restarts = current.restarts + 1 if current is not None else 0
        self._running[name] = _Running(spec, process, log_path, time.monotonic(), restarts)
        self._say(f"started {name} (pid {process.pid}, log {log_path})")

    def wait_ready(self, name: str) -> None:
        running = self._running[name]
        spec = running.spec
        if spec.ready_url is None:
            return
        deadline = time.monotonic() + spec.ready_timeout_s
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            code = running.process.poll()
            if code is not None:
                raise ServiceFailedError(
                    f"{name} exited with code {code} while starting; last lines of "
                    f"{running.log_path}:\n{_tail(running.log_path)}"
                )
            try:
                response = httpx.get(spec.ready_url, timeout=2.0)
                if response.status_code == 200:
                    return
                last_error = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last_error = str(exc) or type(exc).__name__
            time.sleep(0.3)
        raise ServiceFailedError(
            f"{name} was not ready at {spec.ready_url} after {spec.ready_timeout_s:.0f}s "
            f"({last_error}); last lines of {running.log_path}:\n{_tail(running.log_path)}"
        )

    def start_all(self) -> None:
        for name in self.specs:
            self.start(name)

    def kill(self, name: str, sig: int = signal.SIGKILL, *, hold: bool = False) -> None:
        """Send ``sig`` to the service's process group (kill -9 by default) and reap it.
        With ``hold``, ``watch`` leaves it dead until ``start(name)``: a worker that stays
        down while the others take over its partitions."""
        with self._lock:
            if hold:
                self._held.add(name)
            running = self._running.get(name)
            if running is None or running.process.poll() is not None:
                return
            os.killpg(running.process.pid, sig)
            running.process.wait(timeout=30)
        self._say(f"{name} got signal {sig}")

    def stop(self, name: str, timeout_s: float = 20.0) -> None:
        running = self._running.get(name)
        if running is None or running.process.poll() is not None:
            return
        os.killpg(running.process.pid, signal.SIGTERM)
        try:
            running.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._say(f"{name} did not stop in {timeout_s:.0f}s; killing it")
            os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait(timeout=10)

    def watch(self, interval_s: float = 2.0) -> None:
        """Restart dead services from a background thread until ``stop_all``."""
        if self._watcher is not None:
            return
        self._watching.set()

        def loop() -> None:
            while self._watching.is_set():
                self.restart_dead()
                time.sleep(interval_s)

        self._watcher = threading.Thread(target=loop, name="supervisor-watch", daemon=True)
        self._watcher.start()

    def stop_all(self, timeout_s: float = 20.0) -> None:
        self._watching.clear()
        if self._watcher is not None:
            self._watcher.join(timeout=30)
            self._watcher = None
        for name in reversed(list(self._running)):
            self.stop(name, timeout_s)

    def restart_dead(self) -> list[str]:
        """Restart every service whose process exited on its own; returns their names."""
        revived = []
        with self._lock:
            for name, running in list(self._running.items()):
                if running.process.poll() is not None and name not in self._held:
                    self._say(
                        f"{name} exited with code {running.process.returncode}; restarting "
                        f"(see {running.log_path})"
                    )
                    self._spawn(name)
                    revived.append(name)
        return revived

    def pids(self) -> dict[str, int]:
        """The process id of every running service."""
        return {
            name: running.process.pid
            for name, running in self._running.items()
            if running.process.poll() is None
        }

    def status(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for name, spec in self.specs.items():
            running = self._running.get(name)
            alive = running is not None and running.process.poll() is None
            rows.append(
                {
                    "service": name,
                    "pid": running.process.pid if running and alive else None,
                    "alive": alive,
                    "restarts": running.restarts if running else 0,
                    "log": str(self.log_dir / f"{name}.log"),
                    "ready_url": spec.ready_url,
                }
            )
        return rows

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
