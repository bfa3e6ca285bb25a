"""The ``midi`` and ``audio`` melody sources (configs and registration: :mod:`.melody_plugin`).

``midi`` reads a Standard MIDI File with ``mido``, converts ticks to seconds through the
file's tempo map, groups notes by (track, channel), picks the melody part (see
:class:`~cadenza.plugins.melody.MidiMelodyConfig`) and reduces it to one line
(a skyline: of notes starting together the highest is kept, a lower note starting under a
sounding higher one is dropped, a sounding note is cut where a higher one starts).

``audio`` tracks the pitch of a recording with YIN (de Cheveigne & Kawahara 2002) on torch:
the cumulative-mean-normalised difference function of each 64 ms frame (10 ms hop, 16 kHz),
the first dip below ``threshold`` (else none: unvoiced), refined by a parabola; frames far
below the loudest are unvoiced. The contour (in MIDI pitch) is median-filtered over 5 frames
and cut into notes (:func:`cadenza.core.steering.melody.notes_from_contour`). Its accuracy on rendered
corpus melodies is measured in ``docs/generation.md``.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from cadenza.core.errors import InputError
from cadenza.core.steering.melody import Melody, Note, notes_from_contour
from cadenza.core.audio.io import resample
from cadenza.core.audio.io import load_audio

MELODY_NAMES = ("melody", "lead", "vocal", "voice", "solo", "tune")
DRUM_CHANNEL = 9  # 0-based: General MIDI channel 10
TRACK_RATE = 16000  # Hz: the pitch tracker's sample rate
TRACK_WINDOW = 1024  # samples: YIN integration window (64 ms)
TRACK_HOP = 160  # samples: 10 ms
MEDIAN_FRAMES = 5
MAX_OVERLAP = 0.1  # a part with more overlapping notes than this is accompaniment, not a melody line


# -- MIDI ------------------------------------------------------------------------------------


def read_midi_parts(path: str) -> dict[tuple[int, int], dict[str, Any]]:
    """``{(track, channel 0-based): {"name": track name, "notes": [Note, ...]}}`` of a MIDI file."""
    try:
        import mido
    except ImportError:
        raise InputError("reading MIDI melodies needs the `mido` package: pip install mido") from None
    try:
        midi = mido.MidiFile(path)
    except Exception as exc:  # noqa: BLE001 - mido raises many types (OSError, EOFError, ValueError, KeyError)
        raise InputError(f"{path}: cannot read MIDI ({type(exc).__name__}: {exc})") from None
    if midi.type == 2:
        raise InputError(f"{path}: MIDI format 2 (independent sequences) is not supported")
    ticks_per_beat = midi.ticks_per_beat
    if not 0 < ticks_per_beat < 0x8000:  # 0: no timing at all; top bit set: SMPTE frames, not beats
        raise InputError(f"{path}: MIDI timing of {ticks_per_beat} ticks per beat is not supported "
                         "(need 1 to 32767; SMPTE time codes are not read)")
    tempos: list[tuple[int, int]] = []  # (absolute tick, microseconds per beat)
    for track in midi.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempos.append((tick, msg.tempo))
    tempos.sort()
    if not tempos or tempos[0][0] > 0:
        tempos.insert(0, (0, 500000))
    marks, seconds = [], 0.0  # (tick, seconds at that tick, tempo from there)
    for i, (tick, tempo) in enumerate(tempos):
        if i:
            seconds += (tick - tempos[i - 1][0]) * tempos[i - 1][1] / 1e6 / ticks_per_beat
        marks.append((tick, seconds, tempo))

    def to_seconds(tick: int) -> float:
        base = next(m for m in reversed(marks) if m[0] <= tick)
        return base[1] + (tick - base[0]) * base[2] / 1e6 / ticks_per_beat

    parts: dict[tuple[int, int], dict[str, Any]] = {}
    for index, track in enumerate(midi.tracks):
        name, tick, sounding = "", 0, {}
        for msg in track:
            tick += msg.time
            if msg.type == "track_name" and not name:
                name = msg.name
            elif msg.type in ("note_on", "note_off"):
                key = (msg.channel, msg.note)
                if key in sounding:  # a note-off, or a repeated note-on ending the one before
                    start, velocity = sounding.pop(key)
                    if tick > start:
                        part = parts.setdefault((index, msg.channel), {"name": name, "notes": []})
                        part["notes"].append(Note(to_seconds(start), to_seconds(tick), msg.note, velocity))
                if msg.type == "note_on" and msg.velocity > 0:
                    sounding[key] = (tick, msg.velocity)
        for (channel, note), (start, velocity) in sounding.items():  # never released: ends with the track
            if tick > start:
                parts.setdefault((index, channel), {"name": name, "notes": []})["notes"].append(
                    Note(to_seconds(start), to_seconds(tick), note, velocity))
        for (i, _), part in parts.items():
            if i == index:
                part["name"] = name
    return parts


def choose_part(parts: dict[tuple[int, int], dict[str, Any]], config: Any, path: str) -> tuple[int, int]:
    """The (track, channel) holding the melody (see ``MidiMelodyConfig``)."""
    pitched = {key: part for key, part in parts.items() if key[1] != DRUM_CHANNEL and part["notes"]}
    if config.track is not None or config.channel is not None:
        chosen = [key for key in pitched if (config.track is None or key[0] == config.track)
                  and (config.channel is None or key[1] == config.channel - 1)]
        if not chosen:
            available = ", ".join(f"track {t} channel {c + 1}" for t, c in sorted(pitched)) or "none"
            raise InputError(f"{path}: no pitched notes in track={config.track} channel={config.channel}; "
                             f"parts with notes: {available}")
        return max(chosen, key=lambda key: len(pitched[key]["notes"]))
    if not pitched:
        raise InputError(f"{path}: no pitched notes (only drums, or no notes at all)")
    named = [key for key, part in pitched.items() if any(w in part["name"].lower() for w in MELODY_NAMES)]
    if named:
        return max(named, key=lambda key: len(pitched[key]["notes"]))
    busiest = max(len(part["notes"]) for part in pitched.values())
    candidates = [key for key, part in pitched.items() if len(part["notes"]) >= config.min_share * busiest]
    monophonic = [key for key in candidates if overlap_share(pitched[key]["notes"]) <= MAX_OVERLAP]
    return max(monophonic or candidates,
               key=lambda key: sum(n.pitch for n in pitched[key]["notes"]) / len(pitched[key]["notes"]))


def overlap_share(notes: list[Note]) -> float:
    """Share of a part's notes that start before the one before them ends (0: one line, ~1: chords)."""
    ordered = sorted(notes, key=lambda n: n.start)
    overlapping = sum(1 for a, b in itertools.pairwise(ordered) if b.start < a.end - 1e-3)
    return overlapping / max(1, len(ordered) - 1)


