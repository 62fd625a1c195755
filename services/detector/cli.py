"""``python -m services.detector worker`` (also ``social-loyalty detector ...``).

Settings come from the environment: ``DETECTOR_*`` (see ``services/detector/settings.py``
and docs/detector.md) and the shared ``KAFKA_*``, ``TOPIC_PREFIX``.
"""

from __future__ import annotations

import threading

import typer

from services.runtime.skeleton import LogLevel, service_cli, start

detector_app = service_cli(
    "detector", "Turn snapshots into domain events: social.snapshots -> social.events."
)


@detector_app.command()
def worker(loglevel: LogLevel = "info") -> None:
    """Run the Faust worker: social.snapshots -> social.events (stops cleanly on SIGTERM).

    Reads DETECTOR_APP_ID (consumer group, default TOPIC_PREFIX +
    social-loyalty.detector; its internal topics must exist: `topics ensure`),
    DETECTOR_STORE (rocksdb:// or memory://), DETECTOR_DATA_DIR, DETECTOR_WORKER_PORT
    (health and metrics, default 6066).
    """
    import faust

    from services.detector.app import TopicLayoutError, create_app
    from services.detector.settings import DetectorSettings
    from services.runtime.skeleton import load_settings, on_signals
    from services.runtime.startup import Startup

    start(loglevel)
    settings = load_settings(DetectorSettings)
    stop = threading.Event()
    on_signals(stop.set)  # Faust installs its own handlers once it runs
    try:
        # started (again) while the broker is away: wait for it rather than exit
        detector = Startup("detector", stop).until_up(lambda: create_app(settings))
    except TopicLayoutError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if detector is None:  # stopped while waiting
        return
    try:
        faust.Worker(detector.app, loglevel=loglevel, quiet=True).execute_from_commandline()
    finally:
        detector.close()


def main() -> None:
    detector_app()
