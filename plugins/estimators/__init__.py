"""Attribute estimators as metrics: instrument, tempo, key, register, loudness, drums, and all of them at once.

They measure in any audio the attributes ``cadenza corpus`` labels its clips with, so generated
audio can be checked against what its prompt asked for. The instrument family comes from a
small trained classifier (:mod:`cadenza.plugins.estimators.instrument`, weights shipped with
Cadenza); the others are classical estimators. This module only registers them and must not
import numpy or torch (discovery stays light); the estimators live in
:mod:`cadenza.plugins.estimators.model`.

Every metric is called as ``metric(audio, sample_rate=..., **inputs)`` with ``audio``
``[C, S]`` (one value per name) or ``[B, C, S]`` (a list of ``B`` values per name); silence
gives NaN numbers and the label ``"unknown"``. Their accuracy on a rendered corpus is
recorded in ``docs/benchmarks/estimator_accuracy.md``.
"""

import math
from typing import Literal

import attrs

from cadenza.core.hookspecs import hookimpl
from cadenza.core.spec.validators import at_least

_IMPL = "cadenza.plugins.estimators.model"
PROFILES = ("albrecht-shanahan", "krumhansl", "temperley")


def _finite(instance, attribute, value) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number, got {value!r}")


def _above_low_mid(instance, attribute, value) -> None:
    _finite(instance, attribute, value)
    if not value > instance.low_mid:
        raise ValueError(f"{attribute.name} must be above low_mid ({instance.low_mid}), got {value!r}")


def _sample_rate():
    return attrs.field(default=24000, validator=at_least(1))


def _weights_source(instance, attribute, value) -> None:
    if not value.strip():
        raise ValueError(f"{attribute.name} must be 'packaged' or the path of a weights file, got {value!r}")


def _weights():
    return attrs.field(default="packaged", validator=[attrs.validators.instance_of(str), _weights_source])


@attrs.frozen
class InstrumentConfig:
    """Lead instrument family (16 corpus families) from the trained classifier; ``weights``: "packaged"
    (the file shipped with Cadenza) or the path of one ``cadenza train --stage instrument`` exported."""

    sample_rate: int = _sample_rate()
    weights: str = _weights()


@attrs.frozen
class TempoConfig:
    """Tempo from onset autocorrelation with octave correction; ``sample_rate`` when a call gives none."""

    sample_rate: int = _sample_rate()


@attrs.frozen
class KeyConfig:
    """Key and mode: chroma against 24 rotated key ``profiles``, with a bonus for the opening bass note."""

    sample_rate: int = _sample_rate()
    profiles: Literal["albrecht-shanahan", "krumhansl", "temperley"] = attrs.field(
        default="albrecht-shanahan", validator=attrs.validators.in_(PROFILES))
    opening_weight: float = attrs.field(default=0.35, validator=_finite)


@attrs.frozen
class RegisterConfig:
    """Lead register; boundaries (MIDI) apply when neither a call nor ``instrument`` names a corpus family."""

    sample_rate: int = _sample_rate()
    instrument: str | None = None
    low_mid: float = attrs.field(default=62.0, validator=_finite)
    mid_high: float = attrs.field(default=73.0, validator=_above_low_mid)


@attrs.frozen
class LoudnessConfig:
    """BS.1770 integrated loudness; clips at or above ``threshold_lufs`` are "loud"."""

    sample_rate: int = _sample_rate()
    threshold_lufs: float = attrs.field(default=-27.0, validator=_finite)


@attrs.frozen
class DrumsConfig:
    """Drums present when log10(share of energy that is percussive above 8 kHz) >= ``threshold``
    (``narrow_threshold`` and 5 kHz for audio sampled below 20 kHz)."""

    sample_rate: int = _sample_rate()
    threshold: float = attrs.field(default=-4.0, validator=_finite)
    narrow_threshold: float = attrs.field(default=-3.3, validator=_finite)


@attrs.frozen
class AttributesConfig:
    """Every estimator at once (one shared analysis); the fields are those of the single metrics.

    ``classify_instrument: false`` leaves the instrument classifier out (no torch, no weights).
    When it is on and a call names no instrument (nor does ``instrument``), the register is
    judged within the range of the family the classifier hears.
    """

    sample_rate: int = _sample_rate()
    instrument: str | None = None
    classify_instrument: bool = True
    instrument_weights: str = _weights()
    profiles: Literal["albrecht-shanahan", "krumhansl", "temperley"] = attrs.field(
        default="albrecht-shanahan", validator=attrs.validators.in_(PROFILES))
    opening_weight: float = attrs.field(default=0.35, validator=_finite)
    low_mid: float = attrs.field(default=62.0, validator=_finite)
    mid_high: float = attrs.field(default=73.0, validator=_above_low_mid)
    threshold_lufs: float = attrs.field(default=-27.0, validator=_finite)
    drum_threshold: float = attrs.field(default=-4.0, validator=_finite)
    drum_narrow_threshold: float = attrs.field(default=-3.3, validator=_finite)


@hookimpl
def register_metrics(register):
    register("instrument", f"{_IMPL}:build_instrument", config=InstrumentConfig,
             description="instrument (lead family, one of 16) and instrument_confidence from a small trained CNN")
    register("tempo", f"{_IMPL}:build_tempo", config=TempoConfig, needs_weights=False,
             description="bpm and tempo_class (slow/medium/fast) from onset autocorrelation")
    register("key", f"{_IMPL}:build_key", config=KeyConfig, needs_weights=False,
             description="key and mode from chroma correlated with major/minor key profiles")
    register("register", f"{_IMPL}:build_register", config=RegisterConfig, needs_weights=False,
             description="lead_midi (median pitch of the lead) and register (low/mid/high); input: instrument")
    register("loudness", f"{_IMPL}:build_loudness", config=LoudnessConfig, needs_weights=False,
             description="loudness_lufs (BS.1770 integrated), rms_dbfs and dynamics (soft/loud)")
    register("drums", f"{_IMPL}:build_drums", config=DrumsConfig, needs_weights=False,
             description="drum_score (high-band percussive energy) and drums (yes/none)")
    register("attributes", f"{_IMPL}:build_attributes", config=AttributesConfig,
             description="every corpus attribute at once: instrument, tempo, key, mode, register, dynamics, drums")
