"""A melody to follow, and how it becomes semantic tokens that steer the semantic stage.

A :class:`Melody` is a list of notes ``(start_s, end_s, midi_pitch, velocity)``: what a MIDI
file's melody line holds, and what a pitch tracker's contour turns into (a melody source
plugin, kind ``melody_source``, reads a file into one). Notes are the one representation
because every way of getting semantic tokens starts from them:

* a semantic tokenizer with ``tokenize_notes(notes, seconds)`` (``music-features``) maps the
  notes straight into the space its centroids were fitted in;
* any other one gets the notes rendered to audio (:func:`synthesize`: a few harmonics per
  note, a short attack and release) and ``tokenize``-s that, so every semantic tokenizer works.

Those tokens then steer the semantic stage (:func:`semantic_prefix`, :func:`guided_model`):

* **forced** (the default): the melody's tokens *are* the semantic stream for the melody's
  length; they are the written prefix of the semantic stage, which only continues them
  when the output is longer than the melody (and is skipped when it is not). The coarse and
  fine stages read them exactly as they read semantic tokens of real audio, with the text as
  their conditioning: the text sets instrument and mood, the melody the pitches.
* **guided** (``strength``): the semantic stage runs as usual, but its logits get ``strength``
  added to the melody's token at each frame the melody covers: a nudge that the text and the
  stage's own model can outweigh. Large strengths approach forcing.

A stage model that hears a melody's sound (MusicGen-melody's chroma; it has
``melody_sample_rate``) takes neither: it gets the melody as audio (:func:`melody_audio`: the
recording a source read, else the notes rendered by :func:`synthesize`), each long-form window
from its own start (:func:`melody_window`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from cadenza.core.audio.io import resample
from cadenza.core.errors import InputError
from cadenza.core.files.user_text import check_regular_file
from cadenza.core.spec.yaml_source import load_yaml
from cadenza.core.spec.params import ParamsError, structure_config
from cadenza.registry import get_registry

if TYPE_CHECKING:
    import torch

SYNTH_HARMONICS = 6  # partials of a rendered note, amplitude 1/h
SYNTH_ATTACK = 0.01  # seconds
SYNTH_RELEASE = 0.03  # seconds (inside the note: a repeated pitch gets a gap)
SYNTH_LEVEL = 0.25  # peak amplitude of one note at velocity 127


@attrs.frozen
class Note:
    """One note: seconds from the start of the melody, a MIDI pitch 0..127, a velocity 1..127."""

    start: float
    end: float
    pitch: int
    velocity: int = 100

    def as_tuple(self) -> tuple[float, float, int, int]:
        return (self.start, self.end, self.pitch, self.velocity)


def check_notes(notes: Sequence[Any], where: str = "melody") -> tuple[Note, ...]:
    """Notes (``Note`` or ``(start, end, pitch[, velocity])``) checked and sorted by start."""
    out = []
    for i, note in enumerate(notes):
        if not isinstance(note, Note):
            if not isinstance(note, (tuple, list)) or len(note) not in (3, 4):
                raise InputError(f"{where}: note {i}: expected (start_s, end_s, midi_pitch[, velocity]), got {note!r}")
            note = Note(*note) if len(note) == 4 else Note(note[0], note[1], note[2])
        start, end, pitch, velocity = note.as_tuple()
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (start, end, pitch, velocity)):
            raise InputError(f"{where}: note {i}: values must be numbers, got {note.as_tuple()!r}")
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise InputError(f"{where}: note {i}: needs 0 <= start < end seconds, got ({start!r}, {end!r})")
        if int(pitch) != pitch or not 0 <= pitch <= 127:
            raise InputError(f"{where}: note {i}: pitch must be a MIDI note 0..127, got {pitch!r}")
        if not 1 <= velocity <= 127:
            raise InputError(f"{where}: note {i}: velocity must be 1..127, got {velocity!r}")
        out.append(Note(float(start), float(end), int(pitch), round(velocity)))
    return tuple(sorted(out, key=lambda n: (n.start, -n.pitch)))


@attrs.frozen
class Melody:
    """A melody line: its notes, plus where it came from (for the sidecar)."""

    notes: tuple[Note, ...] = attrs.field(converter=check_notes)
    file: str | None = None
    source: str = ""
    # The recording the notes were heard in (``[S]`` mono float at ``sample_rate``), kept by
    # sources that read audio: a stage conditioned by a melody's sound (MusicGen-melody's
    # chroma) hears it, not a rendering of the notes. None for notes alone (MIDI).
    audio: Any = attrs.field(default=None, eq=False, repr=False)
    sample_rate: int | None = None

    @property
    def seconds(self) -> float:
        """Where the last note ends."""
        return max((n.end for n in self.notes), default=0.0)

    def describe(self) -> dict[str, Any]:
        """What a sidecar records about it."""
        pitches = [n.pitch for n in self.notes]
        return {"file": self.file, "source": self.source, "notes": len(self.notes), "seconds": round(self.seconds, 4),
                "pitch_range": [min(pitches), max(pitches)] if pitches else None}

    def contour(self, frame_rate: float, frames: int) -> torch.Tensor:
        """The melody as a frame-wise MIDI pitch ``[frames]`` float (NaN where no note sounds):
        the highest note covering each frame's centre."""
        import torch

        out = torch.full((frames,), float("nan"))
        centres = (torch.arange(frames, dtype=torch.float64) + 0.5) / frame_rate
        for note in self.notes:
            covered = (centres >= note.start) & (centres < note.end)
            out[covered] = torch.where(torch.isnan(out[covered]), torch.tensor(float(note.pitch)),
                                       torch.clamp(out[covered], min=float(note.pitch)))
        return out


