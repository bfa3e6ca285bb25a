"""What a demo server is: the pipelines it offers, the longest clip it makes, where it listens.

Its own module so that the page (:mod:`.app`), the generation behind it (:mod:`.clips`) and the
command line (:mod:`.command`) share one typed description and none imports another for it.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from cadenza.plugins.workflows.demo import DEFAULT_HOST, DEFAULT_MAX_SECONDS, DEFAULT_PORT


@attrs.frozen
class DemoConfig:
    """``pipeline`` is selected when the page opens and is one of ``pipelines`` (the choices: preset
    names or spec files); clips (WAV, JSON sidecar, PNG) are written into ``out_dir``."""

    pipeline: str
    pipelines: tuple[str, ...]
    out_dir: Path = attrs.field(converter=Path)
    max_seconds: float = DEFAULT_MAX_SECONDS
    device: str = "cpu"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
