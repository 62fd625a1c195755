"""Wiring: settings -> migrations -> one thread per consumer -> read API.

Threads, not processes: every consumer spends its time waiting on PostgreSQL,
librdkafka or a provider (all release the GIL), one process is one unit for a
supervisor to start, stop and kill, and one ``/metrics`` shows all four. To scale
out, start more processes (``--only bonus`` on another host): the consumer groups
spread the partitions, and the stored-offset compare-and-set fences a zombie.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from services.actions.bonus import BonusHandler
from services.actions.channels import senders
from services.actions.consumers import CommandHandler, worker
from services.actions.counters import CounterHandler
from services.actions.mailing import MailingHandler
from services.actions.notify import NotifyHandler
from services.actions.schema import migrate
from services.actions.settings import ActionsSettings
from services.actions.templates import TemplateStore
from services.contracts.codec import make_codec
from services.runtime.db import connect

log = logging.getLogger(__name__)

CONSUMERS = ("bonus", "notify", "mailing", "counter")


def build_handler(name: str, settings: ActionsSettings, templates: TemplateStore) -> CommandHandler:
    if name == "bonus":
        return BonusHandler(settings.deduct_policy)
    if name == "notify":
        return NotifyHandler(settings, templates, senders(settings))
    if name == "mailing":
        return MailingHandler()
    if name == "counter":
        return CounterHandler()
    raise ValueError(f"unknown consumer {name!r}; choose from {', '.join(CONSUMERS)}")


def run(
    settings: ActionsSettings,
    only: Sequence[str] = CONSUMERS,
    *,
    stop: threading.Event | None = None,
    serve_http: bool = True,
) -> int:
    """Run the chosen consumers until ``stop``; returns a process exit code."""
    from services.actions.ledger_api import create_api_app
    from services.runtime.checkpoint import exit_code
    from services.runtime.httpapi import serve_api_in_thread
    from services.runtime.kafka import check_reachable
    from services.runtime.startup import Startup

    stop = stop or threading.Event()
    templates = TemplateStore.from_dir(settings.templates_dir)

    def prepare() -> bool:
        check_reachable(settings.kafka)
        with connect(settings.database, autocommit=True) as conn:
            migrate(conn, settings.db_schema)
        return True

    # started (again) while PostgreSQL or Kafka is away: wait for them, do not exit
    if not Startup("actions", stop).until_up(prepare):
        return 0
    codec = make_codec(settings.kafka)
    consumers = [
        worker(settings, build_handler(name, settings, templates), codec, stop) for name in only
    ]
    threads = [
        threading.Thread(target=c.run, name=f"actions.{c.handler.name}", daemon=True)
        for c in consumers
    ]

    def ready() -> str | None:
        dead = [t.name for t in threads if not t.is_alive()]
        if dead:
            return f"stopped: {', '.join(dead)}"
        reasons = [f"{c.handler.name}: {why}" for c in consumers if (why := c.not_ready())]
        return "; ".join(reasons) or None

    server = (
        serve_api_in_thread(create_api_app(settings, ready), settings.host, settings.port)
        if serve_http
        else None
    )
    for thread in threads:
        thread.start()
    log.info("actions running: %s", ", ".join(only))
    code = 0
    try:
        while not stop.wait(1.0):
            if any(not t.is_alive() for t in threads):
                log.error("a consumer thread stopped unexpectedly; shutting down")
                failures = [c.failure for c in consumers if c.failure is not None]
                code = max((exit_code(f) for f in failures), default=1)
                stop.set()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        if server is not None:
            server.stop()
    return code
