"""Audio in and out of tensors: reading files, resampling, channel layout.

Every component declares the sample rate and channel count it wants; this module gets any
file or tensor there. Reading uses soundfile (libsndfile: WAV, FLAC, OGG, ...), resampling
uses soxr (a high-quality polyphase resampler), so no torchaudio build is needed in core.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from cadenza.core.errors import InputError
from cadenza.core.files.user_text import check_regular_file

if TYPE_CHECKING:
    import torch


def load_audio(path: str | Path, max_seconds: float | None = None, what: str = "audio file"
               ) -> tuple["torch.Tensor", int]:
    """``(samples [C, S] float32, sample_rate)``: the file's first ``max_seconds`` (None: all).

    Only what is returned is decoded, so a two-hour recording given as a 10 s melody costs
    10 s of memory. A path that is not a regular file (a FIFO would block, a device never
    ends), an unreadable or an empty file is one InputError naming ``what``.
    """
    import soundfile
    import torch

    path = Path(path)
    check_regular_file(path, what)
    try:
        with soundfile.SoundFile(str(path)) as handle:
            frames = -1 if max_seconds is None else min(handle.frames, math.ceil(max_seconds * handle.samplerate))
            data, rate = handle.read(frames, dtype="float32", always_2d=True), handle.samplerate
    except (RuntimeError, OSError, soundfile.LibsndfileError) as exc:  # type: ignore[attr-defined]
        raise InputError(f"{path}: cannot read audio ({exc})") from None
    if data.shape[0] == 0:
        raise InputError(f"{path}: audio file has no samples")
    return torch.from_numpy(data.T.copy()), int(rate)


def resample(audio: "torch.Tensor", from_rate: int, to_rate: int) -> "torch.Tensor":
    """Resample ``[..., S]`` from ``from_rate`` to ``to_rate`` (a no-op when they are equal)."""
    import numpy as np
    import soxr
    import torch

    if from_rate == to_rate:
        return audio
    flat = audio.detach().reshape(-1, audio.shape[-1]).to("cpu", torch.float32).numpy()
    out = np.stack([soxr.resample(channel, from_rate, to_rate, quality="HQ") for channel in flat])
    return torch.from_numpy(out).reshape(*audio.shape[:-1], out.shape[-1]).to(audio.device)


def to_channels(audio: "torch.Tensor", channels: int) -> "torch.Tensor":
    """``[B, C, S]`` -> ``[B, channels, S]``: average to mono, or repeat mono to more channels."""
    if audio.shape[1] == channels:
        return audio
    if channels == 1:
        return audio.mean(dim=1, keepdim=True)
    if audio.shape[1] == 1:
        return audio.expand(-1, channels, -1).contiguous()
    raise InputError(f"cannot turn {audio.shape[1]}-channel audio into {channels} channels")


def prepare(audio: "torch.Tensor", rate: int, target_rate: int, channels: int) -> "torch.Tensor":
    """A ``[B, C, S]`` batch at ``rate`` -> what a component wants: ``target_rate``, ``channels``."""
    return to_channels(resample(audio, rate, target_rate), channels)
