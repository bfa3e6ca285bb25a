"""How closely audio follows a melody: the correlation of its tracked pitch with the melody's.

Used to check melody steering (the test that pins it on the bundled default, and the benchmark
that chose the default's coarse guidance). The pitch tracker is the ``audio`` melody source's
YIN, so this measures what a listener's pitch would be, not which tokens were written.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cadenza.core.steering.melody import Melody, Note
from cadenza.plugins.melody.sources import yin

PROBE_PITCHES = (60, 62, 64, 67, 69, 72, 74, 76, 74, 72, 69, 67, 64, 62, 60, 64)
MIN_FRAMES = 10  # fewer frames where both have a pitch: the output follows nothing measurable


def contour_correlation(audio: torch.Tensor, sample_rate: int, melody: Melody) -> float:
    """Pearson correlation of ``audio``'s (``[C, S]``) tracked pitch with ``melody``'s pitch over
    the frames where both have one; 0 when the output has too little pitch (or none varies)."""
    pitch, frame_rate = yin(audio.float().mean(0), sample_rate)
    target = melody.contour(frame_rate, len(pitch))
    both = ~torch.isnan(pitch) & ~torch.isnan(target)
    if int(both.sum()) < MIN_FRAMES:
        return 0.0
    a, b = pitch[both].double().numpy(), target[both].double().numpy()
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def probe_tune(seconds: float) -> Melody:
    """Up an octave and back in 16 even notes over ``seconds``: a contour no prompt implies, so
    text alone correlates with it near 0 and any following comes from the melody."""
    step = seconds / len(PROBE_PITCHES)
    return Melody(tuple(Note(i * step, (i + 1) * step * 0.98, p, 100) for i, p in enumerate(PROBE_PITCHES)))


def follow_with_and_without(cascade: Any, prompt: str, seconds: float, seeds: list[int],
                            melody: Melody) -> tuple[list[float], list[float]]:
    """``cascade`` generates ``prompt`` for each seed twice, steered by ``melody`` and not:
    each output's :func:`contour_correlation` with the melody, ``(with_melody, text_only)``."""
    prompts = [prompt] * len(seeds)
    steered = cascade.generate(prompts, seconds=seconds, seed=seeds, steering=cascade.steering(melody=melody)).audio
    free = cascade.generate(prompts, seconds=seconds, seed=seeds).audio
    return ([contour_correlation(a, cascade.sample_rate, melody) for a in steered],
            [contour_correlation(a, cascade.sample_rate, melody) for a in free])