def notes_from_contour(pitch: Sequence[float], frame_rate: float, min_seconds: float = 0.06,
                       velocity: int = 100) -> list[Note]:
    """A frame-wise MIDI pitch contour (NaN = unvoiced) -> notes: runs of frames on the same
    rounded pitch, each at least ``min_seconds`` long (shorter runs, e.g. a glide between two
    notes, are dropped)."""
    notes: list[Note] = []
    run_start, run_pitch = 0, None
    values = [None if v is None or not math.isfinite(float(v)) else round(float(v)) for v in pitch] + [None]
    for t, p in enumerate(values):
        if p == run_pitch:
            continue
        if run_pitch is not None and (t - run_start) / frame_rate >= min_seconds and 0 <= run_pitch <= 127:
            notes.append(Note(run_start / frame_rate, t / frame_rate, int(run_pitch), velocity))
        run_start, run_pitch = t, p
    return notes


def synthesize(notes: Sequence[Note], sample_rate: int, seconds: float) -> torch.Tensor:
    """Render notes as ``[1, 1, S]`` float audio: additive synthesis, harmonics at 1/h amplitude
    (below Nyquist), a linear attack and release, amplitude by velocity. Only used to get a
    melody into semantic tokenizers that read audio, so plain and deterministic is the point."""
    import torch

    total = round(seconds * sample_rate)
    out = torch.zeros(total, dtype=torch.float64)
    for note in notes:
        a, b = round(note.start * sample_rate), min(round(note.end * sample_rate), total)
        if b <= a:
            continue
        t = torch.arange(b - a, dtype=torch.float64) / sample_rate
        f0 = 440.0 * 2 ** ((note.pitch - 69) / 12)
        wave = sum(torch.sin(2 * math.pi * h * f0 * t) / h for h in range(1, SYNTH_HARMONICS + 1)
                   if h * f0 < sample_rate / 2)
        length = t[-1] + 1 / sample_rate
        envelope = torch.clamp(torch.minimum(t / SYNTH_ATTACK, (length - t) / SYNTH_RELEASE), 0, 1)
        out[a:b] += SYNTH_LEVEL * note.velocity / 127 * envelope * wave
    return out.clamp(-1, 1).float()[None, None]


def _fit(ids: torch.Tensor, frames: int) -> torch.Tensor:
    """``[T']`` ids cut or padded (repeating the last id) to ``frames``."""
    import torch

    if ids.shape[0] >= frames:
        return ids[:frames]
    last = ids[-1:] if ids.shape[0] else torch.zeros(1, dtype=torch.long, device=ids.device)
    return torch.cat([ids, last.expand(frames - ids.shape[0])])


