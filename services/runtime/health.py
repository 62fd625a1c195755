"""Whether the things a service needs are reachable now: PostgreSQL, the brokers.

A service's loop learns of an outage only when it next touches the dependency, and
librdkafka reports a broker that refuses connections through its error callback, not
through ``consume()``; a broker that hangs (SIGSTOP, a partitioned network) says
nothing at all until ``socket.timeout.ms`` (60 s). So readiness does not wait to be
told: :class:`Dependencies` probes each dependency on a thread of its own every
``interval_s`` with a short timeout of its own, and ``/readyz`` turns false within
``interval_s + timeout_s`` of an outage and true at the first probe that answers
after it.

A probe that hangs longer than its timeout counts as down too (its thread is still
blocked: the last answer is too old), so even a client call without a timeout of
its own cannot keep the service green.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import psycopg
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from services.runtime import kafka
from services.runtime.settings import DatabaseSettings, KafkaSettings

log = logging.getLogger(__name__)

Probe = Callable[[], None]
"""Raises when the dependency does not answer within the probe's own timeout."""

INTERVAL_S = 1.0
TIMEOUT_S = 2.0


@dataclass
class _State:
    down: str | None = "not probed yet"
    answered: float = 0.0


class Dependencies:
    """Probes each named dependency on a daemon thread; :meth:`not_ready` names the
    first one that is down (``None``: every one answered recently)."""

    def __init__(
        self,
        probes: Mapping[str, Probe],
        *,
        interval_s: float = INTERVAL_S,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self._probes = dict(probes)
        self.interval_s, self.timeout_s = interval_s, timeout_s
        self._states = {name: _State() for name in self._probes}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Dependencies:
        """Start probing (idempotent); returns ``self``."""
        if self._threads:
            return self
        for name, probe in self._probes.items():
            thread = threading.Thread(
                target=self._run, args=(name, probe), name=f"probe-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self, name: str, probe: Probe) -> None:
        state = self._states[name]
        while not self._stop.is_set():
            try:
                probe()
            except Exception as exc:  # any failure of the probe means "not reachable"
                reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:200]
                if state.down is None:
                    log.warning("%s is unreachable: %s", name, reason)
                state.down = reason
            else:
                if state.down is not None and state.answered:
                    log.info("%s answers again", name)
                state.down, state.answered = None, time.monotonic()
            self._stop.wait(self.interval_s)

    def down(self) -> dict[str, str]:
        """Each dependency that is down now, with why."""
        now = time.monotonic()
        stale = self.interval_s + self.timeout_s + 1.0
        result: dict[str, str] = {}
        for name, state in self._states.items():
            if state.down is not None:
                result[name] = state.down
            elif now - state.answered > stale:
                result[name] = f"no answer for {now - state.answered:.0f}s"
        return result

    def not_ready(self) -> str | None:
        down = self.down()
        if not down:
            return None
        return "; ".join(f"{name} unreachable ({why})" for name, why in down.items())


def postgres_probe(settings: DatabaseSettings, timeout_s: float = TIMEOUT_S) -> Probe:
    """``SELECT 1`` on a connection of the probe's own (opened again after a failure),
    bounded by ``connect_timeout`` and a TCP user timeout, so a server that hangs
    fails the probe instead of blocking it."""
    holder: list[psycopg.Connection] = []
    url = settings.database_url.get_secret_value()
    millis = int(timeout_s * 1000)

    def probe() -> None:
        if not holder or holder[0].closed or holder[0].broken:
            holder.clear()
            holder.append(
                psycopg.connect(
                    url,
                    autocommit=True,
                    connect_timeout=max(1, int(timeout_s)),
                    options=f"-c statement_timeout={millis}",
                    tcp_user_timeout=millis,
                    keepalives=1,
                    keepalives_idle=1,
                    keepalives_interval=1,
                    keepalives_count=1,
                    application_name="readiness-probe",
                )
            )
        try:
            holder[0].execute("SELECT 1")
        except psycopg.Error:
            holder[0].close()
            holder.clear()
            raise

    return probe


class BrokerProbe:
    """A metadata request with its own short timeout, plus librdkafka's error callback
    (``error_cb``: give it to a client's config too), which reports every broker
    refusing connections (``_ALL_BROKERS_DOWN``) before any call times out."""

    def __init__(
        self, settings: KafkaSettings, topic: str | None = None, timeout_s: float = TIMEOUT_S
    ) -> None:
        self._settings, self._topic, self._timeout_s = settings, topic, timeout_s
        self._client: AdminClient | None = None
        self._failures = 0
        self.all_down: str | None = None

    def error_cb(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.all_down = error.str()

    def __call__(self) -> None:
        if self._client is None:
            config = {**kafka.base_config(self._settings, "readiness-probe"), "log_level": 0}
            config["error_cb"] = self.error_cb
            self._client = AdminClient(config)
        try:
            metadata = self._client.list_topics(self._topic, timeout=self._timeout_s)
        except KafkaException as exc:
            self._failures += 1
            if self._failures % 3 == 0:
                # a client whose connections wedged while the broker hung stays failing
                # after it is back: a fresh one tells the broker's state, not its own
                self._client = None
            raise ConnectionError(f"no metadata within {self._timeout_s:.0f}s: {exc}") from exc
        self._failures = 0
        if not metadata.brokers:
            raise ConnectionError("the cluster lists no broker")
        self.all_down = None


def probes(
    *, database: DatabaseSettings | None = None, kafka_settings: KafkaSettings | None = None
) -> dict[str, Probe]:
    """The probes of the dependencies given, named as ``/readyz`` says them."""
    found: dict[str, Probe] = {}
    if database is not None:
        found["PostgreSQL"] = postgres_probe(database)
    if kafka_settings is not None:
        found["Kafka"] = BrokerProbe(kafka_settings)
    return found
