"""A spectrogram PNG of generated audio, so a user can *see* what came out (``--plot``).

A mel-scaled spectrogram in dB (what the ear resolves: detail in the low and mid range, where
melody and harmony live) over time in seconds, with the prompt as the title. matplotlib is
imported here only, with the non-interactive Agg backend; the PNG is rendered in memory, so a
caller can write it together with the audio it shows (or not at all).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cadenza.core.audio.dsp import mel_spectrogram
from cadenza.core.files.atomic import atomic_path

N_MELS = 128
TOP_DB = 80.0  # the colour scale spans this many dB below the loudest bin


def mel_spectrogram_db(audio: Any, sample_rate: int) -> tuple[Any, float, float]:
    """Mono ``[C, S]`` or ``[S]`` audio -> (mel power in dB ``[N_MELS, frames]``, seconds per frame, top Hz)."""
    import torch

    x = torch.as_tensor(audio).float()
    x = x.mean(0) if x.dim() == 2 else x
    n_fft = 2048 if sample_rate > 32000 else 1024
    mel = mel_spectrogram(x, sample_rate, n_fft, n_fft // 4, N_MELS)
    hop = n_fft // 4
    db = 10 * torch.log10(mel.clamp_min(1e-10))
    db = db.clamp_min(db.max() - TOP_DB)
    return db.numpy(), hop / sample_rate, sample_rate / 2


def save_spectrogram(path: str | Path, audio: Any, sample_rate: int, title: str = "") -> Path:
    """Write a PNG spectrogram of ``audio`` to ``path`` (atomically) and return the path."""
    path = Path(path)
    png = spectrogram_png(audio, sample_rate, title)
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)
    return path


def spectrogram_png(audio: Any, sample_rate: int, title: str = "") -> bytes:
    """The PNG bytes of a spectrogram of ``audio``, rendered in memory (nothing is written)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib import pyplot as plt

    db, frame_seconds, top_hz = mel_spectrogram_db(audio, sample_rate)
    seconds = db.shape[1] * frame_seconds
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    try:
        image = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", extent=(0.0, seconds, 0, db.shape[0]))
        mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
        ticks = [f for f in (100, 250, 500, 1000, 2000, 4000, 8000, 16000) if f < top_hz]
        ax.set_yticks([mel(f) / mel(top_hz) * db.shape[0] for f in ticks], [f"{f:g}" for f in ticks])
        ax.set_xlabel("time (s)")
        ax.set_ylabel("frequency (Hz, mel scale)")
        if title:
            ax.set_title(title if len(title) <= 90 else title[:87] + "...", fontsize=10)
        fig.colorbar(image, ax=ax, label="dB")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    return buffer.getvalue()
