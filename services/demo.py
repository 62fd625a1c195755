"""The main job: ``./run demo``.

Today it shows the stack is healthy (Kafka accepts a transactional produce,
PostgreSQL a connection); the full story is built on top of this."""

from __future__ import annotations

import sys

from services.runtime import kafka
from services.runtime.db import DatabaseUnavailableError, connect
from services.runtime.settings import DatabaseSettings, KafkaSettings


def main() -> int:
    kafka_settings = KafkaSettings()
    try:
        kafka.check_reachable(kafka_settings)
        with connect(DatabaseSettings()) as conn:
            conn.execute("SELECT 1")
    except (kafka.KafkaUnavailableError, DatabaseUnavailableError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    print(f"demo: Kafka at {kafka_settings.bootstrap_servers} and PostgreSQL are healthy.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
