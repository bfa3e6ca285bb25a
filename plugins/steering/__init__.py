"""The built-in steering: ``melody``, ``beat-grid`` and ``piece-memory``.

They register through ``register_steering``, the hook a third party's steering uses, and the
command line reaches them only through the registry (``Cascade.steering`` turns ``--melody``,
``--hold``, ``--beat``, ``--bpm``, ``output.hold`` and ``output.beat`` into them), so a new
steering idea is a plugin, not an edit of the cascade. This module holds their configs and
the registration and imports no torch; each component is a small class in its own module
driving an algorithm of :mod:`cadenza.core.steering` (melody tokens, the beat grid's pulse,
piece memory's penalty), which stay in core because the melody is part of the contract (a
melody source returns one) and because the command line checks their options without
building anything.
"""

from __future__ import annotations

from typing import Any

import attrs

from cadenza.core.hookspecs import hookimpl


@attrs.frozen
class MelodySteeringConfig:
    """``melody``: a :class:`cadenza.core.steering.melody.Melody`, or one per prompt (all or none).
    ``strength``: None forces the melody's semantic tokens; a number > 0 is a logit bonus toward
    them instead (guided). A stage conditioned by a melody's sound (MusicGen-melody) hears it."""

    melody: Any = None
    strength: float | None = None


@attrs.frozen
class BeatGridConfig:
    """``strength``: the logit scale on onset tokens (0: off); ``bpm``: the tempo to hold from the
    first frame, or None for the tempo of the piece's first 10 s."""

    strength: float = 8.0
    bpm: float | None = None


@attrs.frozen
class PieceMemoryConfig:
    """``strength``: the logit penalty on the token ids the piece's opening did not use (0: off)."""

    strength: float = 4.0


@hookimpl
def register_steering(register):
    register("melody", "cadenza.plugins.steering.melody:build", config=MelodySteeringConfig, needs_weights=False,
             description="follow a melody: its semantic tokens forced or guided, or its sound for MusicGen-melody")
    register("beat-grid", "cadenza.plugins.steering.beat_grid:build", config=BeatGridConfig, needs_weights=False,
             description="hold one tempo: onset tokens steered onto a given or the opening's beat")
    register("piece-memory", "cadenza.plugins.steering.piece_memory:build", config=PieceMemoryConfig,
             needs_weights=False, description="keep to the opening: unused token ids penalised, its sound mixed "
             "into the conditioning")
