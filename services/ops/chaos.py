"""Chaos for the demo story: ``kill -9`` services at random moments, restart the broker once.

The monkey runs beside the story; each kill is followed by a restart of the same
service (as an orchestrator would), so the story can only pass if every service
recovers its place exactly: no credit lost, none doubled, no message sent twice.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.ops.supervisor import ServiceFailedError, Supervisor

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ChaosLog:
    kills: list[str] = field(default_factory=list)
    broker_restarts: int = 0
    errors: list[str] = field(default_factory=list)


def restart_local_broker() -> None:
    """Restart the local stack's Kafka broker (SIGTERM, start, wait until it takes transactions)."""
    subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "localstack.py"), "restart-kafka"],
        check=True,
        timeout=180,
    )


class ChaosMonkey:
    """Kills each victim once per round, in random order, with random gaps, until stopped."""

    def __init__(
        self,
        supervisor: Supervisor,
        victims: Sequence[str],
        *,
        seed: int,
        min_gap_s: float = 4.0,
        max_gap_s: float = 12.0,
        restart_broker_after_kills: int | None = 3,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self._supervisor = supervisor
        self._random = random.Random(seed)
        self._gaps = (min_gap_s, max_gap_s)
        self._broker_after = restart_broker_after_kills
        self._say = on_event or (lambda _m: None)
        self._stop = threading.Event()
        self._pause = threading.Lock()
        self.log = ChaosLog()
        self.victims = list(victims)
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=240)

    def finish_round(self, timeout_s: float = 300.0) -> bool:
        """Wait until every victim has been killed at least once (and the broker restarted,
        when asked), so a short story still sees each service die; then stop."""

        def done() -> bool:
            broker = self._broker_after is None or self.log.broker_restarts > 0
            return broker and set(self.victims) <= set(self.log.kills)

        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.5)
        self.stop()
        return done()

    def _run(self) -> None:
        order: list[str] = []
        while not self._stop.wait(self._random.uniform(*self._gaps)):
            if not order:  # every service dies once per round, in a random order
                order = self._random.sample(self.victims, len(self.victims))
            victim = order.pop()
            try:
                self._supervisor.kill(victim)
                self.log.kills.append(victim)
                self._say(f"[magenta]chaos: kill -9 {victim}[/]")
                self._supervisor.start(victim)
                self._say(f"[magenta]chaos: {victim} restarted[/]")
                if self._broker_after is not None and len(self.log.kills) == self._broker_after:
                    self._say("[magenta]chaos: restarting the Kafka broker[/]")
                    restart_local_broker()
                    self.log.broker_restarts += 1
                    self._say("[magenta]chaos: the Kafka broker is back[/]")
            except (ServiceFailedError, subprocess.SubprocessError, OSError) as exc:
                self.log.errors.append(f"{victim}: {exc}")
                self._say(f"[red]chaos: {exc}[/]")
