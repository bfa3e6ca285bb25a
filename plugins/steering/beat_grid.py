"""The ``beat-grid`` steering: the semantic stage keeps one tempo (:mod:`cadenza.core.steering.beat_grid`).

The pulse is ``bpm`` from the first frame (or where a prime's onsets put it at that tempo), or
without one the strongest pulse of the piece's first :data:`~cadenza.core.steering.beat_grid.OPENING`
seconds, read once, at the first window that starts after them, and held from there on. After
decoding, the pipeline's semantic tokenizer reads the audio again to record what it holds of
the grid (the sidecar's ``beat.heard``).
"""

from __future__ import annotations

from typing import Any

import torch

from cadenza.core.components import BuildContext, Steering, SteeringRun, SteeringWindow
from cadenza.core.steering.beat_grid import OPENING, beat_model, check_bpm, check_strength, hear_beats, piece_beats, \
    token_onsets


class BeatGrid(Steering):
    """The beat grid at logit scale ``strength`` (0: off), at ``bpm`` or the opening's tempo."""

    def __init__(self, strength: float, bpm: float | None = None):
        self.strength = check_strength(strength)
        self.bpm = check_bpm(bpm)
        self.run: SteeringRun | None = None
        self.onsets = self.beats = None
        self.heard: list = []
        self.start = 0.0  # seconds: where the grid began to steer

    def plan(self, run: SteeringRun) -> None:
        self.run, self.beats, self.heard, self.start, self.onsets = run, None, [], 0.0, None
        if self.strength is None:
            return
        cascade = run.cascade
        with torch.inference_mode(False):  # the semantic tokenizer may be built here: as a plain module
            tokenizer = cascade.semantic_tokenizer if "semantic" in cascade.frame_rates else None
            self.onsets = token_onsets(tokenizer, cascade.pipeline.spec.name).to(cascade.device)

    def window(self, window: SteeringWindow) -> None:
        if self.onsets is None or self.beats is not None:
            return
        if self.bpm is not None or window.span.new >= OPENING - 1e-9:
            rate = window.run.cascade.frame_rates["semantic"]
            self.beats = piece_beats(window.history, window.span.new, self.bpm, window.run.batch, self.onsets, rate)
            self.start = window.span.new

    def wrap(self, model: Any, stage: Any, window: SteeringWindow) -> Any:
        if self.beats and stage.layout.writes.stream == "semantic":
            return beat_model(model, self.onsets, self.beats, self.strength, offset=window.begins.get("semantic", 0))
        return model

    def finish(self, audio: torch.Tensor) -> None:
        if self.beats:
            cascade = self.run.cascade
            self.heard = hear_beats(cascade.semantic_tokenizer, cascade.pipeline.semantic_tokenizer.info.sample_rate,
                                    audio, cascade.sample_rate, self.onsets, cascade.frame_rates["semantic"],
                                    self.beats, self.start)

    def describe(self, row: int) -> dict[str, Any]:
        if not self.beats:
            return {}
        pulse = self.beats[row].describe(self.run.cascade.frame_rates["semantic"])
        return {"beat": {"strength": self.strength, **pulse, "heard": self.heard[row]}}


def build(config: Any, context: BuildContext | None = None) -> BeatGrid:
    return BeatGrid(config.strength, config.bpm)
