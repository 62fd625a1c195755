"""``python -m services.detector worker`` (also ``social-loyalty detector ...``).

Settings come from the environment: ``KAFKA_*``, ``DATABASE_URL``, ``TOPIC_PREFIX`` and
``DETECTOR_*`` (see ``services/detector/settings.py`` and docs/detector.md).
"""

from __future__ import annotations

import typer

detector_app = typer.Typer(
    name="detector",
    help="Turn snapshots into domain events: social.snapshots -> social.events.",
    no_args_is_help=True,
    add_completion=False,
)


@detector_app.command()
def worker(
    loglevel: str = typer.Option("info", help="Log level of the Faust worker."),
) -> None:
    """Run the Faust worker: social.snapshots -> social.events (stops cleanly on SIGTERM).

    Reads DETECTOR_APP_ID (consumer group, default TOPIC_PREFIX +
    social-loyalty.detector; its internal topics must exist: `topics ensure`),
    DETECTOR_STORE (rocksdb:// or memory://), DETECTOR_DATA_DIR, DETECTOR_WORKER_PORT
    (health and metrics, default 6066).
    """
    import faust

    from services.detector.app import TopicLayoutError, create_app
    from services.runtime import kafka

    kafka.for_command_line(False)  # a service: its clients log and wait as services do

    try:
        detector = create_app()
    except TopicLayoutError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        faust.Worker(detector.app, loglevel=loglevel, quiet=True).execute_from_commandline()
    finally:
        detector.close()


def main() -> None:
    detector_app()
