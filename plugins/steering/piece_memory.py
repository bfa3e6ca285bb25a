"""The ``piece-memory`` steering: later windows keep to the piece's opening (:mod:`cadenza.core.steering.piece_memory`).

The opening is the prime, and from the second window on the first window too. Every stage gets
a logit penalty on the token ids its stream did not use there, and where the conditioner can
embed audio the window's conditioning becomes the text's mixed with the opening's sound. A
first window without a prime has no opening and is unchanged; the sidecar records ``hold``
only for runs that had one (long-form or a prime).
"""

from __future__ import annotations

from typing import Any

from cadenza.core.components import BuildContext, Steering, SteeringRun, SteeringWindow
from cadenza.core.engine.longform import DECODE_MARGIN, decode_chunked, frames_before
from cadenza.core.steering.piece_memory import check_strength, hears_openings, memory_model, opening_conditioning


def conditioning_after_opening(cascade: Any, codes: Any, conditioning: Any, window: float) -> Any:
    """The conditioning of the windows after a piece's opening ``codes`` ``[B, Q, N]``: the text's
    mixed with the opening's audio embedding where the conditioner can embed audio (decoded in
    chunks of ``window`` seconds); else ``conditioning`` as it is, with nothing decoded."""
    if not hears_openings(cascade.conditioner, conditioning):
        return conditioning
    rate = cascade.frame_rates["acoustic"]
    audio = decode_chunked(cascade.tokenizer, codes, rate, cascade.sample_rate, frames_before(window, rate),
                           frames_before(DECODE_MARGIN, rate))
    return opening_conditioning(cascade.conditioner, conditioning, audio.to(cascade.device), cascade.sample_rate)


class PieceMemory(Steering):
    """Piece memory at logit penalty ``strength`` (0: off)."""

    def __init__(self, strength: float):
        self.strength = check_strength(strength)
        self.run: SteeringRun | None = None
        self.memory: dict[str, Any] = {}
        self.held: tuple[int, Any] | None = None  # (opening frames, the conditioning mixed with its sound)

    def plan(self, run: SteeringRun) -> None:
        self.run, self.memory, self.held = run, {}, None

    def window(self, window: SteeringWindow) -> None:
        if self.strength is None:
            return
        run = window.run
        opening = min(window.span.new, run.windows[0].end)  # what exists before the second window
        self.memory = {stream: window.history[stream][:, :, :frames_before(opening, rate)]
                       for stream, rate in run.cascade.frame_rates.items() if stream in window.history}
        codes = self.memory.get("acoustic")
        if codes is not None and codes.shape[2]:
            if self.held is None or self.held[0] != codes.shape[2]:
                self.held = (codes.shape[2], conditioning_after_opening(run.cascade, codes, window.conditioning,
                                                                        run.window_seconds))
            window.conditioning = self.held[1]

    def wrap(self, model: Any, stage: Any, window: SteeringWindow) -> Any:
        writes = stage.layout.writes
        before = self.memory.get(writes.stream)
        if self.strength is not None and before is not None and before.shape[2]:
            return memory_model(model, before[:, writes.start:writes.stop], self.strength)
        return model

    def describe(self, row: int) -> dict[str, Any]:
        run = self.run
        if self.strength is None or run is None or (len(run.windows) == 1 and not run.primed):
            return {}
        return {"hold": self.strength}


def build(config: Any, context: BuildContext | None = None) -> PieceMemory:
    return PieceMemory(config.strength)
