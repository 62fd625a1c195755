"""Copies ../*.avsc (the repository's schemas) and ../history/v*/*.avsc (the released
versions) into the wheel, under the package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import (  # type: ignore[import-not-found]
    BuildHookInterface,
)


class SchemasHook(BuildHookInterface):  # type: ignore[misc]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        found = sorted(Path(self.root).parent.glob("*.avsc"))
        if not found:
            raise RuntimeError(f"no .avsc files next to {self.root}: build from the repository")
        for path in found:
            build_data["force_include"][str(path)] = f"social_loyalty_schemas/avsc/{path.name}"
        # Released versions: social.events is kept forever, old values name old schemas.
        for path in sorted(Path(self.root).parent.glob("history/v*/*.avsc")):
            target = f"social_loyalty_schemas/avsc/history/{path.parent.name}/{path.name}"
            build_data["force_include"][str(path)] = target
