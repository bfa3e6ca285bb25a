"""Deterministic test audio: a few seconds of synthesised tones (no files, no downloads)."""

from __future__ import annotations

import math
from typing import Any

# An arpeggio (A minor: A3 C4 E4 A4), one note per quarter second, each row a fifth higher.
NOTES_HZ = (220.0, 261.63, 329.63, 440.0)
NOTE_SECONDS = 0.25


def synth_tones(sample_rate: int = 16000, seconds: float = 2.0, channels: int = 1, batch: int = 1,
                seed: int = 0) -> Any:
    """``[batch, channels, samples]`` float32 in [-1, 1]: plucked tones with two harmonics.

    Same arguments, same samples. Row ``b`` is transposed up ``b`` fifths; channel ``c`` is
    delayed by ``c`` milliseconds (a little stereo width); a quiet seeded noise floor (-60 dB)
    keeps it from being perfectly periodic. Peak about 0.5.
    """
    import torch

    if sample_rate < 1 or seconds <= 0 or channels < 1 or batch < 1:
        raise ValueError("sample_rate, seconds, channels and batch must be positive")
    length = max(1, round(seconds * sample_rate))
    t = torch.arange(length, dtype=torch.float64) / sample_rate
    note = (t / NOTE_SECONDS).floor().long() % len(NOTES_HZ)
    since_onset = t % NOTE_SECONDS
    envelope = torch.exp(-6.0 * since_onset) * (1 - torch.exp(-since_onset * 400.0))
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for b in range(batch):
        freq = torch.tensor(NOTES_HZ, dtype=torch.float64)[note] * (1.5 ** b)
        chans = []
        for c in range(channels):
            tc = t - c * 1e-3
            wave = sum(torch.sin(2 * math.pi * k * freq * tc) / k for k in (1, 2, 3))
            noise = torch.randn(length, generator=generator, dtype=torch.float64) * 1e-3
            chans.append(0.5 * envelope * wave / 1.84 + noise)
        rows.append(torch.stack(chans))
    return torch.stack(rows).clamp(-1, 1).to(torch.float32)
