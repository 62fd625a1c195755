"""``services/contracts`` is the contract other teams use: it must work without the rest
of the system, so it imports nothing from ``services/`` outside itself."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CONTRACTS = REPO / "services" / "contracts"


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an ``import`` or ``from ... import`` names, at any depth (functions,
    ``if TYPE_CHECKING:`` blocks included)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def outside_imports(source: str, filename: str) -> list[str]:
    return [
        f"{filename}:{line}: {module}"
        for line, module in sorted(_imported(ast.parse(source, filename)))
        if module.startswith("services")
        and not module.startswith("services.contracts")
        and module != "services"
    ]


def test_no_module_of_the_contract_imports_the_rest_of_the_system() -> None:
    problems = [
        problem
        for path in sorted(CONTRACTS.rglob("*.py"))
        for problem in outside_imports(path.read_text(), str(path.relative_to(REPO)))
    ]
    assert problems == []


def test_the_check_sees_imports_in_functions_and_type_checking_blocks() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from services.runtime.settings import KafkaSettings\n"
        "def f():\n    import services.ops.system\n"
        "from services import runtime\n"
        "from services.contracts import models\n"
    )
    assert outside_imports(source, "x.py") == [
        "x.py:3: services.runtime.settings",
        "x.py:3: services.runtime.settings.KafkaSettings",
        "x.py:5: services.ops.system",
        "x.py:6: services.runtime",
    ]


def test_importing_the_contract_loads_nothing_else_of_the_system() -> None:
    modules = sorted(
        p.relative_to(REPO).with_suffix("").as_posix().replace("/", ".")
        for p in CONTRACTS.glob("*.py")
    )
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print('\\n'.join(m for m in sys.modules if m.startswith('services.')"
        " and not m.startswith('services.contracts')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []
