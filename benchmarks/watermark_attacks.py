"""The edits ``watermark_robustness.py`` puts marked audio through, each a function of numpy audio.

Every attack takes ``(audio [C, S] float32 numpy, rate, context)`` and returns ``(audio, rate)``;
``context`` gives a seeded ``rng`` and, for the attacks that need one, ``partner`` (another
clean clip, already at this clip's rate and channel count) and ``partner_marked`` (that clip,
marked). Codecs run through the ``ffmpeg`` command line in a temporary folder, each in its
usual container (MP3, Ogg Opus, MP4 AAC), so the decoder removes the encoder's priming delay as
a player would; an encoder ffmpeg lacks makes that attack "not run" with the reason.
"""

from __future__ import annotations

import functools
import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

Audio = np.ndarray


@dataclass
class Context:
    rng: np.random.Generator
    partner: Audio | None = None
    partner_marked: Audio | None = None
    scratch: Path | None = None


@dataclass
class Attack:
    name: str
    description: str
    apply: Callable[[Audio, int, Context], tuple[Audio, int]]
    encoder: str | None = None  # the ffmpeg encoder it needs
    family: str = "other"  # codec / resampling / noise / gain / filter / edit / pitch / mix


def _fit(audio: Audio, length: int) -> Audio:
    """Cut or zero-pad ``[C, S]`` to ``length`` samples."""
    if audio.shape[-1] >= length:
        return audio[..., :length]
    return np.pad(audio, ((0, 0), (0, length - audio.shape[-1])))


def resample(audio: Audio, from_rate: float, to_rate: float) -> Audio:
    """soxr HQ, per channel (rates may be fractional: the pitch shift needs that)."""
    import soxr

    if from_rate == to_rate:
        return audio
    channels = [soxr.resample(c.astype(np.float32), from_rate, to_rate, quality="HQ") for c in audio]
    return np.stack(channels).astype(np.float32)


# -- codecs ------------------------------------------------------------------------------------

