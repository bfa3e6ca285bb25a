"""``mel-kmeans``: log-mel frames -> nearest k-means centroid, a download-free semantic tokenizer.

MusicLM's semantic tokens are k-means clusters of w2v-BERT features; this keeps the recipe
(features, then nearest centroid) with features anyone can compute. The mel filterbank is a
standalone function (:func:`mel_filterbank`) because torchaudio cannot be a dependency and
other plugins need the same filters.

Frames: audio is zero-padded to ``T = ceil(S / hop)`` hops and frame ``t`` is the ``n_fft``
window centred on hop ``t``, so there is exactly one id per ``hop`` samples, aligned with
the acoustic codec's frames when the rates divide.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from cadenza.core import kmeans
from cadenza.core.audio import resample
from cadenza.core.errors import InputError
from cadenza.core.checkpoint import build_module
from cadenza.plugins.centroid_tokenizer import CentroidTokenizer
from cadenza.plugins.tiny import MEL_KMEANS, MelKMeansConfig


def hz_to_mel(hz: torch.Tensor, scale: Literal["slaney", "htk"] = "slaney") -> torch.Tensor:
    """Slaney (librosa's default: linear below 1 kHz, log above) or HTK (``2595 log10(1 + f/700)``)."""
    if scale == "htk":
        return 2595.0 * torch.log10(1.0 + hz / 700.0)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + torch.log(hz.clamp(min=1000.0) / 1000.0) / (math.log(6.4) / 27.0)
    return torch.where(hz >= 1000.0, log_part, linear)


def mel_to_hz(mel: torch.Tensor, scale: Literal["slaney", "htk"] = "slaney") -> torch.Tensor:
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    linear = mel * (200.0 / 3)
    log_part = 1000.0 * torch.exp((math.log(6.4) / 27.0) * (mel - 15.0))
    return torch.where(mel >= 15.0, log_part, linear)


def mel_filterbank(
    n_freqs: int,
    n_mels: int,
    sample_rate: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    scale: Literal["slaney", "htk"] = "slaney",
    norm: Literal["slaney"] | None = None,
) -> torch.Tensor:
    """Triangular mel filters, ``[n_freqs, n_mels]`` (torchaudio's ``melscale_fbanks`` layout).

    ``n_freqs`` is ``n_fft // 2 + 1``; ``power_spec[..., n_freqs] @ fb`` gives mel energies.
    Centres are evenly spaced on the chosen mel scale between ``f_min`` and ``f_max``
    (default Nyquist). Without ``norm`` each filter peaks at 1, so between the first and last
    centre the filters sum to 1 at every frequency; ``norm="slaney"`` divides each by its
    width instead (constant energy per filter, as librosa's default).
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)
    mels = torch.linspace(
        float(hz_to_mel(torch.tensor(f_min, dtype=torch.float64), scale)),
        float(hz_to_mel(torch.tensor(f_max, dtype=torch.float64), scale)),
        n_mels + 2,
        dtype=torch.float64,
    )
    points = mel_to_hz(mels, scale)  # n_mels + 2 edges: filter m spans points[m] .. points[m + 2]
    widths = points[1:] - points[:-1]
    slopes = points[None, :] - freqs[:, None]  # [n_freqs, n_mels + 2]
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    fb = torch.minimum(rising, falling).clamp(min=0)
    if norm == "slaney":
        fb = fb * (2.0 / (points[2:] - points[:-2]))[None, :]
    return fb.float()


class MelKMeans(CentroidTokenizer, nn.Module):
    """The ``mel-kmeans`` semantic tokenizer. Its state dict is just ``centroids`` ``[vocab, n_mels]``."""

    component = MEL_KMEANS

    def __init__(self, config: MelKMeansConfig):
        super().__init__()
        self.config = config
        self.info = config.info()
        self.hop = config.hop
        # Features are normalised to zero mean / unit variance, so N(0, 1) centroids cover them.
        self.register_buffer("centroids", torch.randn(config.vocab_size, config.n_mels))
        fb = mel_filterbank(config.n_fft // 2 + 1, config.n_mels, config.sample_rate)
        self.register_buffer("filterbank", fb, persistent=False)
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)

    def features(self, audio: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """``[B, C, S]`` -> normalised log-mel ``[B, T, n_mels]`` with ``T = ceil(S / hop)``.

        ``sample_rate`` (default: the tokenizer's own) lets ``cadenza fit-kmeans`` pass audio at
        any rate; it is resampled first.

        Normalisation is one mean and variance per utterance (over time and mel bins), not per
        bin: per-bin normalisation would erase the spectral shape of a steady sound, and the
        shape is what the centroids must tell apart. Loudness differences are removed.
        """
        if audio.dim() != 3:
            raise InputError(f"mel-kmeans takes audio [batch, channels, samples], got shape {tuple(audio.shape)}")
        if sample_rate is not None:
            audio = resample(audio, sample_rate, self.config.sample_rate)
        n_fft, hop = self.config.n_fft, self.hop
        x = audio.float().mean(dim=1)
        frames = -(-x.shape[-1] // hop)
        if frames == 0:
            return x.new_zeros(x.shape[0], 0, self.config.n_mels)
        left = (n_fft - hop) // 2
        x = F.pad(x, (left, frames * hop - x.shape[-1] + n_fft - hop - left))
        spec = torch.stft(x, n_fft, hop_length=hop, window=self.window, center=False, return_complex=True)
        mel = spec.abs().pow(2).transpose(1, 2) @ self.filterbank  # [B, T, n_mels]
        logmel = torch.log(mel + 1e-6)
        mean = logmel.mean(dim=(1, 2), keepdim=True)
        std = logmel.std(dim=(1, 2), keepdim=True, unbiased=False).clamp(min=1e-5)
        return (logmel - mean) / std

    def assign(self, features: torch.Tensor) -> torch.Tensor:
        """``[..., n_mels]`` -> nearest centroid ids ``[...]`` (squared Euclidean distance)."""
        return kmeans.assign(features, self.centroids)

    @torch.no_grad()
    def tokenize(self, audio: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        return self.assign(self.features(audio, sample_rate))

    @torch.no_grad()
    def fit(self, features: torch.Tensor, iterations: int = 20, generator: torch.Generator | None = None) -> None:
        """Fit the centroids to ``[N, n_mels]`` features with the shared mini-batch k-means
        (:mod:`cadenza.core.kmeans`; one full batch per iteration); ``generator`` picks its seed."""
        features = features.reshape(-1, self.config.n_mels).to(self.centroids)
        seed = 0 if generator is None else int(torch.randint(2**62, (1,), generator=generator))
        fitted = kmeans.fit_kmeans(features, self.config.vocab_size, batch_size=len(features),
                                   epochs=iterations, seed=seed)
        self.centroids.copy_(fitted)


def build(config: MelKMeansConfig, context) -> MelKMeans:
    return build_module(MelKMeans, config, context, MEL_KMEANS)
