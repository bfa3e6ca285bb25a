"""Codec fidelity: how close decoded audio is to the original (mel distance, SI-SDR).

Two complementary views, both standard in codec papers:

* **mel distance** - mean absolute difference of log10 mel spectrograms at three STFT
  resolutions (about 23, 46 and 93 ms windows). It follows what is heard (timbre, pitch,
  rhythm) and ignores phase, so a codec that rebuilds phase (Griffin-Lim) is judged fairly.
  Lower is better; 0 for identical audio.
* **SI-SDR** - scale-invariant signal-to-distortion ratio in dB (Le Roux et al., 2019): the
  waveform match after the best scaling. It punishes any phase change, so it separates codecs
  that keep the waveform from those that only keep the spectrum. Higher is better.

Both take ``[S]``, ``[C, S]`` (channels averaged) torch tensors or numpy arrays at one sample
rate; the longer input is cut to the shorter one's length (codecs pad to whole frames).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from cadenza.core.errors import InputError
from cadenza.core.audio.dsp import mel_spectrogram
from cadenza.core.audio.io import resample

WINDOW_SECONDS = (0.0232, 0.0464, 0.0929)  # 512 / 1024 / 2048 samples at 22.05 kHz
N_MELS = 80
LOG_FLOOR = 1e-5  # magnitude floor before log10: -100 dB, below any audible detail


def _as_channels(x: Any, what: str) -> torch.Tensor:
    """``[S]`` or ``[C, S]`` (torch or numpy) -> float64 ``[C, S]``."""
    t = x.detach().to("cpu") if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    t = t.to(torch.float64)
    if t.dim() == 1:
        t = t[None]
    if t.dim() != 2:
        raise InputError(f"{what} must be audio [samples] or [channels, samples], got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise InputError(f"{what} contains NaN or infinite samples")
    return t


def aligned(reference: Any, estimate: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as ``[C, S]`` float64 with a common length (and channels: mono against stereo is averaged)."""
    ref, est = _as_channels(reference, "reference"), _as_channels(estimate, "estimate")
    if ref.shape[0] != est.shape[0]:
        ref, est = ref.mean(0, keepdim=True), est.mean(0, keepdim=True)
    length = min(ref.shape[1], est.shape[1])
    if length == 0:
        raise InputError("reference and estimate must both hold samples")
    return ref[:, :length], est[:, :length]


def log_mel(x: torch.Tensor, sample_rate: int, window_seconds: float, n_mels: int = N_MELS) -> torch.Tensor:
    """``[C, S]`` -> log10 mel magnitudes ``[C, n_mels, frames]`` (hop a quarter window)."""
    n_fft = 2 ** max(5, round(math.log2(window_seconds * sample_rate)))
    hop = n_fft // 4
    mel = mel_spectrogram(x, sample_rate, n_fft, hop, min(n_mels, n_fft // 4), power=1, norm="slaney")
    return torch.log10(mel.clamp_min(LOG_FLOOR))


def mel_distance(reference: Any, estimate: Any, sample_rate: int) -> float:
    """Multi-resolution log-mel L1 distance (lower is better; 0 for identical audio)."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise InputError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    ref, est = aligned(reference, estimate)
    return float(np.mean([(log_mel(ref, sample_rate, w) - log_mel(est, sample_rate, w)).abs().mean().item()
                          for w in WINDOW_SECONDS]))


def si_sdr(reference: Any, estimate: Any) -> float:
    """Scale-invariant SDR in dB, averaged over channels (higher is better; -inf..+inf).

    Silence in the reference has no defined SI-SDR: that raises, rather than return a number
    that means nothing.
    """
    ref, est = aligned(reference, estimate)
    ref = ref - ref.mean(-1, keepdim=True)
    est = est - est.mean(-1, keepdim=True)
    energy = (ref * ref).sum(-1)
    if (energy <= 1e-12).any():
        raise InputError("SI-SDR is undefined for a silent reference")
    target = ((est * ref).sum(-1) / energy)[:, None] * ref
    noise = est - target
    ratio = (target * target).sum(-1) / (noise * noise).sum(-1).clamp_min(1e-20)
    return float((10.0 * torch.log10(ratio.clamp_min(1e-20))).mean())


class ReferenceMetric:
    """``metric(audio, sample_rate=SR, reference=..., reference_rate=None) -> {name: value}``.

    ``audio`` ``[C, S]`` with one reference, or ``[B, C, S]`` with a reference per clip (a
    sequence or a ``[B, C, S]`` array); a reference at another rate is resampled first.
    """

    def __init__(self, config: Any, name: str, needs_rate: bool):
        self.config, self.name, self.needs_rate = config, name, needs_rate

    def _one(self, clip: Any, ref: Any, rate: int, ref_rate: int) -> float:
        if ref_rate != rate:
            ref = resample(_as_channels(ref, "reference").float(), ref_rate, rate)
        return mel_distance(ref, clip, rate) if self.needs_rate else si_sdr(ref, clip)

    def __call__(self, audio: Any, sample_rate: int | None = None, reference: Any = None,
                 reference_rate: int | None = None, **inputs: Any) -> dict[str, Any]:
        if reference is None:
            raise InputError(f"{self.name.replace('_', '-')} needs the `reference` audio to compare with")
        rate = int(sample_rate or self.config.sample_rate)
        ref_rate = int(reference_rate or rate)
        dims = audio.dim() if isinstance(audio, torch.Tensor) else np.asarray(audio).ndim
        if dims <= 2:
            return {self.name: self._one(audio, reference, rate, ref_rate)}
        if len(reference) != len(audio):
            raise InputError(f"got {len(reference)} references for {len(audio)} clips")
        return {self.name: [self._one(a, r, rate, ref_rate) for a, r in zip(audio, reference)]}


def build_mel_distance(config: Any, context: Any = None) -> ReferenceMetric:
    return ReferenceMetric(config, "mel_distance", needs_rate=True)


def build_si_sdr(config: Any, context: Any = None) -> ReferenceMetric:
    return ReferenceMetric(config, "si_sdr", needs_rate=False)
