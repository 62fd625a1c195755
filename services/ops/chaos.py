"""Chaos for the demo story: ``kill -9`` services at random moments, restart the broker once;
and, on a cluster of three brokers, the failover drill (a coordinating broker and one
worker of each service lost mid-story).

The monkey runs beside the story; each kill is followed by a restart of the same
service (as an orchestrator would), so the story can only pass if every service
recovers its place exactly: no credit lost, none doubled, no message sent twice.
"""

from __future__ import annotations

import json
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from services.contracts.topics import REASSIGN_TOOL
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

    def wait_ready(self, name: str) -> None:
        """Until ``name`` answers its readiness check (after a kill, its restart)."""
        self._supervisor.wait_ready(name)

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


# ------------------------------------------------------------------------ failover


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode`` (31-polynomial over UTF-16 units, 32-bit wrap), as the
    broker computes it to place a group or a transactional id on a coordinator."""
    value = 0
    encoded = text.encode("utf-16-be")
    for i in range(0, len(encoded), 2):
        value = (31 * value + int.from_bytes(encoded[i : i + 2], "big")) & 0xFFFFFFFF
    return value


def coordinator_partition(key: str, partitions: int) -> int:
    """The partition of ``__consumer_offsets`` / ``__transaction_state`` that holds ``key``:
    ``Utils.abs(key.hashCode()) % partitions`` (Kafka's group and transaction
    coordinators); the partition's leader is the key's coordinator. ``Utils.abs`` is
    ``Math.abs`` with ``Integer.MIN_VALUE`` mapped to 0, not a mask of the sign bit."""
    signed = java_string_hash(key)
    signed -= (signed >= 2**31) * 2**32
    return (0 if signed == -(2**31) else abs(signed)) % partitions


@dataclass(frozen=True)
class Coordinators:
    """Which broker coordinates a consumer group, and each of its transactional ids."""

    group: int
    transactions: dict[str, int]

    def roles_of(self, broker: int) -> list[str]:
        roles = ["group coordinator"] * (self.group == broker)
        return roles + [
            f"transaction coordinator of {tid}"
            for tid, leader in sorted(self.transactions.items())
            if leader == broker
        ]


def find_coordinators(
    admin: Any, group: str, transactional_ids: Sequence[str], timeout: float = 30.0
) -> Coordinators:
    """The group's coordinator as the broker reports it (DescribeGroups), and each
    transactional id's from the leader of its ``__transaction_state`` partition."""
    described = admin.describe_consumer_groups([group], request_timeout=timeout)[group]
    group_coordinator = int(described.result(timeout).coordinator.id)
    state = admin.list_topics("__transaction_state", timeout=timeout).topics["__transaction_state"]
    count = len(state.partitions)
    transactions = {
        tid: int(state.partitions[coordinator_partition(tid, count)].leader)
        for tid in transactional_ids
    }
    return Coordinators(group_coordinator, transactions)