def skyline(notes: list[Note], highest: bool = True) -> list[Note]:
    """One line from a part: see the module docstring (``highest=False``: the lowest voice)."""
    sign = 1 if highest else -1
    out: list[Note] = []
    for note in sorted(notes, key=lambda n: (n.start, -sign * n.pitch)):
        if out and out[-1].end > note.start:
            last = out[-1]
            if note.start <= last.start or sign * note.pitch <= sign * last.pitch:
                continue
            out[-1] = Note(last.start, note.start, last.pitch, last.velocity)
        out.append(note)
    return out


class MidiMelodySource:
    """``source(path) -> Melody`` from a MIDI file."""

    def __init__(self, config: Any, context: Any = None):
        self.config = config

    def __call__(self, path: str, max_seconds: float | None = None) -> Melody:
        """All the file's notes: a MIDI file is small whatever it spans (``max_seconds`` is for audio)."""
        parts = read_midi_parts(path)
        track, channel = choose_part(parts, self.config, path)
        notes = skyline(parts[(track, channel)]["notes"], highest=self.config.voice == "highest")
        return Melody(tuple(notes), file=str(path), source="midi")


def build_midi(config: Any, context: Any) -> MidiMelodySource:
    return MidiMelodySource(config, context)


# -- audio -----------------------------------------------------------------------------------


