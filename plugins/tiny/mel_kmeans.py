"""``mel-kmeans``: log-mel frames -> nearest k-means centroid, a download-free semantic tokenizer.

MusicLM's semantic tokens are k-means clusters of w2v-BERT features; this keeps the recipe
(features, then nearest centroid) with features anyone can compute. The mel filterbank is a
standalone function (:func:`mel_filterbank`) because torchaudio cannot be a dependency and
other plugins need the same filters; it lives in :mod:`cadenza.core.audio.dsp`.

Frames: audio is zero-padded to ``T = ceil(S / hop)`` hops and frame ``t`` is the ``n_fft``
window centred on hop ``t``, so there is exactly one id per ``hop`` samples, aligned with
the acoustic codec's frames when the rates divide.
"""

from __future__ import annotations


import torch
from torch import nn
from torch.nn import functional as F

from cadenza.core.quantize import kmeans
from cadenza.core.audio.dsp import mel_filterbank
from cadenza.core.audio.io import resample
from cadenza.core.errors import InputError
from cadenza.core.engine.checkpoint import build_module
from cadenza.core.quantize.centroid_tokenizer import CentroidTokenizer
from cadenza.plugins.tiny import MEL_KMEANS, MelKMeansConfig


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
        (:mod:`cadenza.core.quantize.kmeans`; one full batch per iteration); ``generator`` picks its seed."""
        features = features.reshape(-1, self.config.n_mels).to(self.centroids)
        seed = 0 if generator is None else int(torch.randint(2**62, (1,), generator=generator))
        fitted = kmeans.fit_kmeans(features, self.config.vocab_size, batch_size=len(features),
                                   epochs=iterations, seed=seed)
        self.centroids.copy_(fitted)


def build(config: MelKMeansConfig, context) -> MelKMeans:
    return build_module(MelKMeans, config, context, MEL_KMEANS)
