"""The chroma a MusicGen-melody checkpoint was trained on, computed in torch.

MusicGen-melody conditions on the pitch class that dominates each frame of a recording: a
power spectrogram (Hann window of ``n_fft`` samples, ``hop`` apart, centred), projected onto
``num_chroma`` pitch classes by Gaussian bumps around each class (librosa's chroma filters, the
ones ``transformers``' ``MusicgenMelodyFeatureExtractor`` uses), then reduced to a one-hot vector
of the strongest class. A silent frame has no strongest class and comes out as class 0 (C), as
the extractor's does; C everywhere is also the checkpoint's null melody.

Written here rather than called from ``transformers`` so that the chroma runs on the stage's
device, in a batch, without the extractor's padding to 30 s; ``tests/plugins/test_musicgen_melody.py``
holds it equal to the extractor on the same audio.
"""

from __future__ import annotations

import math

import attrs
import torch


@attrs.frozen
class ChromaSettings:
    """The feature extractor's parameters (a checkpoint's ``preprocessor_config.json``)."""

    sample_rate: int = 32000
    n_fft: int = 16384
    hop: int = 4096
    num_chroma: int = 12
    max_seconds: float = 30.0  # the extractor reads no further

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop


def chroma_filters(settings: ChromaSettings) -> torch.Tensor:
    """``[num_chroma, n_fft // 2 + 1]`` float64 weights from spectrogram bins to pitch classes.

    Each bin's frequency is placed on a pitch-class axis (A440 tuning); every class gets a
    Gaussian bump around it (as wide as a bin where bins are coarser than a class), columns are
    L2-normalised, and bins far from octave 5 are faded (a Gaussian over octaves, half-width 2),
    so the lowest and highest partials count less. Rows start at C.
    """
    n, bins = settings.num_chroma, settings.n_fft
    freqs = torch.arange(1, bins, dtype=torch.float64) * settings.sample_rate / bins
    position = n * torch.log2(freqs / (440.0 / 16))  # pitch-class units above A0 (octave 0 at A440 / 16)
    position = torch.cat([position[:1] - 1.5 * n, position])  # DC: put 1.5 octaves below the first bin
    width = torch.cat([torch.clamp(position[1:] - position[:-1], min=1.0), torch.ones(1, dtype=torch.float64)])
    half = round(n / 2)
    distance = torch.remainder(position[None, :] - torch.arange(n, dtype=torch.float64)[:, None] + half + 10 * n, n) - half
    weights = torch.exp(-0.5 * (2 * distance / width[None, :]) ** 2)
    weights = weights / weights.pow(2).sum(dim=0, keepdim=True).sqrt()
    weights = weights * torch.exp(-0.5 * ((position / n - 5.0) / 2.0) ** 2)[None, :]
    weights = torch.roll(weights, -3 * (n // 12), dims=0)
    return weights[:, : bins // 2 + 1]


class Chroma(torch.nn.Module):
    """``[B, S]`` mono audio at ``settings.sample_rate`` -> one-hot chroma ``[B, T, num_chroma]``,
    ``T = S // hop + 1`` (audio shorter than one window is padded to it, equally on both sides)."""

    def __init__(self, settings: ChromaSettings = ChromaSettings()):
        super().__init__()
        self.settings = settings
        self.register_buffer("filters", chroma_filters(settings).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(settings.n_fft), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        s = self.settings
        audio = audio.float()[:, : math.floor(s.max_seconds * s.sample_rate)]
        if audio.shape[-1] < s.n_fft:
            pad = s.n_fft - audio.shape[-1]
            audio = torch.nn.functional.pad(audio, (pad // 2, pad - pad // 2))
        spectrum = torch.stft(audio, s.n_fft, s.hop, window=self.window, center=True, pad_mode="reflect",
                              return_complex=True)
        power = spectrum.abs().pow(2) / self.window.pow(2).sum()  # [B, F, T]
        energy = torch.einsum("cf,bft->btc", self.filters, power)
        strongest = energy.argmax(dim=-1)
        strongest = torch.where(energy.amax(dim=-1) > 0, strongest, torch.zeros_like(strongest))
        return torch.nn.functional.one_hot(strongest, s.num_chroma).float()
