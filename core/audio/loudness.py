"""The output stage's level: integrated loudness (ITU-R BS.1770-4), true peak and a limiter.

Why a loudness stage at all: a stage model's output level follows its training audio, so one
prompt comes out near silent (-45 LUFS) and another clips. Players and platforms normalise to
about -14 LUFS; a file that already sits there sounds as meant everywhere.

Why it may keep part of the difference: in a pipeline trained on soft and loud music, the level
*is* what the prompt asked for ("soft piano" vs "loud brass"). ``keep`` says which fraction of a
clip's distance from the pipeline's own ``reference`` level survives: 0 puts every clip at the
target (what a streaming platform does), 0.5 halves the distances, so a soft clip stays
measurably softer than a loud one while both become listenable.

The limiter works on the whole clip at once (generation is offline, so it may look ahead as far
as it likes): the gain each sample needs to keep its true peak (4x oversampled, BS.1770 Annex 2)
under the ceiling, widened by a minimum filter and smoothed by a Hann window no wider than that
minimum, is never above what any sample needs, so no peak passes, and it moves over tens of
milliseconds, so it does not distort what it turns down.

:func:`apply_output_stage` is the whole stage on a batch, in its one order: the gain, then the
watermark (a callback, so this module knows no watermark), then the limiter, so nothing added
after the gain can pass the ceiling. The cascade and ``benchmarks/output_levels.py`` both call it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

OVERSAMPLE = 4  # BS.1770-4 Annex 2: 4x oversampling estimates the true (inter-sample) peak
LIMITER_SECONDS = 0.02  # the limiter's gain ramps over this long, before and after a peak
MAX_GAIN_DB = 40.0  # never boost more than this: past it, what would be raised is the noise floor
MIN_SECONDS = 0.4  # one BS.1770 gating block: shorter clips have no integrated loudness


@attrs.frozen
class LevelSettings:
    """What the output stage does to a clip's level (the spec's ``output`` keys of that name).

    ``loudness``: target LUFS, or None for no loudness gain; ``keep``: fraction of the clip's
    distance from ``reference`` LUFS kept (``reference`` None: the target); ``true_peak``:
    the limiter's ceiling in dBTP, or None to clip to [-1, 1] only; ``peak_dbfs``: a legacy
    spec's peak normalisation (each clip's sample peak set to this), which replaces the
    loudness gain when set.
    """

    loudness: float | None = -14.0
    keep: float = 0.0
    reference: float | None = None
    true_peak: float | None = -1.0
    peak_dbfs: float | None = None

    def target_for(self, measured: float) -> float:
        """The loudness a clip measured at ``measured`` LUFS should have."""
        assert self.loudness is not None
        reference = self.loudness if self.reference is None else self.reference
        return self.loudness + self.keep * (measured - reference)


def integrated_loudness(audio: np.ndarray, rate: int) -> float:
    """BS.1770-4 integrated loudness (LUFS) of ``[C, S]`` audio; -inf when silent or shorter than
    one 400 ms gating block."""
    import pyloudnorm

    if audio.shape[-1] < math.ceil(MIN_SECONDS * rate) or not np.any(audio):
        return -math.inf
    return float(pyloudnorm.Meter(rate).integrated_loudness(np.ascontiguousarray(audio.T, dtype=np.float64)))


def true_peak(audio: np.ndarray) -> float:
    """Largest absolute sample value of ``[C, S]`` audio oversampled 4x (linear, not dB)."""
    return float(np.abs(_oversampled(audio)).max()) if audio.size else 0.0


def to_db(value: float) -> float:
    return 20 * math.log10(value) if value > 0 else -math.inf


def limit(audio: np.ndarray, rate: int, ceiling_db: float) -> tuple[np.ndarray, float]:
    """``audio`` ``[C, S]`` with its true peak held at or under ``ceiling_db`` dBTP, and the
    largest gain reduction applied (dB, 0 when nothing reached the ceiling). Channels share one
    gain, so the stereo image does not move."""
    ceiling = 10 ** (ceiling_db / 20)
    needed = _needed_gain(audio, ceiling)
    if needed.min() >= 1.0:
        return audio, 0.0
    gain = _smooth_gain(needed, max(1, round(LIMITER_SECONDS * rate)))
    limited = audio * gain
    # the gain is applied to the samples, the ceiling holds between them: a last pass takes any
    # inter-sample remainder off (a fraction of a dB, where a fast peak met a moving gain)
    peak = true_peak(limited)
    if peak > ceiling:
        limited = limited * (ceiling / peak)
        gain = gain * (ceiling / peak)
    return limited.astype(audio.dtype, copy=False), -to_db(float(gain.min()))


def _oversampled(audio: np.ndarray) -> np.ndarray:
    from scipy.signal import resample_poly

    return resample_poly(audio, OVERSAMPLE, 1, axis=-1)


def _needed_gain(audio: np.ndarray, ceiling: float) -> np.ndarray:
    """Per sample, the gain ``<= 1`` that keeps it (and the oversampled points around it) under
    ``ceiling``; one gain for all channels."""
    peaks = np.abs(_oversampled(audio)).max(axis=0)
    length = audio.shape[-1]
    peaks = np.pad(peaks, (0, length * OVERSAMPLE - peaks.shape[0]))[: length * OVERSAMPLE]
    per_sample = peaks.reshape(length, OVERSAMPLE).max(axis=1)
    per_sample = np.maximum(per_sample, np.abs(audio).max(axis=0))
    return np.minimum(1.0, ceiling / np.maximum(per_sample, 1e-12))


def _smooth_gain(needed: np.ndarray, ramp: int) -> np.ndarray:
    """A gain curve never above ``needed`` that moves over ``ramp`` samples.

    Each sample takes the minimum of ``needed`` within ``ramp`` samples either side; a Hann
    average over at most ``ramp`` samples either side then only mixes values that are each
    below the need of the sample in the middle, so the average is too.
    """
    from scipy.ndimage import minimum_filter1d
    from scipy.signal import oaconvolve

    floor = minimum_filter1d(needed, size=2 * ramp + 1, mode="nearest")
    window = np.hanning(2 * ramp + 1)[1:-1] if ramp > 1 else np.ones(1)
    window = window / window.sum()
    padded = np.pad(floor, (len(window) // 2, len(window) // 2), mode="edge")
    return np.minimum(oaconvolve(padded, window, mode="valid"), 1.0)  # overlap-add: minutes of audio in a blink


def level_gain(audio: np.ndarray, rate: int, settings: LevelSettings) -> tuple[float, dict[str, Any]]:
    """The loudness gain (dB) for one clip ``[C, S]``, and what was measured to choose it."""
    measured = integrated_loudness(audio, rate)
    report: dict[str, Any] = {"measured_lufs": _round(measured)}
    if settings.loudness is None:
        return 0.0, report
    report.update(target_lufs=settings.loudness, keep=settings.keep,
                  reference_lufs=settings.loudness if settings.reference is None else settings.reference)
    if not math.isfinite(measured):
        report["note"] = "silent or shorter than one 400 ms block: no loudness to set, no gain applied"
        return 0.0, report
    gain = min(settings.target_for(measured) - measured, MAX_GAIN_DB)
    if gain == MAX_GAIN_DB:
        report["note"] = f"boost capped at {MAX_GAIN_DB:g} dB"
    return gain, report


def finish_levels(audio: np.ndarray, rate: int, settings: LevelSettings) -> tuple[np.ndarray, dict[str, Any]]:
    """The limiter half of the output stage on one clip ``[C, S]`` (after its gain, and after a
    watermark, so nothing added later can pass the ceiling), then clipping to [-1, 1]; returns
    the audio and what it measured."""
    report: dict[str, Any] = {}
    if settings.true_peak is not None:
        audio, reduction = limit(audio, rate, settings.true_peak)
        report.update(true_peak_ceiling_dbtp=settings.true_peak, limiter_max_reduction_db=_round(reduction))
    clipped = int(np.count_nonzero(np.abs(audio) > 1.0))
    audio = np.clip(audio, -1.0, 1.0)
    report.update(output_lufs=_round(integrated_loudness(audio, rate)), true_peak_dbtp=_round(to_db(true_peak(audio))),
                  clipped_samples=clipped)
    return audio, report


def apply_output_stage(audio: Any, rate: int, settings: LevelSettings, primed: bool = False,
                       mark: Callable[[Any], Any] | None = None) -> tuple[Any, tuple[dict[str, Any], ...]]:
    """The output stage on ``[B, C, S]`` audio (a torch tensor): each clip's level gain, then
    ``mark`` (the watermark, given the whole batch and returning it marked), then the limiter
    and clipping to [-1, 1]. Returns float32 audio and, per clip, what was measured and applied
    (what ``Generation.levels`` holds). ``primed``: the clips continue a prime, which sets their
    level, so they get no gain (a continuation written with ``only_new`` must still join the
    original file)."""
    audio, reports = _gain(audio.cpu().float(), rate, settings, primed)
    if mark is not None:
        audio = mark(audio)
    return _limit_rows(audio, rate, settings, reports)


def _gain(audio: Any, rate: int, settings: LevelSettings, primed: bool) -> tuple[Any, list[dict[str, Any]]]:
    """Each clip's loudness gain (:func:`level_gain`), or a legacy spec's peak normalisation."""
    import torch

    if settings.peak_dbfs is not None:
        reports = [{"peak_dbfs": settings.peak_dbfs, "gain_db": 0.0}] * audio.shape[0]
        if not primed:
            peak = audio.abs().amax(dim=(1, 2), keepdim=True).clamp_min(1e-8)
            gains = 20 * torch.log10(10 ** (settings.peak_dbfs / 20) / peak).flatten()
            audio = audio / peak * (10 ** (settings.peak_dbfs / 20))
            reports = [{"peak_dbfs": settings.peak_dbfs, "gain_db": round(float(g), 2)} for g in gains]
        return audio, reports
    reports, gains = [], []
    for row in range(audio.shape[0]):
        gain, report = level_gain(audio[row].numpy(), rate, settings)
        if primed and settings.loudness is not None:
            gain, report["note"] = 0.0, "continuation: the prime sets the level, no loudness gain"
        gains.append(10 ** (gain / 20))
        reports.append({**report, "gain_db": round(gain, 2)})
    return audio * torch.tensor(gains, dtype=audio.dtype)[:, None, None], reports


def _limit_rows(audio: Any, rate: int, settings: LevelSettings,
                reports: list[dict[str, Any]]) -> tuple[Any, tuple[dict[str, Any], ...]]:
    """:func:`finish_levels` on every clip; ``reports`` gain what it measured."""
    import torch

    rows, done = [], []
    for row in range(audio.shape[0]):
        limited, report = finish_levels(audio[row].numpy(), rate, settings)
        rows.append(torch.from_numpy(np.ascontiguousarray(limited, dtype=np.float32)))
        done.append({**reports[row], **report})
    return torch.stack(rows), tuple(done)


def _round(value: float) -> float | None:
    """dB figures to 0.01 for the sidecar; -inf (silence) as None, which JSON can hold."""
    return round(value, 2) if math.isfinite(value) else None