@functools.cache
def ffmpeg_encoders() -> tuple[str | None, frozenset[str]]:
    """``(path of ffmpeg or None, names of its audio encoders)``."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        return None, frozenset()
    listing = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, check=False).stdout
    names = {line.split()[1] for line in listing.splitlines() if line.strip()[:1] == "A" and len(line.split()) > 1}
    return exe, frozenset(names)


def unavailable(attack: Attack) -> str | None:
    """Why ``attack`` cannot run on this machine, or None."""
    if attack.encoder is None:
        return None
    exe, encoders = ffmpeg_encoders()
    if exe is None:
        return "ffmpeg is not installed (apt-get install ffmpeg)"
    if attack.encoder not in encoders:
        return f"this ffmpeg has no {attack.encoder} encoder"
    return None


def _codec(encoder: str, bitrate: str, suffix: str, rate_for: Callable[[int], int] | None = None):
    def apply(audio: Audio, rate: int, context: Context) -> tuple[Audio, int]:
        import soundfile

        exe, _ = ffmpeg_encoders()
        with tempfile.TemporaryDirectory(dir=context.scratch) as tmp:
            source, coded, decoded = Path(tmp) / "in.wav", Path(tmp) / f"coded{suffix}", Path(tmp) / "out.wav"
            soundfile.write(str(source), np.clip(audio, -1.0, 1.0).T, rate, subtype="FLOAT")
            encode = [exe, "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
                      "-c:a", encoder, "-b:a", bitrate]
            if rate_for is not None and rate_for(rate) != rate:
                encode += ["-ar", str(rate_for(rate))]
            subprocess.run([*encode, str(coded)], check=True, capture_output=True)
            subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-y", "-i", str(coded), "-ar", str(rate),
                            "-c:a", "pcm_f32le", str(decoded)], check=True, capture_output=True)
            out, out_rate = soundfile.read(str(decoded), dtype="float32", always_2d=True)
        return _fit(out.T.copy(), audio.shape[-1]), int(out_rate)

    return apply


def _opus_rate(rate: int) -> int:
    """Opus encodes at 8/12/16/24/48 kHz; anything else goes in at 48 kHz (decoded back to ``rate``)."""
    return rate if rate in (8000, 12000, 16000, 24000, 48000) else 48000


# -- signal edits ------------------------------------------------------------------------------

def _resample_16k(audio: Audio, rate: int, context: Context) -> tuple[Audio, int]:
    return _fit(resample(resample(audio, rate, 16000), 16000, rate), audio.shape[-1]), rate


def _noise(snr_db: float):
    def apply(audio: Audio, rate: int, context: Context) -> tuple[Audio, int]:
        power = float(np.mean(audio.astype(np.float64) ** 2))
        noise = context.rng.standard_normal(audio.shape) * math.sqrt(power * 10 ** (-snr_db / 10))
        return (audio + noise).astype(np.float32), rate

    return apply


def _gain(db: float):
    def apply(audio: Audio, rate: int, context: Context) -> tuple[Audio, int]:
        return (audio * 10 ** (db / 20)).astype(np.float32), rate

    return apply


def _lowpass(cutoff: float):
    def apply(audio: Audio, rate: int, context: Context) -> tuple[Audio, int]:
        from scipy.signal import butter, sosfiltfilt

        if cutoff >= rate / 2:
            return audio, rate
        sos = butter(8, cutoff, btype="low", fs=rate, output="sos")
        return sosfiltfilt(sos, audio, axis=-1).astype(np.float32), rate

    return apply


def _crop(share: float):
    def apply(audio: Audio, rate: int, context: Context) -> tuple[Audio, int]:
        keep = max(1, int(round(share * audio.shape[-1])))
        start = int(context.rng.integers(0, audio.shape[-1] - keep + 1))
        return audio[..., start:start + keep].copy(), rate

    return apply


def _shift(seconds: float):
    def apply(audio: Audio, rate: int, context: Context) -> tuple[Audio, int]:
        return audio[..., int(round(seconds * rate)):].copy(), rate

    return apply


def phase_vocoder_stretch(audio: Audio, factor: float, n_fft: int = 2048, hop: int = 512) -> Audio:
    """Time-stretch ``[C, S]`` to about ``factor`` times its length, pitch kept (the classic phase
    vocoder: STFT, magnitudes interpolated between frames, phases advanced by each bin's measured
    frequency, inverse STFT; as ``librosa.effects.time_stretch``)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    window = torch.hann_window(n_fft)
    spec = torch.stft(x, n_fft, hop, window=window, return_complex=True)  # [C, F, T]
    steps = torch.arange(0, spec.shape[-1], 1.0 / factor)
    spec = torch.nn.functional.pad(spec, (0, 2))
    expected = torch.linspace(0, math.pi * hop, spec.shape[1])[:, None]
    phase = torch.angle(spec[..., :1])
    frames = []
    for t in steps:
        i = int(t)
        left, right = spec[..., i], spec[..., i + 1]
        alpha = float(t - i)
        magnitude = (1 - alpha) * left.abs() + alpha * right.abs()
        frames.append(torch.polar(magnitude, phase[..., 0]))
        delta = torch.angle(right) - torch.angle(left) - expected[:, 0]
        delta = delta - 2 * math.pi * torch.round(delta / (2 * math.pi))
        phase = phase + (expected[:, 0] + delta)[..., None]
    stretched = torch.stack(frames, dim=-1)
    length = int(round(audio.shape[-1] * factor))
    return torch.istft(stretched, n_fft, hop, window=window, length=length).numpy().astype(np.float32)


