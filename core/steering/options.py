"""From the options users know to the steering a run gets: ``--melody`` (and a strength),
``--hold``, ``--beat`` and ``--bpm``, with the spec's ``output.hold`` and ``output.beat`` as
their defaults.

One function, so that the command line, a batch line, the demo and a notebook
(``Cascade.steering(...)``) mean the same by each option: None takes the spec's value, 0 turns
it off, and a tempo switches the beat grid on at
:data:`~cadenza.core.steering.beat_grid.DEFAULT_STRENGTH` where the spec has it off. The
components are the built-in ones of kind ``steering``, looked up by name in the registry as any
plugin's would be (the core never imports a plugin); the list is in the order they wrap a stage.
"""

from __future__ import annotations

from typing import Any

from cadenza.core.errors import InputError
from cadenza.core.steering.beat_grid import DEFAULT_STRENGTH, check_bpm
from cadenza.core.steering.beat_grid import check_strength as check_beat
from cadenza.core.steering.melody import check_strength as check_melody_strength
from cadenza.core.steering.piece_memory import check_strength as check_hold

MELODY, BEAT_GRID, PIECE_MEMORY = "melody", "beat-grid", "piece-memory"  # the built-ins' registered names


def beat_settings(spec_beat: float, beat: float | None, bpm: float | None) -> tuple[float | None, float | None]:
    """``(strength, bpm)`` of the beat grid: ``beat`` (None: the spec's) checked, and a given
    tempo switching the grid on at the default strength where the spec has it off."""
    bpm = check_bpm(bpm)
    strength = check_beat(spec_beat if beat is None else beat)
    if bpm is not None and strength is None:
        if beat is not None:
            raise InputError("a bpm needs the beat grid: beat 0 turns it off")
        strength = DEFAULT_STRENGTH
    return strength, bpm


def build_steering(registry: Any, name: str, **params: Any) -> Any:
    """The registered steering ``name`` built with its config made from ``params``."""
    entry = registry.get("steering", name)
    return entry.build(entry.config(**params))


def steering_list(registry: Any, output: Any, *, melody: Any = None, melody_strength: float | None = None,
                  hold: float | None = None, beat: float | None = None, bpm: float | None = None) -> list[Any]:
    """The steering of a run under the spec's ``output`` (its ``hold`` and ``beat``): a melody to
    follow (``melody``: a Melody or one per prompt; ``melody_strength`` None forces it, a number
    guides), the beat grid, piece memory; each only when it is on."""
    strength = check_melody_strength(melody_strength)
    grid, bpm = beat_settings(output.beat, beat, bpm)
    hold = check_hold(output.hold if hold is None else hold)
    steering = []
    if melody is not None:
        steering.append(build_steering(registry, MELODY, melody=melody, strength=strength))
    if grid is not None:
        steering.append(build_steering(registry, BEAT_GRID, strength=grid, bpm=bpm))
    if hold is not None:
        steering.append(build_steering(registry, PIECE_MEMORY, strength=hold))
    return steering
