"""The local stack's first run on a fresh machine, with the real Kafka tools."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

_FORMAT = """
import sys
sys.path.insert(0, "deploy")
import localstack as ls
ls.ensure_kafka_jars()
ls.KAFKA_DIR.mkdir(parents=True, exist_ok=True)
(ls.KAFKA_DIR / "cluster.id").write_text("-n0BfeXzQMeFYyXO3F-Oqw")
ports = ls.Ports(kafka=39092, controller=39093, postgres=39432)
ls.format_kafka_storage(ls.kafka_properties(ports))
print((ls.KAFKA_DIR / "data" / "meta.properties").read_text())
"""


def test_a_cluster_id_that_starts_with_a_dash_formats(tmp_path: Path) -> None:
    """A KRaft cluster id is a random base64url UUID: 1 fresh stack in 64 got one
    starting with "-", which Kafka's argument parser took for an option, and the
    stack did not start. Formatted with the real StorageTool here."""
    done = subprocess.run(
        [sys.executable, "-c", _FORMAT],
        cwd=REPO,
        env={**os.environ, "SL_STACK_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cluster.id=-n0BfeXzQMeFYyXO3F-Oqw" in done.stdout