def lead_transactions_from(
    admin: Any, broker: int, transactional_ids: Sequence[str], bootstrap: str
) -> None:
    """Make ``broker`` the transaction coordinator of every id in ``transactional_ids``:
    each id's ``__transaction_state`` partition gets ``broker`` as its first (preferred)
    replica, through Kafka's reassignment tool (the same replicas, reordered: no data
    moves), and a preferred leader election moves its leadership there."""
    from confluent_kafka import ElectionType, TopicPartition

    state = admin.list_topics("__transaction_state", timeout=30).topics["__transaction_state"]
    count = len(state.partitions)
    moves = {}
    for tid in transactional_ids:
        partition = coordinator_partition(tid, count)
        replicas = list(state.partitions[partition].replicas)
        if state.partitions[partition].leader != broker and broker in replicas:
            moves[partition] = [broker, *(r for r in replicas if r != broker)]
    if not moves:
        return
    plan = {
        "version": 1,
        "partitions": [
            {"topic": "__transaction_state", "partition": p, "replicas": r}
            for p, r in sorted(moves.items())
        ],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as out:
        json.dump(plan, out)
    try:
        local_stack(
            "kafka-tool",
            REASSIGN_TOOL,
            "--bootstrap-server",
            bootstrap,
            "--reassignment-json-file",
            out.name,
            "--execute",
        )
    finally:
        Path(out.name).unlink()
    partitions = [TopicPartition("__transaction_state", p) for p in sorted(moves)]
    deadline = time.monotonic() + 60
    while True:
        try:
            admin.elect_leaders(ElectionType.PREFERRED, partitions).result(30)
            return
        except KafkaException as exc:  # the reassignment may still be settling
            if time.monotonic() > deadline:
                raise RuntimeError(f"preferred leader election failed: {exc}") from exc
            time.sleep(1.0)


def local_stack(*args: str) -> None:
    """``deploy/localstack.py <args>`` on the stack ``SL_STACK_DIR`` names."""
    subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "localstack.py"), *args], check=True, timeout=300
    )


ACTIONS = ("kill_broker", "kill_workers", "restart_broker", "restart_workers")