def melody_tokens(tokenizer: Any, info: Any, melody: Melody, seconds: float) -> torch.Tensor:
    """The semantic ids ``[frames]`` (int64) of the first ``seconds`` of ``melody`` for a semantic
    tokenizer with ``info`` (:class:`SemanticInfo`): ``tokenize_notes`` when it has one, else
    ``tokenize`` of the melody rendered by :func:`synthesize`."""
    import torch

    frames = max(0, math.ceil(seconds * info.frame_rate - 1e-9))
    notes = [n for n in melody.notes if n.start < seconds]
    if not notes:
        raise InputError(f"{melody.file or 'melody'}: no note starts within the {seconds:g} s to generate")
    with torch.inference_mode():
        if callable(getattr(tokenizer, "tokenize_notes", None)):
            ids = tokenizer.tokenize_notes([n.as_tuple() for n in notes], seconds)
        else:
            audio = synthesize(notes, info.sample_rate, seconds)
            device = next((p.device for p in getattr(tokenizer, "buffers", lambda: iter(()))()), None)
            ids = tokenizer.tokenize(audio if device is None else audio.to(device))[0]
    return _fit(ids.reshape(-1).long().cpu(), frames)


def melody_audio(rows: list[Melody], sample_rate: int, seconds: float) -> list[torch.Tensor]:
    """Each row's melody as ``[S]`` mono audio at ``sample_rate``, at most ``seconds`` long: the
    recording it was read from, or else its notes rendered by :func:`synthesize` (a MIDI file).

    For stage models conditioned by a melody's sound (``melody_sample_rate``). A rendering is
    used rather than the notes themselves so that there is one path from a melody to such a
    model: its own features of audio, with the smearing of its own analysis window, as in
    training; a pitch tracker's or a third-party source's notes work the same way.
    """
    out = []
    for melody in rows:
        if melody.audio is not None and melody.sample_rate:
            audio = resample(melody.audio.float().reshape(1, 1, -1), melody.sample_rate, sample_rate)[0, 0]
            audio = audio[: max(1, round(seconds * sample_rate))]
        else:
            notes = [n for n in melody.notes if n.start < seconds]
            if not notes:
                raise InputError(f"{melody.file or 'melody'}: no note starts within the {seconds:g} s to generate")
            audio = synthesize(notes, sample_rate, min(melody.seconds, seconds))[0, 0]
        out.append(audio)
    return out


def melody_window(rows: Sequence[torch.Tensor], start: int) -> torch.Tensor:
    """``[B, S]``: each row's melody audio from sample ``start`` on, cycled (a window past the
    melody's end hears it again from its start, as audiocraft's windows and the library's
    repeat of a short chroma do), rows padded with silence to the longest."""
    import torch

    cycled = [torch.roll(audio, -(start % audio.shape[0])) for audio in rows]
    longest = max(a.shape[0] for a in cycled)
    return torch.stack([torch.nn.functional.pad(a, (0, longest - a.shape[0])) for a in cycled])


def check_strength(strength: float | None) -> float | None:
    """None (forced), or a finite guidance strength > 0 (a logit bonus)."""
    if strength is None:
        return None
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength) \
            or strength <= 0:
        raise InputError(f"melody strength must be a positive number (a logit bonus), got {strength!r}")
    return float(strength)


def melody_rows(melody: Any, batch: int) -> list[Melody] | None:
    """``melody`` (None, one :class:`Melody`, or one per prompt) -> one per row, or None."""
    if melody is None:
        return None
    if isinstance(melody, Melody):
        return [melody] * batch
    if isinstance(melody, (str, bytes, Path)) or not isinstance(melody, Sequence):
        raise InputError(f"melody must be a Melody or one per prompt, got {type(melody).__name__}")
    rows = list(melody)
    if len(rows) != batch:
        raise InputError(f"got {len(rows)} melodies for {batch} prompts")
    if any(m is None for m in rows):
        if all(m is None for m in rows):
            return None
        raise InputError("give a melody for every prompt of a batch or for none (they are generated together)")
    if not all(isinstance(m, Melody) for m in rows):
        raise InputError("every melody must be a Melody (see cadenza.core.steering.melody)")
    return rows


def semantic_prefix(tokenizer: Any, info: Any, rows: list[Melody], seconds: float) -> torch.Tensor:
    """Forced mode: the melody tokens ``[B, 1, T]`` every row's semantic stream starts with.

    ``T`` covers the longest melody of the batch, at most ``seconds`` (a shorter melody of the
    batch is followed by the tokens of its silence up to there); past ``T`` the semantic stage
    continues the stream.
    """
    import torch

    length = min(max(m.seconds for m in rows), seconds)
    return torch.stack([melody_tokens(tokenizer, info, m, length) for m in rows])[:, None]


