"""Beat grid: the semantic stage keeps one tempo over a long piece.

Long-form generation continues each window from the last fraction of a second of the one
before (:mod:`cadenza.core.engine.longform`). That is enough to carry a key, but not a tempo: at 60 to
120 BPM a beat lasts 0.5 to 1 s, so a window's context holds at most one beat, and each window
picks its pulse afresh. ``benchmarks/longform_stability.py`` measured it on the default: over
180 s the 30 s segments ranged from 60 to 120 BPM within one piece, and only 67% of them had
the piece's usual tempo class, against 100% for rendered corpus pieces.

The beat grid holds the pulse where the semantic stream writes it. A semantic tokenizer that
knows how much of an onset each of its tokens is (``token_onsets()``, ``[V]`` in [0, 1]; the
``music-features`` tokenizer reads it off its centroids) lets each frame's logits be steered:
``strength * (2 g - 1) * onset[v]`` is added to token ``v``'s logit, where ``g`` is 1 on a beat
and falls off over a frame or so on either side. On the beat, onset tokens gain; between
beats, they lose; tokens that are no onset barely move. The acoustic stages follow the
semantic stream's onsets, so the audio keeps the pulse.

The tempo and phase come from the user (``--bpm``: beats from the first frame, or where a
prime's onsets put them at that tempo) or from the
piece itself: the strongest periodicity of the onsets of its semantic tokens over its opening,
the first :data:`OPENING` seconds (a prime counts), estimated once and held by every window
that starts after it. The estimator is the one the ``music-features`` tokenizer uses for its
beat-phase block (:func:`cadenza.core.audio.tempo.strongest_beat`).

Why an opening of 10 s and not the first window: the default's first window is 2.5 s, a few
beats, and a grid read from it held a tempo the text had not asked for. Steering 5 s clips from
their first 2.5 s took prompt adherence from 57.2% to 54.5% of the ceiling, the tempo class
from 42.5% to chance (33%). Over 10 s there are a dozen beats to read, and a clip of 10 s or
less is never steered: the grid only keeps what the opening chose.

What the audio holds (:func:`hear_beats`): the grid steers the semantic tokens, and the audio
follows them only as far as the acoustic stages and the codec carry their onsets, so a run
records both. The pipeline's semantic tokenizer reads the decoded audio again and the same
estimator gives its strongest pulse, its relation to the grid's tempo (the same, half, double,
...) and the share of its onsets on the grid's beats. At ``--bpm 138`` the default's semantic
onsets sit on the beats and its audio pulses at 138 BPM with about 40% of its onsets on them;
the ``tempo`` metric (the estimators plugin, with its own octave rule) reads the same audio at
69 BPM.

Measured (``benchmarks/longform_stability.py --beat``): see docs/generation.md#holding-the-beat.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
import torch

from cadenza.core.audio.io import prepare
from cadenza.core.audio.tempo import phase_at, strongest_beat
from cadenza.core.engine.longform import frames_before
from cadenza.core.errors import InputError
from cadenza.core.steering.logit_bias import BiasedModel, check_scale

GIVEN_BPM_RANGE = (30.0, 300.0)  # what --bpm accepts
BEAT_WIDTH = 0.7  # frames: standard deviation of a beat's closeness g around its frame
DEFAULT_STRENGTH = 8.0  # logit scale when a tempo is given but the spec's beat strength is 0
OPENING = 10.0  # seconds: the piece's opening, whose tempo the later windows keep
METRICAL_RATIOS = (("same", 1.0), ("half", 0.5), ("double", 2.0), ("two thirds", 2 / 3), ("three halves", 1.5))
RELATION_TOLERANCE = 0.04  # a measured tempo within 4% of a ratio of the grid's stands in that relation


def check_strength(strength: float | None) -> float | None:
    """None or 0 (off), or a finite logit scale > 0."""
    return check_scale(strength, "beat", "a logit scale")


def check_bpm(bpm: float | None) -> float | None:
    """None (the piece's own tempo), or a tempo in :data:`GIVEN_BPM_RANGE`."""
    if bpm is None:
        return None
    low, high = GIVEN_BPM_RANGE
    if isinstance(bpm, bool) or not isinstance(bpm, (int, float)) or not math.isfinite(bpm) or not low <= bpm <= high:
        raise InputError(f"bpm must be a tempo from {low:g} to {high:g} beats per minute, got {bpm!r}")
    return float(bpm)


@attrs.frozen
class Beat:
    """One row's pulse: a beat every ``period`` frames, on the frames where ``2 pi t / period +
    phase`` is a multiple of ``2 pi`` (``t`` counted from the start of the output).

    ``source``: ``"given"`` (a tempo the user asked for) or ``"opening"`` (estimated from what
    the piece had written); ``confidence``: how periodic the onsets it was read from are at
    that tempo (1 for a given tempo with nothing written before it).
    """

    period: float
    phase: float
    source: str
    confidence: float = 1.0

    @classmethod
    def given(cls, bpm: float, frame_rate: float) -> Beat:
        """``bpm`` with a beat on the first frame."""
        return cls(60.0 * frame_rate / bpm, 0.0, "given")

    def bpm(self, frame_rate: float) -> float:
        return 60.0 * frame_rate / self.period

    def closeness(self, frame: int) -> float:
        """``g`` of ``frame``: 1 on a beat, ``exp(-d^2 / 2 w^2)`` ``d`` frames from the nearest one."""
        cycle = (2 * math.pi * frame / self.period + self.phase) / (2 * math.pi)
        distance = (cycle - round(cycle)) * self.period
        return math.exp(-0.5 * (distance / BEAT_WIDTH) ** 2)

    def describe(self, frame_rate: float) -> dict[str, Any]:
        first = (-self.phase / (2 * math.pi) * self.period) % self.period
        first = 0.0 if self.period - first < 1e-6 else first  # a beat on frame 0, less rounding
        return {"bpm": round(self.bpm(frame_rate), 2), "from": self.source,
                "first_beat_s": round(first / frame_rate, 3), "confidence": round(self.confidence, 3)}


def estimate_beats(ids: torch.Tensor, onsets: torch.Tensor, frame_rate: float, bpm: float | None = None) -> list[Beat]:
    """Semantic tokens ``[B, T]`` -> the pulse of each row, from its tokens' onset strengths: the
    strongest, or with ``bpm`` that tempo with its beats where the tokens' onsets put them."""
    envelope = onsets.to(ids.device)[ids.long()]
    if bpm is None:
        period, phase, confidence = strongest_beat(envelope, frame_rate)
        return [Beat(float(p), float(f), "opening", float(c)) for p, f, c in zip(period, phase, confidence)]
    period = 60.0 * frame_rate / bpm
    phase, confidence = phase_at(envelope, period)
    return [Beat(period, float(f), "given", float(c)) for f, c in zip(phase, confidence)]


def piece_beats(history: dict[str, torch.Tensor], new: float, bpm: float | None, batch: int, onsets: torch.Tensor,
                frame_rate: float) -> list[Beat]:
    """Each row's pulse for the rest of the piece from the semantic tokens ``history["semantic"]``
    ``[B, 1, T]`` that exist before ``new`` seconds: the strongest, or at ``bpm`` its beats' phase
    there (none exist: a beat on frame 0)."""
    written = history["semantic"][:, 0, :frames_before(new, frame_rate)] if "semantic" in history else None
    if bpm is None:
        return estimate_beats(written, onsets, frame_rate)
    if written is None or not written.shape[-1]:
        return [Beat.given(bpm, frame_rate)] * batch
    return estimate_beats(written, onsets, frame_rate, bpm=bpm)


def relation(heard: float, held: float) -> str | None:
    """How a tempo measured in the audio stands to the grid's: ``"same"``, ``"half"``,
    ``"double"``, ``"two thirds"`` or ``"three halves"`` (within :data:`RELATION_TOLERANCE`), else None."""
    for name, ratio in METRICAL_RATIOS:
        if abs(heard / (held * ratio) - 1) <= RELATION_TOLERANCE:
            return name
    return None


def heard_beats(ids: torch.Tensor, onsets: torch.Tensor, frame_rate: float, beats: Sequence[Beat],
                start: int = 0) -> list[dict[str, Any]]:
    """What the output audio holds of each row's grid, from the semantic tokens ``[B, T]`` the
    pipeline's semantic tokenizer reads off the *decoded audio* (not the tokens the stages wrote),
    frames ``start..`` (where the grid began to steer).

    Per row: ``bpm``, the strongest pulse of those onsets by the estimator that reads an
    opening's tempo (:func:`strongest_beat`), its ``confidence``, its ``relation`` to the grid's
    tempo, and ``on_beat``: the share of the audio's onset frames (onset > 0.5) within a frame of
    one of the grid's beats. The semantic tokens themselves put nearly all their onsets there; the
    audio only as far as the acoustic stages and the codec carried them.
    """
    envelope = onsets.to(ids.device)[ids[:, start:].long()]
    if not envelope.shape[-1]:
        return [{"bpm": None, "confidence": 0.0, "relation": None, "on_beat": None} for _ in beats]
    period, _, confidence = strongest_beat(envelope, frame_rate)
    near = math.exp(-0.5 / BEAT_WIDTH**2) - 1e-9  # closeness one frame from a beat
    out = []
    for row, beat in enumerate(beats):
        bpm = 60.0 * frame_rate / float(period[row])
        hits = (envelope[row] > 0.5).nonzero().flatten().tolist()
        on_beat = sum(beat.closeness(start + t) >= near for t in hits) / len(hits) if hits else None
        out.append({"bpm": round(bpm, 1), "confidence": round(float(confidence[row]), 3),
                    "relation": relation(bpm, beat.bpm(frame_rate)),
                    "on_beat": None if on_beat is None else round(on_beat, 3)})
    return out


def hear_beats(tokenizer: Any, tokenizer_rate: int, audio: torch.Tensor, sample_rate: int, onsets: torch.Tensor,
               frame_rate: float, beats: Sequence[Beat], start_seconds: float = 0.0) -> list[dict[str, Any]]:
    """:func:`heard_beats` of decoded audio ``[B, C, S]`` at ``sample_rate``, read by the
    semantic tokenizer (which wants mono at ``tokenizer_rate`` Hz), from ``start_seconds`` on."""
    with torch.inference_mode():
        ids = tokenizer.tokenize(prepare(audio.float(), sample_rate, tokenizer_rate, 1).to(onsets.device))
    return heard_beats(ids, onsets, frame_rate, beats, start=min(ids.shape[-1], round(start_seconds * frame_rate)))


def token_onsets(tokenizer: Any, pipeline_name: str) -> torch.Tensor:
    """``[V]`` onset strength of each semantic token, or a one-line error naming why there is none."""
    read = getattr(tokenizer, "token_onsets", None)
    if tokenizer is None or not callable(read):
        what = "no semantic tokenizer" if tokenizer is None else \
            f"a semantic tokenizer ({getattr(tokenizer, 'component', type(tokenizer).__name__)}) that does not say " \
            "which tokens are onsets"
        raise InputError(f"pipeline {pipeline_name!r} has {what}, so it cannot hold a beat: set output.beat to 0 "
                         "and give no --bpm (the music-features tokenizer can)")
    return read().float()


def beat_model(model: Any, onsets: torch.Tensor, beats: Sequence[Beat], strength: float,
               offset: int = 0) -> BiasedModel:
    """``model`` (a one-codebook semantic stage) with the beat grid on its logits: written
    position ``p`` is frame ``offset + p`` of the output."""
    onsets = onsets.float()

    def bias(position: int) -> torch.Tensor:
        frame = offset + position
        pull = torch.tensor([2 * beat.closeness(frame) - 1 for beat in beats], dtype=onsets.dtype, device=onsets.device)
        return strength * pull[:, None] * onsets[None, :]

    return BiasedModel(model, bias)
