"""Registers the pipeline presets that ship inside the package (``plugins/presets/*.yaml``).

Presets are registered through the same hook a third-party package would use to ship its own.
"""

from __future__ import annotations

from pathlib import Path

from cadenza.core.hookspecs import hookimpl

PRESETS_DIR = Path(__file__).parent

DESCRIPTIONS = {
    "default": "the bundled trained cascade: MiniLM caption embedding, music-features semantic stage, spectral-codec "
               "coarse and fine (small, CPU-trained; docs/benchmarks/default_model.md)",
    "tiny-random": "3-stage MusicLM-style cascade (semantic, coarse, fine), tiny and untrained: noise, for plumbing",
    "tiny-musicgen": "1-stage MusicGen-style cascade (all codebooks, cross-attention), tiny and untrained: noise",
    **{f"musicgen-{size}": f"MusicGen {size}, the published weights (facebook/musicgen-{size}; fetch once with "
                           f"`cadenza download musicgen-{size}`)" for size in ("small", "medium", "large")},
    "musicgen-melody": "MusicGen melody, the published weights (facebook/musicgen-melody): text and --melody's "
                       "chroma; fetch once with `cadenza download musicgen-melody`",
}


@hookimpl
def register_pipelines(register):
    for path in sorted(PRESETS_DIR.glob("*.yaml")):
        register(path.stem, path, description=DESCRIPTIONS.get(path.stem, ""))
