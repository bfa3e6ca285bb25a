"""Signal processing shared by every plugin and metric: the mel scale and its filterbanks.

torchaudio cannot be a dependency of the core install, and the codecs, conditioners, metrics
and the ``--plot`` spectrogram must agree on one set of filters, so they are defined here once:
:func:`mel_filterbank` (torch, Slaney or HTK, torchaudio's layout) for the models and the plot,
:func:`htk_mel_filters` (numpy, with the centre frequencies) for the attribute estimators and the
instrument classifier trained on their features, and :func:`mel_spectrogram` (a centred Hann STFT
through those filters) for the metrics that compare spectra. torch and numpy are imported when a function
runs, so importing this module costs nothing.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np
    import torch


def hz_to_mel(hz: torch.Tensor, scale: Literal["slaney", "htk"] = "slaney") -> torch.Tensor:
    """Slaney (librosa's default: linear below 1 kHz, log above) or HTK (``2595 log10(1 + f/700)``)."""
    import torch

    if scale == "htk":
        return 2595.0 * torch.log10(1.0 + hz / 700.0)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + torch.log(hz.clamp(min=1000.0) / 1000.0) / (math.log(6.4) / 27.0)
    return torch.where(hz >= 1000.0, log_part, linear)


def mel_to_hz(mel: torch.Tensor, scale: Literal["slaney", "htk"] = "slaney") -> torch.Tensor:
    import torch

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
    import torch

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


def htk_mel_filters(n_fft: int, n_mels: int, rate: int, fmin: float = 30.0,
                    fmax: float = 11000.0) -> tuple[np.ndarray, np.ndarray]:
    """Triangular filters ``[n_mels, n_fft // 2 + 1]`` equally spaced on the HTK mel scale, and their centres (Hz).

    The triangles of ``mel_filterbank(..., scale="htk").T`` between ``fmin`` and ``fmax``, in numpy
    float64: the attribute estimators run without torch, and the packaged instrument classifier was
    trained on exactly these filters (torch's float64 edges differ from numpy's by ~1e-12 Hz, so the
    two cannot share one body and stay bit-identical)."""
    import numpy as np

    mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)
    hz = lambda m: 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)
    edges = hz(np.linspace(mel(fmin), mel(min(fmax, rate / 2)), n_mels + 2))
    freqs = np.arange(n_fft // 2 + 1) * rate / n_fft
    lower = (freqs[None, :] - edges[:-2, None]) / np.maximum(edges[1:-1, None] - edges[:-2, None], 1e-9)
    upper = (edges[2:, None] - freqs[None, :]) / np.maximum(edges[2:, None] - edges[1:-1, None], 1e-9)
    return np.maximum(0.0, np.minimum(lower, upper)), edges[1:-1]


def mel_spectrogram(x: torch.Tensor, sample_rate: int, n_fft: int, hop: int, n_mels: int, power: int = 2,
                    norm: Literal["slaney"] | None = None) -> torch.Tensor:
    """``[..., S]`` -> mel energies ``[..., n_mels, frames]`` of a centred Hann STFT (reflect padded,
    torch's default), Slaney-scale filters from :func:`mel_filterbank`; ``power`` 1 sums magnitudes,
    2 powers. Audio shorter than one window is zero padded to one, so every clip has a frame.

    The metrics that compare spectra (``mel-distance``'s multi-resolution log-mel, FAD's mel-stats
    embedding) read them through this one function, in ``x``'s dtype. (The models' front ends keep
    their own framing where a checkpoint fixed it: uncentred frames, HTK filters, a packaged codebook.)
    """
    import torch

    x = torch.nn.functional.pad(x, (0, max(0, n_fft - x.shape[-1])))
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft, dtype=x.dtype), return_complex=True).abs()
    if power == 2:
        spec = spec ** 2
    elif power != 1:
        raise ValueError(f"power must be 1 (magnitude) or 2 (power), got {power!r}")
    bank = mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate, norm=norm).to(x.dtype)
    return torch.einsum("fm,...ft->...mt", bank, spec)
