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
cluster = ls.Cluster(ls.Ports(kafka=39092, controller=39093, postgres=39432), brokers=1)
node = cluster.nodes[0]
creds = ls.kafka_credentials()
ls.format_kafka_storage(node, ls.kafka_properties(cluster, node, creds), creds)
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


_PRE_SASL = """
import sys
sys.path.insert(0, "deploy")
import localstack as ls
(ls.KAFKA_DIR / "data").mkdir(parents=True)
(ls.KAFKA_DIR / "data" / "meta.properties").write_text("cluster.id=x")
assert ls.formatted_without_scram()
ls.upgrade_pre_sasl_storage()
assert not (ls.KAFKA_DIR / "data").exists()
creds = ls.kafka_credentials()
assert not ls.formatted_without_scram()
assert oct(ls.CREDENTIALS_FILE.stat().st_mode & 0o777) == "0o600"
assert ls.kafka_credentials() == creds  # kept for the stack dir
"""


def test_a_stack_formatted_before_sasl_is_recreated_with_a_log_line(tmp_path: Path) -> None:
    """Storage formatted without the admin SCRAM user cannot serve the SASL listener:
    ``start`` says so and drops it (no broker needed to see that)."""
    done = subprocess.run(
        [sys.executable, "-c", _PRE_SASL],
        cwd=REPO,
        env={**os.environ, "SL_STACK_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "formatted before the stack had SASL/SCRAM" in done.stdout
