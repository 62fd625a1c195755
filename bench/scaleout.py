"""Scale-out benchmark: the whole system with one and with two workers per service on a
cluster of three brokers, side by side in one run.

It starts three KRaft brokers of its own (``services/ops/localcluster.py``: a stack
directory of its own on free ports, replication 3 and ``min.insync.replicas=2``
everywhere, the main stack's PostgreSQL), then for each worker count in
``BENCH_SCALEOUT_WORKERS`` (default ``1,2``; rules, detector, actions and read model
each get that many processes):

* **latency**: ``BENCH_SCALEOUT_LINKS`` (default 100) members linked through the link
  API one every ``BENCH_LINK_GAP_S``; link-to-credited p50 and p99 (as ``bench system``);
* **throughput**: ``BENCH_SCALEOUT_EVENTS`` (default 20,000) ``ProfileLinked`` events of
  distinct members produced at once onto ``social.events``; events/s from the first
  produce to the last ``PointsCredited`` (rules, the bonus command, the ledger in
  PostgreSQL, the outcome: every step exactly once), against a raw confluent-kafka read
  of the same events in the same run (the ceiling) and a raw read of the outcomes.

Run: ``./run bench scaleout`` (uses the demo's ports: stop a running demo first). On a
two-core machine the second worker shares the same cores: the figure says what the
coordination costs, not what another machine would add (docs/capacity.md).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench._stream import cpu_seconds, produce_all, timed_read
from bench.system import Credits, link_latencies, percentile, running_system, wait_credited
from services.contracts import ProfileLinked, make_codec
from services.contracts.topics import EVENTS, OUTCOMES, TopicSettings
from services.ops.localcluster import start_cluster
from services.runtime.settings import DatabaseSettings, KafkaSettings

ROOT = Path(__file__).resolve().parents[1]
WORKERS = [int(n) for n in os.environ.get("BENCH_SCALEOUT_WORKERS", "1,2").split(",")]
LINKS = int(os.environ.get("BENCH_SCALEOUT_LINKS", "100"))
EVENTS_COUNT = int(os.environ.get("BENCH_SCALEOUT_EVENTS", "20000"))
SERVICES = ("rules", "detector", "actions", "readmodel")


def _burst(settings: KafkaSettings, topics: TopicSettings, tag: str) -> float:
    """Produce ``EVENTS_COUNT`` ProfileLinked events of new members; the wall time of the
    first produce."""
    codec = make_codec(settings)
    topic = topics.name(EVENTS)
    now = datetime.now(UTC)
    events = (
        ProfileLinked.build(
            network="vk",
            social_user_id=str(2_000_000 + n),
            member_id=f"{tag}-burst-{n}",
            registration=False,
            observed_at=now,
            snapshot_at=now,
        )
        for n in range(EVENTS_COUNT)
    )
    started = time.time()
    records = ((e.key().to_bytes(), codec.encode(e, topic)) for e in events)
    produce_all(settings, topic, records, f"bench-scaleout-{tag}")
    return started


def _broker_pids() -> dict[str, int]:
    """The cluster's brokers, from the pid files of its stack directory."""
    kafka_dir = Path(os.environ["SL_STACK_DIR"]) / "kafka"
    return {
        f"broker {path.parent.name}": int(path.read_text())
        for path in sorted(kafka_dir.glob("**/kafka.pid"))
    }


def _one(workers: int) -> dict[str, object]:
    prefix = f"bench.scaleout.w{workers}."
    topics = TopicSettings(prefix=prefix)
    settings = KafkaSettings()
    state = ROOT / "deploy" / ".local" / f"bench-scaleout-w{workers}"
    print(f"[scaleout] {workers} worker(s) per service: starting the system", flush=True)
    with running_system(prefix, state, workers=dict.fromkeys(SERVICES, workers)) as system:
        credits = Credits(settings, topics)
        credits.start()
        try:
            latencies = link_latencies(system, credits, LINKS, f"w{workers}")
            print(f"[scaleout] {workers}: {len(latencies)} links measured; burst", flush=True)
            tag = f"w{workers}"
            pids = {**system.supervisor.pids(), **_broker_pids()}
            before = {name: cpu_seconds(pid) or 0.0 for name, pid in pids.items()}
            started = _burst(settings, topics, tag)
            burst = {f"{tag}-burst-{n}" for n in range(EVENTS_COUNT)}
            wait_credited(credits, burst, 900)
            last = max(credits.at[m] for m in burst)
            used = {name: (cpu_seconds(pid) or 0.0) - before[name] for name, pid in pids.items()}
        finally:
            credits.stop()
        raw_events = timed_read(settings, topics.name(EVENTS), EVENTS_COUNT)
        raw_outcomes = timed_read(settings, topics.name(OUTCOMES), EVENTS_COUNT)
    through = EVENTS_COUNT / (last - started)
    return {
        "workers/service": workers,
        "link->credited p50": f"{statistics.median(latencies) * 1000:.0f} ms",
        "p99": f"{percentile(latencies, 0.99) * 1000:.0f} ms",
        "events/s end to end": through,
        "raw read events/s": EVENTS_COUNT / raw_events,
        "raw read outcomes/s": EVENTS_COUNT / raw_outcomes,
        "vs raw": f"{through / (EVENTS_COUNT / raw_events):.3f}",
        "CPU s during the burst (top 4)": ", ".join(
            f"{name} {seconds:.0f}"
            for name, seconds in sorted(used.items(), key=lambda item: -item[1])[:4]
        ),
        "burst s": f"{last - started:.0f}",
    }


def run() -> list[dict[str, object]]:
    database_url = DatabaseSettings().database_url.get_secret_value()
    stack_dir = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    print(f"[scaleout] starting three brokers in {stack_dir}", flush=True)
    cluster = start_cluster(stack_dir, database_url, brokers=3)
    saved = dict(os.environ)
    os.environ.update(cluster.env)  # every client below, and the services, use the cluster
    try:
        return [_one(workers) for workers in WORKERS]
    finally:
        os.environ.clear()
        os.environ.update(saved)
        cluster.stop()
