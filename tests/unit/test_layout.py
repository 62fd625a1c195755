"""The tree reads like the data flow: every folder of ``services/`` is in the README's
table with docs that exist, each runnable one answers ``--help``, and no two modules
share a name unless they play the same part in their services."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "services"
FOLDERS = sorted(
    p.name
    for p in SERVICES.iterdir()
    if (p / "__init__.py").exists() or (p / "__main__.py").exists()
)
RUNNABLE = sorted(p.parent.name for p in SERVICES.glob("*/__main__.py"))

SAME_PART = {"__init__", "__main__", "cli", "settings"}
"""Names every service may have, for the same thing: its package, ``python -m``, its
command line (on ``services.runtime.skeleton``) and its settings class."""


def _readme_table() -> dict[str, list[str]]:
    """``services/<folder>`` -> the docs its row in the README's table names."""
    rows: dict[str, list[str]] = {}
    for line in (REPO / "README.md").read_text().splitlines():
        match = re.match(r"\|[^|]*\| `services/([a-z_]+)` \|(.*)\|\s*$", line)
        if match:
            rows[match.group(1)] = re.findall(r"`(docs/[a-z_]+\.md)`", match.group(2))
    return rows


def test_every_folder_is_a_step_in_the_readme_with_its_docs() -> None:
    table = _readme_table()
    assert sorted(table) == FOLDERS, "README's folder table and services/ differ"
    for folder, docs in table.items():
        for doc in docs:
            assert (REPO / doc).exists(), f"{folder}: {doc} does not exist"


def test_every_doc_is_named_by_a_folder() -> None:
    named = {doc for docs in _readme_table().values() for doc in docs}
    written = {f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")}
    # capacity and security cut across the services; the README links both.
    assert written - named <= {"docs/capacity.md"}, written - named


@pytest.mark.parametrize("name", RUNNABLE)
def test_every_service_explains_itself(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"services.{name}", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout, done.stdout


def test_no_two_modules_share_a_name_for_different_things() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path in SERVICES.rglob("*.py"):
        where[path.stem].append(str(path.relative_to(REPO)))
    repeated = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert set(repeated) <= SAME_PART, {n: repeated[n] for n in set(repeated) - SAME_PART}
