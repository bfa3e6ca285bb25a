"""Built-in melody sources: ``midi`` (a MIDI file's melody line) and ``audio`` (a pitch-tracked recording).

Registration only (configs and the hook): no mido, numpy or torch is imported here, so
discovery stays light. The sources live in :mod:`cadenza.plugins.melody.sources`. Each
config's ``suffixes`` say which files ``--melody FILE`` hands it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import attrs

from cadenza.core.hookspecs import hookimpl
from cadenza.core.spec.validators import positive

_IMPL = "cadenza.plugins.melody.sources"


def _channel(instance, attribute, value) -> None:
    if value is not None and not 1 <= value <= 16:
        raise ValueError(f"{attribute.name} must be a MIDI channel 1..16 (10 is drums), got {value!r}")


def _track(instance, attribute, value) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must be a track index >= 0, got {value!r}")


def _unit(instance, attribute, value) -> None:
    if not 0 < value < 1:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


def _above_fmin(instance, attribute, value) -> None:
    positive(instance, attribute, value)
    if value <= instance.fmin:
        raise ValueError(f"{attribute.name} must be above fmin ({instance.fmin}), got {value!r}")


@attrs.frozen
class MidiMelodyConfig:
    """Which notes of a MIDI file are the melody.

    The notes of one track and channel are taken (drums, channel 10, never): ``track`` (index
    in the file, 0 is the first) and/or ``channel`` (1..16) when given, else the part whose
    track name says melody, lead, vocal, voice, solo or tune, else, among the parts with at
    least ``min_share`` of the notes of the busiest part, the one-line parts (at most 10% of
    notes overlapping the one before) if any, the one with the highest average pitch.
    Its chords are reduced to one line: the ``highest`` (or ``lowest``) sounding note.
    """

    suffixes: ClassVar[tuple[str, ...]] = (".mid", ".midi")

    track: int | None = attrs.field(default=None, validator=_track)
    channel: int | None = attrs.field(default=None, validator=_channel)
    voice: Literal["highest", "lowest"] = attrs.field(default="highest", validator=attrs.validators.in_(("highest", "lowest")))
    min_share: float = attrs.field(default=0.25, validator=_unit)


@attrs.frozen
class AudioMelodyConfig:
    """Pitch tracking (YIN on torch): frame-wise f0 between ``fmin`` and ``fmax`` Hz, voiced where
    the YIN dip is below ``threshold`` and the frame is within ``silence_db`` of the loudest,
    median-smoothed, then cut into notes of at least ``min_note_seconds``."""

    suffixes: ClassVar[tuple[str, ...]] = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")

    fmin: float = attrs.field(default=60.0, validator=positive)
    fmax: float = attrs.field(default=1600.0, validator=_above_fmin)
    threshold: float = attrs.field(default=0.15, validator=_unit)
    silence_db: float = attrs.field(default=35.0, validator=positive)
    min_note_seconds: float = attrs.field(default=0.06, validator=positive)


@hookimpl
def register_melody_sources(register):
    register("midi", f"{_IMPL}:build_midi", config=MidiMelodyConfig, needs_weights=False,
             description="melody line of a MIDI file (.mid, .midi): one track's highest voice")
    register("audio", f"{_IMPL}:build_audio", config=AudioMelodyConfig, needs_weights=False,
             description="pitch-tracked melody of a recording (humming, whistling, an instrument): YIN")