def guidance_bias(tokenizer: Any, info: Any, rows: list[Melody], seconds: float, strength: float,
                  vocab_size: int) -> torch.Tensor:
    """Guided mode: ``[B, T, V]`` logit bonus, ``strength`` on each row's melody token at each
    frame its melody covers (``T``: frames of ``seconds``), 0 elsewhere."""
    import torch

    frames = max(0, math.ceil(seconds * info.frame_rate - 1e-9))
    bias = torch.zeros(len(rows), frames, vocab_size)
    for row, melody in enumerate(rows):
        ids = melody_tokens(tokenizer, info, melody, min(melody.seconds, seconds))
        bias[row, torch.arange(ids.shape[0]), ids] = strength
    return bias


def guided_model(model: Any, bias: torch.Tensor, offset: int = 0) -> Any:
    """Guided mode: ``model`` (a one-codebook stage) with :func:`guidance_bias` ``[B, T, V]``
    added to its logits; written position ``p`` (a prefix's tokens count) is frame
    ``offset + p``, and frames past ``T`` get no bias."""
    from cadenza.core.steering.logit_bias import BiasedModel

    return BiasedModel(model, lambda position: bias[:, offset + position] if offset + position < bias.shape[1] else None)


# -- reading a melody file through a melody source plugin ---------------------------------------


def parse_source(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME`` or ``NAME:KEY=VALUE,KEY=VALUE`` (values read as YAML scalars: ``track=2``,
    ``channel=null``) -> ``(name, params)``, as ``--melody-source`` takes it."""
    name, _, rest = text.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise InputError(f"--melody-source {text!r}: expected NAME or NAME:KEY=VALUE,..., got {item!r}")
        params[key.strip()] = load_yaml(value.strip()) if value.strip() else ""
    return name.strip(), params


def pick_source(registry: Any, path: str | Path, name: str | None = None) -> Any:
    """The registry entry of the melody source to read ``path`` with: ``name``, else the first
    (by name) whose config's ``suffixes`` hold the file's suffix."""
    if name is not None:
        return registry.get("melody_source", name)
    suffix = Path(path).suffix.lower()
    entries = registry.entries("melody_source")
    for entry in entries:
        if suffix in tuple(s.lower() for s in getattr(entry.config, "suffixes", ())):
            return entry
    known = ", ".join(f"{e.name} ({' '.join(getattr(e.config, 'suffixes', ())) or 'no suffixes'})" for e in entries)
    raise InputError(f"{path}: no melody source reads {suffix or 'files without a suffix'!r} files; "
                     f"installed: {known or 'none'}; name one with --melody-source")


def read_melody(path: str | Path, source: str | None = None, registry: Any = None,
                max_seconds: float | None = None) -> Melody:
    """Read a melody file with a melody source plugin (``source``: ``NAME[:KEY=VALUE,...]``, or
    None to pick one by the file's suffix); the result records the file and the source.

    ``max_seconds`` (the run's duration) is passed on, so a source reads no further than the
    run can follow: a two-hour recording as a 10 s melody is decoded for 10 s only.
    """
    if registry is None:
        registry = get_registry()
    name, params = parse_source(source) if source is not None else (None, {})
    check_regular_file(path, "melody file")
    entry = pick_source(registry, path, name)
    try:
        config = structure_config(entry.config, params)
    except ParamsError as exc:
        raise InputError(f"melody source {entry.name!r}: {exc}") from None
    source = entry.build(config)
    accepts_limit = "max_seconds" in inspect.signature(source).parameters  # sources written before it read all
    melody = source(str(path), max_seconds=max_seconds) if accepts_limit else source(str(path))
    if not isinstance(melody, Melody):
        raise InputError(f"melody source {entry.name!r} returned {type(melody).__name__}, not a Melody "
                         f"(a bug in plugin {entry.plugin!r})")
    if not melody.notes:
        raise InputError(f"{path}: no melody found (melody source {entry.name!r} read no notes)")
    return attrs.evolve(melody, file=str(path), source=entry.name if not params else f"{entry.name}:{params}")