def _pitch(semitones: float):
    """Pitch shift keeping the duration: phase-vocoder stretch by 2^(s/12), then resample back."""

    def apply(audio: Audio, rate: int, context: Context) -> tuple[Audio, int]:
        factor = 2.0 ** (semitones / 12)
        stretched = phase_vocoder_stretch(audio, factor)
        return _fit(resample(stretched, rate * factor, rate), audio.shape[-1]), rate

    return apply


def _mix(db: float):
    def apply(audio: Audio, rate: int, context: Context) -> tuple[Audio, int]:
        other = _fit(np.tile(context.partner, (1, -(-audio.shape[-1] // context.partner.shape[-1]))), audio.shape[-1])
        ours = math.sqrt(np.mean(audio.astype(np.float64) ** 2))
        theirs = math.sqrt(np.mean(other.astype(np.float64) ** 2))
        scale = 0.0 if theirs == 0 else ours / theirs * 10 ** (db / 20)
        return (audio + scale * other).astype(np.float32), rate

    return apply


def _long_form(audio: Audio, rate: int, context: Context) -> tuple[Audio, int]:
    return np.concatenate([audio, context.partner_marked], axis=-1), rate


ATTACKS: tuple[Attack, ...] = (
    Attack("mp3-128", "MP3 128 kbit/s (ffmpeg libmp3lame, CBR)", _codec("libmp3lame", "128k", ".mp3"),
           "libmp3lame", "codec"),
    Attack("mp3-64", "MP3 64 kbit/s (ffmpeg libmp3lame, CBR)", _codec("libmp3lame", "64k", ".mp3"),
           "libmp3lame", "codec"),
    Attack("opus-64", "Opus 64 kbit/s (ffmpeg libopus, Ogg; 44.1 kHz input encoded at 48 kHz)",
           _codec("libopus", "64k", ".opus", _opus_rate), "libopus", "codec"),
    Attack("aac-128", "AAC-LC 128 kbit/s (ffmpeg's native aac encoder, MP4)", _codec("aac", "128k", ".m4a"),
           "aac", "codec"),
    Attack("resample-16k", "resampled to 16 kHz and back (soxr HQ)", _resample_16k, family="resampling"),
    Attack("noise-20db", "white Gaussian noise at 20 dB SNR", _noise(20.0), family="noise"),
    Attack("gain+6db", "gain +6 dB (float, not clipped)", _gain(6.0), family="gain"),
    Attack("gain-6db", "gain -6 dB", _gain(-6.0), family="gain"),
    Attack("lowpass-5k", "low-pass 5 kHz (8th-order Butterworth, zero phase)", _lowpass(5000.0), family="filter"),
    Attack("crop-50%", "a random contiguous 50% of the clip", _crop(0.5), family="edit"),
    Attack("shift-100ms", "first 100 ms removed (the rest shifted earlier)", _shift(0.1), family="edit"),
    Attack("pitch+1", "pitch +1 semitone, duration kept (phase vocoder n_fft 2048 hop 512, then soxr resample)",
           _pitch(1.0), family="pitch"),
    Attack("pitch-1", "pitch -1 semitone, duration kept (same method)", _pitch(-1.0), family="pitch"),
    Attack("mix-6db", "mixed with another clean clip 6 dB below it (RMS)", _mix(-6.0), family="mix"),
    Attack("long-form", "two marked clips back to back (this one, then another marked clip)", _long_form,
           family="edit"),
)
# The families the issue's >= 95% target covers.
TARGET_FAMILIES = ("codec", "resampling", "noise", "gain")


def by_name(names: list[str] | None) -> list[Attack]:
    if not names:
        return list(ATTACKS)
    known = {a.name: a for a in ATTACKS}
    missing = [n for n in names if n not in known]
    if missing:
        raise SystemExit(f"unknown attack(s) {missing}; known: {', '.join(known)}")
    return [known[n] for n in names]


__all__ = ["ATTACKS", "Attack", "Context", "TARGET_FAMILIES", "by_name", "ffmpeg_encoders", "resample",
           "unavailable"]