@dataclass
class FailoverLog:
    broker: int | None = None
    broker_roles: list[str] = field(default_factory=list)
    broker_restarted: bool = False
    workers_killed: list[str] = field(default_factory=list)
    workers_restarted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class FailoverDrill:
    """A broker and a worker of each service lost mid-story, on a cluster of three.

    Driven by the story: after the changes of step ``kill_broker_at`` the broker that
    coordinates ``group`` (the rules workers' consumer group), made the coordinator of
    their transactional ids too (:func:`lead_transactions_from`), gets SIGKILL; after step
    ``kill_workers_at`` one worker of each service in ``workers`` is killed and held
    down, so the others take its partitions over; at ``restart_broker_at`` the broker
    starts again and at ``restart_workers_at`` the workers come back (all at once, as
    an orchestrator restarts them; by default in the same step, so they rejoin while the
    broker's JVM is still starting). ``finish`` does whatever the story's length left
    undone and waits for it all, the broker taking transactions again included. The
    story must still end with the undisturbed run's exact balances, events and messages.

    The actions run in order on a thread of their own. The story waits for each kill
    (and whatever ran before it), so the broker is down, and the workers held down,
    from their step on however slow the machine; it does not wait for the restarts, so
    its changes keep flowing (and are checked) while the broker's JVM starts and the
    workers rejoin their groups, as they would in production. Nothing waits on a fixed
    sleep. The broker to lose is made the transaction coordinator as soon as the drill
    starts (a JVM run of Kafka's reassignment tool and a leader election), and checked
    again just before its SIGKILL.
    """

    def __init__(
        self,
        supervisor: Supervisor,
        admin: Any,
        group: str,
        transactional_ids: Sequence[str],
        workers: Sequence[str],
        *,
        bootstrap: str,
        steps: tuple[int, int, int, int] = (2, 3, 5, 5),
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self._supervisor = supervisor
        self._admin = admin
        self._group = group
        self._bootstrap = bootstrap
        self._transactional_ids = list(transactional_ids)
        self.workers = list(workers)
        self._plan: dict[int, list[str]] = {}
        for step, action in zip(steps, ACTIONS, strict=True):
            self._plan.setdefault(step, []).append(action)
        self._broker_restart: threading.Thread | None = None
        self._done: set[str] = set()
        self._say = on_event or (lambda _m: None)
        self.log = FailoverLog()
        self._actions: queue.Queue[str] = queue.Queue()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="failover", daemon=True)
        self._thread.start()
        self._actions.put("arm")

    def after_changes(self, step: int) -> None:
        """Called by the story right after a step's changes, while they flow: the
        step's actions start (after any still running) and the story goes on."""
        for action in self._plan.get(step, []):
            self._schedule(action)

    def finish(self, timeout_s: float = 600.0) -> None:
        """Every action the story's length left undone, then wait until all are done."""
        for action in ACTIONS:
            self._schedule(action)
        self._actions.put("")
        deadline = time.monotonic() + timeout_s
        self._thread.join(timeout_s)
        if self._broker_restart is not None:
            self._broker_restart.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive() or (self._broker_restart and self._broker_restart.is_alive()):
            self.log.errors.append(f"the drill did not finish within {timeout_s:.0f}s")

    def stop(self) -> None:
        """No further action (Ctrl-C, a failed story); one under way runs to its end."""
        self._stopped.set()
        self._actions.put("")

    def _schedule(self, action: str) -> None:
        """Queue ``action``; a kill is waited for (after whatever is still running), so
        the broker is down, and the workers held down, from their step on."""
        if action not in self._done:
            self._done.add(action)
            self._actions.put(action)
            if action.startswith("kill_"):
                self._actions.join()

    def _run(self) -> None:
        while True:
            action = self._actions.get()
            try:
                if not action or self._stopped.is_set():
                    return
                getattr(self, f"_{action}")()
            except Exception as exc:  # on this thread an unrecorded error is lost
                self.log.errors.append(f"{action}: {exc}")
                self._say(f"[red]failover: {action} failed: {exc}[/]")
            finally:
                self._actions.task_done()

    def _coordinators(self) -> Coordinators:
        """The group's coordinator, made the transaction coordinator of the rules
        workers' ids too (a no-op when it already is): one broker holds both roles."""
        found = find_coordinators(self._admin, self._group, self._transactional_ids)
        lead_transactions_from(self._admin, found.group, self._transactional_ids, self._bootstrap)
        return find_coordinators(self._admin, self._group, self._transactional_ids)

    def _arm(self) -> None:
        try:
            found = self._coordinators()
        except (subprocess.SubprocessError, OSError, RuntimeError, KafkaException) as exc:
            self._say(f"[magenta]failover: coordinators not placed yet ({exc}); at the kill[/]")
            return
        self._say(
            f"[magenta]failover: broker {found.group} will be lost, for {self._group}: "
            f"{', '.join(found.roles_of(found.group))}[/]"
        )

    def _kill_broker(self) -> None:
        found = self._coordinators()
        self.log.broker = found.group
        self.log.broker_roles = found.roles_of(found.group)
        self._say(
            f"[magenta]failover: SIGKILL broker {found.group}, for {self._group}: "
            f"{', '.join(self.log.broker_roles)}[/]"
        )
        local_stack("kill-broker", str(found.group))

    def _kill_workers(self) -> None:
        for name in self.workers:
            self._supervisor.kill(name, hold=True)
            self.log.workers_killed.append(name)
            self._say(f"[magenta]failover: kill -9 {name} (held down)[/]")

    def _restart_workers(self) -> None:
        for name in self.workers:  # all started before any is waited for
            self._supervisor.start(name, wait=False)
        for name in self.workers:
            self._supervisor.wait_ready(name)
            self.log.workers_restarted.append(name)
            self._say(f"[magenta]failover: {name} is back[/]")

    def _restart_broker(self) -> None:
        """Start the broker on a thread of its own: its JVM takes half a minute to take
        transactions again, while the next action (the workers' restart) goes on."""
        broker = self.log.broker
        if broker is None:
            raise RuntimeError("no broker was killed")

        def restart() -> None:
            try:
                local_stack("start-broker", str(broker))
            except (subprocess.SubprocessError, OSError) as exc:
                self.log.errors.append(f"restart_broker: {exc}")
                self._say(f"[red]failover: restart_broker failed: {exc}[/]")
                return
            self.log.broker_restarted = True
            self._say(f"[magenta]failover: broker {broker} is back[/]")

        self._say(f"[magenta]failover: starting broker {broker}[/]")
        self._broker_restart = threading.Thread(target=restart, name="failover-broker", daemon=True)
        self._broker_restart.start()
