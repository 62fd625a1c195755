"""``python -m bench [NAME ...]``: run the named benchmarks (all when none is named).

A benchmark is a module ``bench/<name>.py`` with either ``run() -> list[dict[str, object]]``
(this prints the rows as a table) or ``main()`` (it prints its own), so adding one needs
no change here."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    return sorted(
        module.name
        for module in pkgutil.iter_modules([str(Path(__file__).parent)])
        if not module.name.startswith("_")
    )


def print_table(title: str, rows: list[dict[str, object]]) -> None:
    if not rows:
        print(f"{title}: no rows")
        return
    columns = list(rows[0])
    cells = [
        [f"{row[c]:,.0f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        for row in rows
    ]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def main(argv: list[str]) -> int:
    if {"-h", "--help"} & set(argv):
        print(f"usage: python -m bench [NAME ...]\n\n{__doc__}")
        print(f"\nbenchmarks: {', '.join(available())}")
        return 0
    names = argv or available()
    unknown = [name for name in names if name not in available()]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {available()}", file=sys.stderr)
        return 2
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        if hasattr(module, "run"):
            print_table(f"bench {name}", module.run())
        else:
            print(f"\nbench {name}")
            module.main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
