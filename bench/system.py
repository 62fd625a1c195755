"""System benchmark: link-to-credited latency through every service, and each service's peak memory.

It starts the whole system as the demo does (its own ``bench.`` namespace and
database, the same process list), loads the welcome offer, then links
``BENCH_LINKS`` (default 200) members through the link API, one every
``BENCH_LINK_GAP_S`` (0.05 s), and measures for each the time from the HTTP call
to the ``PointsCredited`` outcome (its Kafka timestamp, set when the actions
service published it): link API -> social.events -> rules (Faust, repartition by
member) -> loyalty.commands.bonus -> ledger in PostgreSQL -> loyalty.outcomes.
The target is p99 under 1 s. Peak memory is each process's VmHWM at the end.
Run: ``./run bench system`` (uses the demo's ports: stop a running demo first).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from confluent_kafka import KafkaError

from bench._stream import peak_rss_mib
from services.contracts import PointsCredited, make_codec
from services.contracts.topics import OUTCOMES, TopicSettings
from services.demo import namespace
from services.ops import kafka_access
from services.ops.supervisor import Supervisor
from services.ops.system import DEMO_VK_ID_CLIENT, Ports, groups_at, service_specs
from services.runtime import kafka
from services.runtime.access import AccessSettings, SignedAuth, ensure_credential
from services.runtime.settings import DatabaseSettings, KafkaSettings
from services.simulator import identity_client as idc

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "bench."
LINKS = int(os.environ.get("BENCH_LINKS", "200"))
GAP_S = float(os.environ.get("BENCH_LINK_GAP_S", "0.05"))


class Credits:
    """Records the Kafka timestamp of the first PointsCredited per member."""

    def __init__(self, settings: KafkaSettings, topics: TopicSettings) -> None:
        self.at: dict[str, float] = {}
        self._codec = make_codec(settings)
        self._topic = topics.name(OUTCOMES)
        self._consumer = kafka.consumer(settings, f"{PREFIX}latency")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._consumer.subscribe([self._topic])
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(500, 0.2):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(str(error))
                    continue
                record = self._codec.decode(message.value(), self._topic)
                if isinstance(record, PointsCredited):
                    self.at.setdefault(record.member_id, message.timestamp()[1] / 1000)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class System:
    """The whole system under a supervisor in a fresh namespace, ready to be linked to."""

    supervisor: Supervisor
    ports: Ports
    env: dict[str, str]
    link_secret: str


@contextmanager
def running_system(
    prefix: str,
    state_dir: Path,
    workers: Mapping[str, int] | None = None,
    database: str = "social_loyalty_bench",
) -> Iterator[System]:
    """Reset ``prefix``'s topics and groups and the ``database``, load the welcome offer,
    start every service (``workers`` of each consuming service) as the demo does, with
    each service its own Kafka principal; stop them all on the way out."""
    kafka_settings, database_settings = KafkaSettings(), DatabaseSettings()
    topics = TopicSettings(prefix=prefix)
    state_dir = namespace.reset_state_dir(state_dir)
    database_url = namespace.reset_database(database_settings, database)
    namespace.reset_kafka(kafka_settings, topics)
    env = {**os.environ, "DATABASE_URL": database_url, "TOPIC_PREFIX": prefix}
    offers_dir = state_dir / "offers"
    offers_dir.mkdir()
    welcome = ROOT / "deploy" / "demo" / "offers" / "welcome.yaml"
    (offers_dir / "welcome.yaml").write_text(welcome.read_text())
    namespace.load_offers(env, offers_dir)
    ports = Ports.from_env()
    specs = service_specs(
        prefix=prefix,
        state_dir=state_dir,
        groups_file=groups_at(ROOT / "deploy" / "demo" / "groups.yaml", ports, state_dir),
        ports=ports,
        kafka_logins=kafka_access.system_logins(kafka_settings, prefix),
        workers=workers,
    )
    # The Personal Account's signed API credential (the link API refuses anonymous calls).
    secret = ensure_credential(
        database_url, AccessSettings().db_schema, "bench-personal-account", ["links:write"]
    )
    with Supervisor(specs, state_dir / "logs", env=env) as supervisor:
        supervisor.start_all()
        yield System(supervisor, ports, env, secret)


def link_latencies(system: System, credits: Credits, count: int, tag: str) -> list[float]:
    """Link ``count`` members (plus one warm-up) through the link API, one every
    ``GAP_S``; the seconds from each call to its ``PointsCredited``."""
    sent: dict[str, float] = {}
    simulator = f"http://127.0.0.1:{system.ports.simulator}"
    with httpx.Client(auth=SignedAuth(system.link_secret)) as http:
        # One warm-up link so first-use costs (connections, JIT of the offer) are not counted.
        for n in range(count + 1):
            member = f"{tag}-{n}"
            # The VK ID code + PKCE verifier, as the member's browser gets them; the
            # clock starts when the Personal Account calls the link API with them.
            proof = idc.vk_id_proof_sync(simulator, 900_000 + n, DEMO_VK_ID_CLIENT)
            sent[member] = time.time()
            answer = http.post(
                f"http://127.0.0.1:{system.ports.link}/v1/links",
                json={"member_id": member, "proof": proof},
                timeout=30,
            )
            answer.raise_for_status()
            if n == 0:
                wait_credited(credits, {member}, 120)
            time.sleep(GAP_S)
    wait_credited(credits, set(sent), 120)
    return [credits.at[m] - sent[m] for m in sent if m != f"{tag}-0"]


def run() -> list[dict[str, object]]:
    topics = TopicSettings(prefix=PREFIX)
    with running_system(PREFIX, ROOT / "deploy" / ".local" / "bench") as system:
        credits = Credits(KafkaSettings(), topics)
        credits.start()
        try:
            latencies = link_latencies(system, credits, LINKS, "bench")
        finally:
            credits.stop()
        peaks = {name: peak_rss_mib(pid) for name, pid in system.supervisor.pids().items()}
    rows: list[dict[str, object]] = [
        {
            "figure": "link -> points credited, p50",
            "value": f"{statistics.median(latencies) * 1000:.0f} ms",
        },
        {
            "figure": "link -> points credited, p99",
            "value": f"{percentile(latencies, 0.99) * 1000:.0f} ms",
        },
        {"figure": "link -> points credited, max", "value": f"{max(latencies) * 1000:.0f} ms"},
        {"figure": "links measured", "value": f"{len(latencies)} of {LINKS}"},
    ]
    rows += [
        {"figure": f"peak RSS {name}", "value": f"{peak:.0f} MiB" if peak else "?"}
        for name, peak in peaks.items()
    ]
    return rows


def wait_credited(credits: Credits, members: set[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if members <= credits.at.keys():
            return
        time.sleep(0.1)
    missing = sorted(members - credits.at.keys())
    raise RuntimeError(f"{len(missing)} links were never credited, e.g. {missing[:3]}")