def yin(audio: torch.Tensor, sample_rate: int, fmin: float = 60.0, fmax: float = 1600.0, threshold: float = 0.15,
        silence_db: float = 35.0) -> tuple[torch.Tensor, float]:
    """Mono audio ``[S]`` -> (f0 contour as MIDI pitch ``[T]``, NaN where unvoiced; frame rate).

    Frame ``t`` is the window starting at hop ``t`` (so its centre is ~32 ms later); the
    contour is shifted by half a window so that frame ``t`` describes time ``t / frame_rate``.
    """
    x = resample(audio.float().reshape(1, -1), sample_rate, TRACK_RATE)[0].double()
    tau_min = max(2, math.floor(TRACK_RATE / fmax))
    tau_max = min(TRACK_WINDOW - 1, math.ceil(TRACK_RATE / fmin))
    length = TRACK_WINDOW + tau_max
    frames_count = math.ceil(x.shape[0] / TRACK_HOP)
    shift = TRACK_WINDOW // 2
    x = F.pad(x, (shift, frames_count * TRACK_HOP + length - x.shape[0]))
    frames = x.unfold(0, length, TRACK_HOP)[:frames_count]  # [T, W + tau_max]
    size = 1 << math.ceil(math.log2(length + TRACK_WINDOW))
    spectrum = torch.fft.rfft(frames, size)
    head = torch.fft.rfft(frames[:, :TRACK_WINDOW], size)
    corr = torch.fft.irfft(spectrum * head.conj(), size)[:, : tau_max + 1]  # r(tau) = sum_j x_j x_{j+tau}
    energy = F.pad(frames.pow(2).cumsum(-1), (1, 0))
    e_tau = energy[:, TRACK_WINDOW: TRACK_WINDOW + tau_max + 1] - energy[:, : tau_max + 1]  # sum x_{tau..tau+W}^2
    diff = (energy[:, TRACK_WINDOW: TRACK_WINDOW + 1] + e_tau - 2 * corr).clamp(min=0)
    taus = torch.arange(tau_max + 1, dtype=diff.dtype)
    cumulative = diff[:, 1:].cumsum(-1).clamp(min=1e-12)
    cmnd = torch.cat([torch.ones_like(diff[:, :1]), diff[:, 1:] * taus[1:] / cumulative], -1)
    search = cmnd[:, tau_min:]
    below = search < threshold
    first = below.float().argmax(-1)
    # walk down to the bottom of the dip that first crosses the threshold
    tau = first.clone()
    for _ in range(tau_max):
        nxt = (tau + 1).clamp(max=search.shape[1] - 1)
        moving = search.gather(1, nxt[:, None])[:, 0] < search.gather(1, tau[:, None])[:, 0]
        if not moving.any():
            break
        tau = torch.where(moving, nxt, tau)
    tau = tau + tau_min
    left = cmnd.gather(1, (tau - 1).clamp(min=0)[:, None])[:, 0]
    mid = cmnd.gather(1, tau[:, None])[:, 0]
    right = cmnd.gather(1, (tau + 1).clamp(max=tau_max)[:, None])[:, 0]
    curve = left - 2 * mid + right
    delta = torch.where(curve > 0, 0.5 * (left - right) / curve.clamp(min=1e-12), torch.zeros_like(curve)).clamp(-1, 1)
    f0 = TRACK_RATE / (tau.double() + delta)
    rms = frames[:, :TRACK_WINDOW].pow(2).mean(-1)
    loud = rms > rms.max().clamp(min=1e-12) * 10 ** (-silence_db / 10)
    voiced = below.any(-1) & loud & (f0 >= fmin) & (f0 <= fmax)
    pitch = torch.where(voiced, 69 + 12 * torch.log2(f0 / 440.0), torch.full_like(f0, float("nan")))
    return median_contour(pitch.float(), MEDIAN_FRAMES), TRACK_RATE / TRACK_HOP


def median_contour(pitch: torch.Tensor, width: int) -> torch.Tensor:
    """Median of each voiced frame's voiced neighbours (``width`` frames): octave blips and
    one-frame glitches go, note boundaries stay. Unvoiced frames stay unvoiced."""
    half = width // 2
    padded = F.pad(pitch[None, None], (half, half), value=float("nan"))[0, 0]
    windows = padded.unfold(0, width, 1)
    smoothed = windows.nanmedian(-1).values
    return torch.where(torch.isnan(pitch), pitch, smoothed)


class AudioMelodySource:
    """``source(path) -> Melody`` from a recording, by pitch tracking."""

    def __init__(self, config: Any, context: Any = None):
        self.config = config

    def contour(self, audio: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, float]:
        """``[C, S]`` audio -> (MIDI pitch contour ``[T]``, NaN unvoiced; frame rate)."""
        cfg = self.config
        return yin(audio.float().mean(0), sample_rate, cfg.fmin, cfg.fmax, cfg.threshold, cfg.silence_db)

    def __call__(self, path: str, max_seconds: float | None = None) -> Melody:
        audio, rate = load_audio(Path(path), max_seconds, what="melody file")
        pitch, frame_rate = self.contour(audio, rate)
        notes = notes_from_contour(pitch.tolist(), frame_rate, self.config.min_note_seconds)
        if not notes:
            raise InputError(f"{path}: no melody found (no pitched sound between {self.config.fmin:g} and "
                             f"{self.config.fmax:g} Hz lasting {self.config.min_note_seconds:g} s)")
        return Melody(tuple(notes), file=str(path), source="audio", audio=audio.float().mean(0), sample_rate=rate)


def build_audio(config: Any, context: Any) -> AudioMelodySource:
    return AudioMelodySource(config, context)
