"""What discovery found: one record per plugin, one per pipeline preset."""

from __future__ import annotations

from pathlib import Path

import attrs


@attrs.define
class PluginRecord:
    """A plugin as ``cadenza plugins`` shows it. ``error`` is set when it failed to load."""

    name: str
    module: str
    distribution: str = ""
    version: str = ""
    hooks: list[str] = attrs.Factory(list)
    components: list[str] = attrs.Factory(list)
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        return attrs.asdict(self)


@attrs.frozen
class PipelinePreset:
    """A named pipeline spec shipped by a plugin (usable wherever a spec path is)."""

    name: str
    path: Path
    description: str = ""
    plugin: str = ""
