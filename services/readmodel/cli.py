"""``python -m services.readmodel`` (also ``social-loyalty readmodel ...``).

Settings come from the environment: ``READMODEL_*`` (see ``settings.py``) and the shared
``KAFKA_*``, ``DATABASE_URL``, ``TOPIC_PREFIX``, ``ACCESS_*``.
"""

from __future__ import annotations

from services.runtime.skeleton import LogLevel, service_cli, start

readmodel_app = service_cli(
    "readmodel", "Who is a member of which group now: social.events -> PostgreSQL -> HTTP."
)


@readmodel_app.command()
def serve(loglevel: LogLevel = "info") -> None:
    """Consume social.events into PostgreSQL and serve the query API (port 8083).

    Reads READMODEL_GROUP (consumer group, offsets kept in PostgreSQL),
    READMODEL_DB_SCHEMA (default readmodel), READMODEL_HTTP_HOST, READMODEL_HTTP_PORT
    and READMODEL_BATCH. Stops on SIGTERM/SIGINT after the batch in hand.
    """
    from services.readmodel.read_model import run
    from services.readmodel.settings import ReadModelSettings
    from services.runtime.checkpoint import exit_process_on_restart
    from services.runtime.skeleton import load_settings

    start(loglevel)
    exit_process_on_restart()
    run(load_settings(ReadModelSettings))


def main() -> None:
    readmodel_app()
