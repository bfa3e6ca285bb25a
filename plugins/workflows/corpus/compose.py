"""Procedural composition for ``cadenza corpus``: clip attributes -> a multi-track MIDI song.

Every clip is a short piece in 4/4: a lead melody (the labelled instrument, in the key and
the register asked for, built from rhythmic cells and a motif that repeats over the chord
changes), an accompaniment (sustained chords, an arpeggio or rhythmic stabs) on another
instrument, a bass line, and optionally a drum groove on General MIDI channel 10. Everything
random comes from the ``numpy.random.Generator`` passed in, so a clip is a pure function of
its attributes and its seed. The dynamics attribute changes only velocities and the
volume/expression controllers (CC7/CC11), never a random draw, so a "soft" and a "loud"
clip of the same seed play the same notes.

The Standard MIDI File writer is here too (format 1, 480 ticks per beat): a few dozen lines
of the standard, so the corpus needs no MIDI library.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- attributes

# Lead instrument families: family -> (General MIDI programs (0-based) with their GM names,
# the lead's usable range as MIDI notes (low, high)).
INSTRUMENTS: dict[str, tuple[tuple[tuple[int, str], ...], tuple[int, int]]] = {
    "piano": (((0, "Acoustic Grand Piano"), (1, "Bright Acoustic Piano")), (45, 88)),
    "electric piano": (((4, "Electric Piano 1"), (5, "Electric Piano 2")), (45, 84)),
    "organ": (((16, "Drawbar Organ"), (19, "Church Organ")), (45, 84)),
    "acoustic guitar": (((24, "Acoustic Guitar (nylon)"), (25, "Acoustic Guitar (steel)")), (45, 81)),
    "electric guitar": (((26, "Electric Guitar (jazz)"), (27, "Electric Guitar (clean)")), (45, 81)),
    "strings": (((48, "String Ensemble 1"), (49, "String Ensemble 2")), (45, 86)),
    "violin": (((40, "Violin"),), (57, 93)),
    "cello": (((42, "Cello"),), (38, 72)),
    "brass": (((61, "Brass Section"), (56, "Trumpet")), (50, 80)),
    "saxophone": (((65, "Alto Sax"), (66, "Tenor Sax")), (46, 78)),
    "flute": (((73, "Flute"),), (60, 93)),
    "clarinet": (((71, "Clarinet"),), (50, 86)),
    "synth lead": (((80, "Lead 1 (square)"), (81, "Lead 2 (sawtooth)")), (45, 89)),
    "vibraphone": (((11, "Vibraphone"),), (53, 89)),
    "marimba": (((12, "Marimba"),), (45, 89)),
    "harp": (((46, "Orchestral Harp"),), (40, 91)),
}
TEMPO_CLASSES: dict[str, tuple[int, int]] = {"slow": (60, 80), "medium": (90, 115), "fast": (125, 160)}  # BPM, inclusive
MODES = ("major", "minor")
# Tonic spellings as musicians write them: flats for major keys, sharps where minor keys use them.
TONICS = {
    "major": ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"),
    "minor": ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B"),
}
REGISTERS = ("low", "mid", "high")
DYNAMICS = ("soft", "loud")
DRUMS = ("none", "rock", "dance", "jazz", "latin", "hip-hop")
ACCOMPANIMENTS = ("chords", "arpeggio", "stabs")
# Accompanying instruments (family name, GM program); never the lead's own family.
ACCOMPANIMENT_INSTRUMENTS = (
    ("piano", 0), ("electric piano", 4), ("strings", 48), ("synth pad", 89),
    ("acoustic guitar", 24), ("organ", 16), ("harp", 46),
)
BASSES = {"acoustic bass": 32, "electric bass": 33, "synth bass": 38}

# Velocity, CC7 (channel volume) and CC11 (expression) per dynamics class.
# With the renderer's fixed gain, loud clips average about -20 dBFS RMS and soft ones about 12 dB less.
DYNAMICS_LEVELS = {"soft": {"velocity": 66, "cc7": 104, "cc11": 118}, "loud": {"velocity": 108, "cc7": 120, "cc11": 127}}

_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# Chord progressions as scale degrees (0 = tonic), one chord per bar.
_PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 0), (5, 3, 0, 4), (0, 5, 3, 4), (1, 4, 0, 0), (0, 3, 0, 4), (3, 4, 2, 5)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4), (5, 6, 0, 0), (0, 2, 3, 4)),
}
TICKS_PER_BEAT = 480
REGISTER_POSITION = {"low": 0.22, "mid": 0.5, "high": 0.78}  # lead centre within the family's range


def tonic_pitch_class(key: str) -> int:
    for names in TONICS.values():
        if key in names:
            return names.index(key)
    raise ValueError(f"unknown key {key!r}")


def register_centre(instrument: str, register: str) -> int:
    low, high = INSTRUMENTS[instrument][1]
    return round(low + (high - low) * REGISTER_POSITION[register])


# --------------------------------------------------------------------------- song model


@dataclass
class Track:
    name: str
    channel: int  # 0-based; 9 is General MIDI percussion
    program: int
    notes: list[tuple[float, float, int, int]] = field(default_factory=list)  # (start beat, length, pitch, velocity)
    volume: int = 100  # CC7
    expression: int = 127  # CC11
    pan: int = 64  # CC10
    reverb: int = 40  # CC91


@dataclass
class Song:
    bpm: int
    beats: float  # the song ends here; notes are cut at this point
    tracks: list[Track]
    key: str = "C"
    mode: str = "major"

    def seconds_per_beat(self) -> float:
        return 60.0 / self.bpm

    def to_midi(self) -> bytes:
        """A format-1 Standard MIDI File: a conductor track, then one track per instrument."""
        end_tick = round(self.beats * TICKS_PER_BEAT)
        conductor: list[tuple[int, int, bytes]] = [
            (0, 0, b"\xff\x51\x03" + round(60_000_000 / self.bpm).to_bytes(3, "big")),  # tempo
            (0, 0, b"\xff\x58\x04\x04\x02\x18\x08"),  # 4/4
            (0, 0, b"\xff\x59\x02" + struct.pack("bB", _key_signature(self.key, self.mode), self.mode == "minor")),
        ]
        chunks = [_track_chunk(conductor, end_tick)]
        for track in self.tracks:
            ch = track.channel
            events: list[tuple[int, int, bytes]] = [(0, 0, b"\xff\x03" + _vlq(len(track.name)) + track.name.encode("ascii"))]
            if ch != 9:
                events.append((0, 1, bytes([0xC0 | ch, track.program])))
            for order, (cc, value) in enumerate(((7, track.volume), (11, track.expression), (10, track.pan), (91, track.reverb))):
                events.append((0, 2 + order, bytes([0xB0 | ch, cc, _clamp(value)])))
            for start, stop, pitch, velocity in _clean_notes(track.notes, end_tick):
                events.append((stop, 6, bytes([0x80 | ch, pitch, 64])))  # note-offs sort before note-ons at a tick
                events.append((start, 7, bytes([0x90 | ch, pitch, velocity])))
            # all sound off at the end: FluidSynth stops rendering tails nobody keeps (~20% faster)
            events.append((end_tick, 8, bytes([0xB0 | ch, 120, 0])))
            chunks.append(_track_chunk(events, end_tick))
        header = b"MThd" + struct.pack(">IHHH", 6, 1, len(chunks), TICKS_PER_BEAT)
        return header + b"".join(chunks)


def _clamp(value: float, low: int = 0, high: int = 127) -> int:
    return int(min(high, max(low, round(value))))


def _vlq(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _track_chunk(events: list[tuple[int, int, bytes]], end_tick: int) -> bytes:
    body = bytearray()
    now = 0
    for tick, _, data in sorted(events, key=lambda e: (e[0], e[1])):
        body += _vlq(tick - now) + data
        now = tick
    body += _vlq(max(0, end_tick - now)) + b"\xff\x2f\x00"  # end of track at the song's end
    return b"MTrk" + struct.pack(">I", len(body)) + bytes(body)


def _clean_notes(notes: list[tuple[float, float, int, int]], end_tick: int) -> list[tuple[int, int, int, int]]:
    """Notes in ticks, cut at the end, with a repeated pitch ending where its next onset starts."""
    ticked = []
    for start, length, pitch, velocity in notes:
        a = max(0, round(start * TICKS_PER_BEAT))
        b = min(end_tick, round((start + length) * TICKS_PER_BEAT))
        if a < end_tick and b > a and 0 <= pitch <= 127:
            ticked.append([a, b, int(pitch), _clamp(velocity, 1)])
    ticked.sort()
    last: dict[int, list[int]] = {}
    for note in ticked:
        previous = last.get(note[2])
        if previous is not None and previous[1] > note[0]:
            previous[1] = note[0]
        last[note[2]] = note
    return [tuple(n) for n in ticked if n[1] > n[0]]  # type: ignore[misc]


def _key_signature(key: str, mode: str) -> int:
    """Sharps (+) or flats (-) of the key as spelled, for the MIDI key-signature meta event."""
    key_pc = tonic_pitch_class(key)
    major_pc = key_pc if mode == "major" else (key_pc + 3) % 12
    fifths = (major_pc * 7) % 12  # position on the circle of fifths from C
    return fifths - 12 if fifths > 6 or (fifths == 6 and key.endswith("b")) else fifths


# --------------------------------------------------------------------------- composition

_CELLS = {  # rhythmic cells in beats; negative = rest. Weights per tempo class.
    1: ([1.0], [0.5, 0.5], [0.75, 0.25], [-0.5, 0.5], [0.25, 0.25, 0.5]),
    2: ([2.0], [1.5, 0.5], [0.5, 1.0, 0.5], [1.0, 1.0], [1.5, -0.5]),
}
_CELL_WEIGHTS = {
    "slow": {1: (3, 4, 2, 1, 2), 2: (1, 2, 2, 2, 1)},
    "medium": {1: (4, 4, 1, 1, 1), 2: (2, 2, 2, 2, 1)},
    "fast": {1: (5, 3, 1, 1, 0), 2: (3, 2, 1, 3, 1)},
}


def _choice(rng: np.random.Generator, options: Any, weights: Any = None) -> Any:
    if weights is None:
        return options[int(rng.integers(len(options)))]
    p = np.asarray(weights, dtype=float)
    return options[int(rng.choice(len(options), p=p / p.sum()))]


def _rhythm(rng: np.random.Generator, beats: int, tempo_class: str) -> list[float]:
    """Signed note lengths (negative = rest) filling ``beats`` beats."""
    out: list[float] = []
    left = beats
    while left > 0:
        size = 2 if left >= 2 and rng.random() < 0.5 else 1
        out += list(_choice(rng, _CELLS[size], _CELL_WEIGHTS[tempo_class][size]))
        left -= size
    return out


def _scale_pitches(key_pc: int, mode: str, low: int, high: int) -> list[int]:
    pcs = {(key_pc + i) % 12 for i in _SCALES[mode]}
    return [p for p in range(low, high + 1) if p % 12 in pcs]


def _chord_pcs(key_pc: int, mode: str, degree: int) -> list[int]:
    scale = _SCALES[mode]
    return [(key_pc + scale[(degree + k) % 7]) % 12 for k in (0, 2, 4)]


def _melody(rng: np.random.Generator, chords: list[list[int]], key_pc: int, mode: str, low: int, high: int,
            centre: int, tempo_class: str, bars: int) -> list[tuple[float, float, int, float]]:
    """(start, length, pitch, accent) of the lead: 2-bar motifs, repeated or renewed, over the chords."""
    span_low, span_high = max(low, centre - 7), min(high, centre + 7)
    pitches = _scale_pitches(key_pc, mode, span_low, span_high)
    notes: list[tuple[float, float, int, float]] = []
    motif: list[float] | None = None
    steps = np.array([-3, -2, -1, 0, 1, 2, 3])
    step_p = np.array([0.06, 0.14, 0.3, 0.06, 0.3, 0.1, 0.04])
    index = int(np.argmin([abs(p - centre) for p in pitches]))
    for unit in range(0, bars, 2):
        unit_beats = 4 * min(2, bars - unit)
        rhythm = _rhythm(rng, unit_beats, tempo_class) if motif is None or rng.random() < 0.45 else motif
        motif = rhythm if unit_beats == 8 else motif
        t = 4.0 * unit
        for n, length in enumerate(rhythm):
            if length < 0:
                t += -length
                continue
            chord = chords[min(int(t // 4), len(chords) - 1)]
            strong = (t % 2 == 0) or length >= 1.5
            index = int(np.clip(index + int(rng.choice(steps, p=step_p)), 0, len(pitches) - 1))
            if strong:  # land on the nearest chord tone
                tones = [i for i, p in enumerate(pitches) if p % 12 in chord]
                if tones:
                    index = min(tones, key=lambda i: (abs(i - index), rng.random()))
            last = n == len(rhythm) - 1
            notes.append((t, length, pitches[index], 1.0 if t % 4 == 0 else (0.5 if t % 1 == 0 else 0.0) + (0.3 if last else 0.0)))
            t += length
    return notes


def _voicing(chord: list[int], low: int, high: int, previous: list[int] | None) -> list[int]:
    """The close-position triad inside [low, high] closest to the previous voicing."""
    options = []
    for base in range(low, high - 6):
        if base % 12 in chord:
            voiced = sorted(base + ((pc - base) % 12) for pc in chord)
            if voiced[-1] <= high:
                options.append(voiced)
    if previous is None:
        mid = (low + high) / 2
        return min(options, key=lambda v: abs(sum(v) / 3 - mid))
    return min(options, key=lambda v: sum(abs(a - b) for a, b in zip(v, previous)))


def _accompaniment(rng: np.random.Generator, style: str, chords: list[list[int]], low: int, high: int,
                   tempo_class: str) -> list[tuple[float, float, int, float]]:
    notes: list[tuple[float, float, int, float]] = []
    voicing = None
    pattern = _choice(rng, ((0, 1, 2, 3), (0, 1, 2, 3, 2, 1), (0, 2, 1, 2), (0, 1, 2, 1)))
    step = 0.25 if tempo_class == "slow" and rng.random() < 0.5 else 0.5
    stab_rhythm = _choice(rng, ((0.5, 1.5, 2.5, 3.5), (0.0, 1.5, 3.0), (1.0, 3.0), (0.0, 0.75, 2.0, 2.5)))
    split = rng.random() < 0.4  # sustained chords: one per bar or two halves
    for bar, chord in enumerate(chords):
        voicing = _voicing(chord, low, high, voicing)
        t0 = 4.0 * bar
        if style == "chords":
            spans = ((0, 2), (2, 2)) if split else ((0, 4),)
            for start, length in spans:
                for pitch in voicing:
                    notes.append((t0 + start, length * 0.97, pitch, 1.0 if start == 0 else 0.5))
        elif style == "arpeggio":
            tones = voicing + [voicing[0] + 12]
            for k in range(int(4 / step)):
                notes.append((t0 + k * step, step * 0.95, tones[pattern[k % len(pattern)]], 1.0 if k == 0 else 0.3))
        else:  # stabs
            for start in stab_rhythm:
                for pitch in voicing:
                    notes.append((t0 + start, 0.3, pitch, 0.8))
    return notes


def _bass(rng: np.random.Generator, drums: str, tempo_class: str, roots: list[int], key_pc: int,
          mode: str) -> list[tuple[float, float, int, float]]:
    """Bass line from the chord roots (MIDI 36-47), in a pattern that suits the groove."""
    if drums == "jazz":
        kind = "walking"
    elif drums == "dance":
        kind = _choice(rng, ("offbeat", "eighths"))
    elif drums == "latin":
        kind = "bossa"
    elif drums == "hip-hop":
        kind = "syncopated"
    elif drums == "rock":
        kind = _choice(rng, ("eighths", "root-fifth"))
    else:
        kind = _choice(rng, ("whole", "halves", "root-fifth") if tempo_class != "fast" else ("halves", "root-fifth"))
    scale = _scale_pitches(key_pc, mode, 28, 60)
    notes: list[tuple[float, float, int, float]] = []
    for bar, root_pc in enumerate(roots):
        root = 36 + (root_pc - 36) % 12
        fifth = root + 7
        t0 = 4.0 * bar
        if kind == "whole":
            hits = [(0, 3.9, root)]
        elif kind == "halves":
            hits = [(0, 1.9, root), (2, 1.9, fifth if rng.random() < 0.6 else root)]
        elif kind == "root-fifth":
            hits = [(0, 0.9, root), (1, 0.9, fifth), (2, 0.9, root + 12 if rng.random() < 0.3 else root), (3, 0.9, fifth)]
        elif kind == "eighths":
            hits = [(k * 0.5, 0.45, root) for k in range(8)]
        elif kind == "offbeat":
            hits = [(k + 0.5, 0.4, root + 12 * (k % 2)) for k in range(4)]
        elif kind == "bossa":
            hits = [(0, 1.4, root), (1.5, 0.5, fifth), (2, 1.4, fifth), (3.5, 0.5, root)]
        elif kind == "syncopated":
            hits = [(0, 0.7, root), (0.75, 0.5, root), (2.5, 1.2, root if rng.random() < 0.5 else fifth)]
        else:  # walking: four quarters stepping toward the next bar's root
            next_root = 36 + (roots[(bar + 1) % len(roots)] - 36) % 12
            i = scale.index(root) if root in scale else int(np.argmin([abs(p - root) for p in scale]))
            direction = 1 if next_root >= root else -1
            walk = [root] + [scale[int(np.clip(i + direction * k, 0, len(scale) - 1))] for k in (1, 2)]
            walk.append(next_root + (1 if rng.random() < 0.5 else -1))  # chromatic approach note
            hits = [(k, 0.9, p) for k, p in enumerate(walk)]
        notes += [(t0 + s, length, p, 1.0 if s == 0 else 0.6) for s, length, p in hits]
    return notes


# Drum grooves: (beat within the bar, GM percussion note, accent 0..1). One bar, repeated.
_KICK, _SNARE, _STICK, _CLAP, _HAT, _HAT_PEDAL, _OPEN_HAT, _CRASH, _RIDE, _CONGA_HI, _CONGA_LO, _SHAKER = (
    36, 38, 37, 39, 42, 44, 46, 49, 51, 62, 64, 70)
_TRIPLET = 2 / 3
_GROOVES: dict[str, list[tuple[float, int, float]]] = {
    "rock": [(0, _KICK, 1), (2, _KICK, 0.9), (2.5, _KICK, 0.6), (1, _SNARE, 1), (3, _SNARE, 1)]
    + [(k * 0.5, _HAT, 0.7 if k % 2 == 0 else 0.45) for k in range(8)],
    "dance": [(k, _KICK, 1) for k in range(4)] + [(1, _CLAP, 0.9), (3, _CLAP, 0.9)]
    + [(k + 0.5, _OPEN_HAT, 0.6) for k in range(4)] + [(k * 0.25, _HAT, 0.3) for k in range(16) if k % 2 == 1],
    "jazz": [(0, _RIDE, 0.8), (1, _RIDE, 0.9), (1 + _TRIPLET, _RIDE, 0.5), (2, _RIDE, 0.8), (3, _RIDE, 0.9),
             (3 + _TRIPLET, _RIDE, 0.5), (1, _HAT_PEDAL, 0.6), (3, _HAT_PEDAL, 0.6), (0, _KICK, 0.35),
             (2 + _TRIPLET, _SNARE, 0.25)],
    "latin": [(0, _KICK, 0.9), (1.5, _KICK, 0.6), (2, _KICK, 0.9), (3.5, _KICK, 0.6),
              (0, _STICK, 0.8), (0.75, _STICK, 0.7), (1.5, _STICK, 0.7), (2.5, _STICK, 0.8), (3, _STICK, 0.7),
              (1, _CONGA_HI, 0.5), (3.5, _CONGA_LO, 0.6)] + [(k * 0.25, _SHAKER, 0.35 + 0.2 * (k % 2 == 0)) for k in range(16)],
    "hip-hop": [(0, _KICK, 1), (0.75, _KICK, 0.7), (2.5, _KICK, 0.85), (1, _SNARE, 1), (3, _SNARE, 1)]
    + [(k * 0.5 + (0.08 if k % 2 else 0), _HAT, 0.55 if k % 2 == 0 else 0.4) for k in range(8)],
}


def _drums(style: str, bars: int) -> list[tuple[float, float, int, float]]:
    notes = []
    for bar in range(bars):
        for beat, note, accent in _GROOVES[style]:
            notes.append((4.0 * bar + beat, 0.2, note, accent))
        if bar == 0 and style in ("rock", "dance"):
            notes.append((0.0, 0.2, _CRASH, 0.8))
    return notes


def _velocities(rng: np.random.Generator, notes: list[tuple[float, float, int, float]], base: float, depth: float,
                jitter: float, timing: float) -> list[tuple[float, float, int, int]]:
    """Humanise: accents, small velocity and timing jitter (drawn whatever the dynamics)."""
    out = []
    noise = rng.normal(0.0, 1.0, size=(len(notes), 2))
    for (start, length, pitch, accent), (dv, dt) in zip(notes, noise):
        shift = 0.0 if start == 0 else float(dt) * timing
        velocity = base * (1.0 - depth + depth * accent) + float(dv) * jitter
        out.append((max(0.0, start + shift), length, pitch, _clamp(velocity, 1)))
    return out


def compose(attributes: dict[str, Any], rng: np.random.Generator, seconds: float) -> Song:
    """The song of one clip: ``attributes`` as in a corpus manifest record (instrument, program,
    bpm, tempo_class, key, mode, register, dynamics, drums, accompaniment, accompaniment_program,
    bass_program). Notes stop at ``seconds``."""
    bpm = int(attributes["bpm"])
    mode = attributes["mode"]
    key_pc = tonic_pitch_class(attributes["key"])
    tempo_class = attributes["tempo_class"]
    drums = attributes["drums"]
    instrument = attributes["instrument"]
    beats = seconds * bpm / 60.0
    bars = max(1, math.ceil(beats / 4))

    progression = list(_choice(rng, _PROGRESSIONS[mode]))
    degrees = [progression[b % len(progression)] for b in range(bars)]
    chords = [_chord_pcs(key_pc, mode, d) for d in degrees]
    low, high = INSTRUMENTS[instrument][1]
    centre = register_centre(instrument, attributes["register"])

    lead = _melody(rng, chords, key_pc, mode, low, high, centre, tempo_class, bars)
    # Accompaniment sits below a high lead and above a low one.
    acc_low, acc_high = (60, 76) if attributes["register"] == "low" else ((50, 66) if attributes["register"] == "high" else (53, 70))
    accomp = _accompaniment(rng, attributes["accompaniment"], chords, acc_low, acc_high, tempo_class)
    bass = _bass(rng, drums, tempo_class, [c[0] for c in chords], key_pc, mode)
    groove = _drums(drums, bars) if drums != "none" else []

    level = DYNAMICS_LEVELS[attributes["dynamics"]]
    loudness = level["velocity"] + float(rng.normal(0.0, 3.0))
    legato = 0.97 if instrument in ("organ", "strings", "violin", "cello", "flute", "clarinet", "brass", "saxophone") else 0.9
    lead_notes = [(s, l * legato, p, v) for s, l, p, v in _velocities(rng, lead, loudness, 0.25, 4.0, 0.01)]
    tracks = [
        Track("lead", 0, int(attributes["program"]), lead_notes, level["cc7"], level["cc11"], 70, 40),
        Track("accompaniment", 1, int(attributes["accompaniment_program"]),
              _velocities(rng, accomp, loudness * 0.78, 0.2, 3.0, 0.008), level["cc7"] - 6, level["cc11"], 44, 50),
        Track("bass", 2, int(attributes["bass_program"]), _velocities(rng, bass, loudness * 0.9, 0.2, 3.0, 0.006),
              level["cc7"], level["cc11"], 64, 20),
    ]
    if groove:
        tracks.append(Track("drums", 9, 0, _velocities(rng, groove, loudness * 0.95, 0.6, 4.0, 0.004),
                            level["cc7"], level["cc11"], 64, 30))
    return Song(bpm=bpm, beats=beats, tracks=tracks, key=attributes["key"], mode=mode)
