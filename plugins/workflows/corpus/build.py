"""``cadenza corpus``: a procedurally composed, labelled music corpus rendered with FluidSynth.

Each clip gets attributes drawn at random (lead instrument and General MIDI program, tempo
class and BPM, key and mode, register, dynamics, drum style, accompaniment), a caption built
from them (:mod:`cadenza.plugins.workflows.corpus.captions`), a song composed from them
(:mod:`cadenza.plugins.workflows.corpus.compose`) and audio rendered from the song
(:mod:`cadenza.plugins.workflows.corpus.render`). Clip ``i`` of seed ``s`` is a pure function of ``(s, i)``:
three independent random streams (attributes and split, captions, composition) are seeded
with ``[s, i, stream]``, so the same seed gives the same manifest and the same audio, and a
larger ``n`` keeps the first clips unchanged.

Splits (the *split rule*):

* **held-out combinations** - clips whose (instrument, mode, tempo class) is one of
  :data:`HELD_OUT_COMBINATIONS` are always ``test``; these triples never occur in train or
  valid, though each instrument, mode and tempo class does;
* every other clip is ``valid`` with probability ``valid_fraction`` (5%), ``test`` with
  ``test_fraction`` (5%, an in-distribution test set), else ``train``;
* **held-out templates** - captions of train and valid clips use only the shared templates;
  test clips use a test-only template (:data:`~cadenza.plugins.workflows.corpus.captions.TEST_ONLY_TEMPLATES`)
  half of the time.

Layout of ``OUT``: ``audio/000123.wav`` (16-bit PCM, mono by default), ``midi/000123.mid``,
``manifest.jsonl`` (every clip, with its ``split``), ``train.jsonl``/``valid.jsonl``/
``test.jsonl`` (the same records per split; ``cadenza prepare --data OUT/train.jsonl`` reads
them), and ``corpus.json`` (settings, counts, the held-out combinations and templates). Paths in
manifests are relative to ``OUT``. Every file is written atomically; a rerun keeps the clips
already rendered (same settings required) and renders the rest.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cadenza.core.files import atomic
from cadenza.plugins.workflows.corpus import captions
from cadenza.plugins.workflows.corpus import compose
from cadenza.plugins.workflows.corpus.render import Renderer
from cadenza.core.errors import CadenzaError, InputError

FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")
# (instrument, mode, tempo class) triples that only the test split has.
HELD_OUT_COMBINATIONS = frozenset({
    ("electric piano", "major", "medium"),
    ("acoustic guitar", "minor", "slow"),
    ("strings", "major", "fast"),
    ("cello", "minor", "medium"),
    ("saxophone", "major", "slow"),
    ("clarinet", "minor", "fast"),
    ("vibraphone", "major", "medium"),
    ("harp", "minor", "slow"),
})
DRUM_PROBABILITIES = {"none": 0.3, "rock": 0.14, "dance": 0.14, "jazz": 0.14, "latin": 0.14, "hip-hop": 0.14}
ALT_CAPTIONS = 3  # extra paraphrases per clip (same split rule for templates)
_ATTRIBUTES, _CAPTIONS, _MUSIC = 0, 1, 2  # random streams per clip


@dataclass(frozen=True)
class Settings:
    seed: int = 0
    seconds: float = 5.0
    sample_rate: int = 24000
    channels: int = 1
    valid_fraction: float = 0.05
    test_fraction: float = 0.05


def clip_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, stream])


def combination(record: dict[str, Any]) -> tuple[str, str, str]:
    return record["instrument"], record["mode"], record["tempo_class"]


def sample_attributes(seed: int, index: int) -> dict[str, Any]:
    """The musical attributes of clip ``index`` (no split, no caption)."""
    rng = clip_rng(seed, index, _ATTRIBUTES)
    pick = lambda options: options[int(rng.integers(len(options)))]
    instrument = pick(list(compose.INSTRUMENTS))
    program, program_name = pick(compose.INSTRUMENTS[instrument][0])
    tempo_class = pick(list(compose.TEMPO_CLASSES))
    low, high = compose.TEMPO_CLASSES[tempo_class]
    bpm = int(rng.integers(low, high + 1))
    mode = pick(compose.MODES)
    key = compose.TONICS[mode][int(rng.integers(12))]
    register = pick(compose.REGISTERS)
    dynamics = pick(compose.DYNAMICS)
    drum_names = list(DRUM_PROBABILITIES)
    probabilities = np.array([DRUM_PROBABILITIES[d] for d in drum_names])
    drums = drum_names[int(rng.choice(len(drum_names), p=probabilities / probabilities.sum()))]
    accompaniment = pick(compose.ACCOMPANIMENTS)
    accompaniment_instrument, accompaniment_program = pick(
        [a for a in compose.ACCOMPANIMENT_INSTRUMENTS if a[0] != instrument])
    if drums == "jazz":
        bass = "acoustic bass" if rng.random() < 0.8 else "electric bass"
    elif drums == "dance" or instrument == "synth lead":
        bass = "synth bass" if rng.random() < 0.7 else "electric bass"
    else:
        bass = "electric bass" if rng.random() < 0.6 else "acoustic bass"
    return {
        "instrument": instrument, "program": program, "program_name": program_name,
        "bpm": bpm, "tempo_class": tempo_class, "key": key, "mode": mode, "register": register,
        "dynamics": dynamics, "drums": drums, "accompaniment": accompaniment,
        "accompaniment_instrument": accompaniment_instrument, "accompaniment_program": accompaniment_program,
        "bass": bass, "bass_program": compose.BASSES[bass],
        "_u": float(rng.random()),  # the split draw, taken after the attributes
    }


def plan_clip(settings: Settings, index: int) -> dict[str, Any]:
    """The manifest record of clip ``index``: attributes, split, captions, file paths."""
    attributes = sample_attributes(settings.seed, index)
    u = attributes.pop("_u")
    if combination(attributes) in HELD_OUT_COMBINATIONS:
        split = "test"
    elif u < settings.valid_fraction:
        split = "valid"
    elif u < settings.valid_fraction + settings.test_fraction:
        split = "test"
    else:
        split = "train"
    rng = clip_rng(settings.seed, index, _CAPTIONS)
    template, text = captions.caption(attributes, split, rng)
    allowed = captions.templates_for(split)
    alt_templates = [allowed[int(i)] for i in rng.choice(len(allowed), size=ALT_CAPTIONS, replace=False)]
    clip_id = f"{index:06d}"
    return {
        "id": clip_id, "split": split, "audio": f"audio/{clip_id}.wav", "midi": f"midi/{clip_id}.mid",
        "caption": text, "template": template,
        "alt_captions": [captions.fill(t, attributes, rng) for t in alt_templates], "alt_templates": alt_templates,
        **attributes,
    }


def plan(n: int, settings: Settings) -> list[dict[str, Any]]:
    return [plan_clip(settings, i) for i in range(n)]


def song_of(record: dict[str, Any], settings: Settings) -> compose.Song:
    index = int(record["id"])
    return compose.compose(record, clip_rng(settings.seed, index, _MUSIC), settings.seconds)


def _complete(out: Path, record: dict[str, Any], settings: Settings) -> bool:
    import soundfile

    wav, mid = out / record["audio"], out / record["midi"]
    if not (wav.is_file() and mid.is_file()):
        return False
    try:
        info = soundfile.info(str(wav))
    except (RuntimeError, OSError):
        return False
    return (info.samplerate == settings.sample_rate and info.channels == settings.channels
            and info.frames == round(settings.seconds * settings.sample_rate))


def render_clip(record: dict[str, Any], settings: Settings, renderer: Renderer, out: Path) -> dict[str, float]:
    """Compose, write the MIDI file, render and write the WAV (atomically); returns level stats."""
    import soundfile

    song = song_of(record, settings)
    midi = song.to_midi()
    atomic.write_bytes(out / record["midi"], midi)
    audio = renderer.render_midi(midi, settings.seconds)
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    if rms < 1e-4:
        raise CadenzaError(f"clip {record['id']} rendered as silence with {renderer.soundfont}; "
                           "is it a General MIDI SoundFont? (set CADENZA_SOUNDFONT)")
    with atomic.atomic_path(out / record["audio"]) as tmp:
        soundfile.write(str(tmp), audio, settings.sample_rate, subtype="PCM_16", format="WAV")
    return {"rms": rms, "peak": float(np.abs(audio).max())}


def _check_settings(out: Path, header: dict[str, Any]) -> None:
    """A rerun into an existing corpus must use the settings that made its clips."""
    path = out / "corpus.json"
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return
    keys = ("format_version", "seed", "seconds", "sample_rate", "channels", "valid_fraction", "test_fraction",
            "soundfont", "soundfont_bytes", "gain")
    diffs = [f"{k}={old.get(k)!r} (now {header.get(k)!r})" for k in keys if old.get(k) != header.get(k)]
    if diffs:
        raise InputError(f"{out} holds a corpus made with other settings: {', '.join(diffs)}; "
                         "use another --out or delete it")


def build(out: str | Path, n: int, settings: Settings, workers: int | None = None, soundfont: str | None = None,
          progress: bool = True, renderer: Renderer | None = None) -> dict[str, Any]:
    """Plan, render (``workers`` FluidSynth processes at a time) and write a corpus of ``n`` clips; returns a summary."""
    if n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    if not settings.seconds > 0 or settings.seconds > 600:
        raise InputError(f"--seconds must be in (0, 600], got {settings.seconds}")
    if not 8000 <= settings.sample_rate <= 96000:
        raise InputError(f"--sample-rate must be within 8000-96000 Hz (FluidSynth's range), got {settings.sample_rate}")
    if settings.channels not in (1, 2):
        raise InputError(f"--channels must be 1 or 2, got {settings.channels}")
    if settings.seed < 0:
        raise InputError(f"--seed must be >= 0, got {settings.seed}")
    workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    if renderer is None:
        renderer = Renderer.find(settings.sample_rate, settings.channels, soundfont)
    out = Path(out)
    started = time.perf_counter()
    header = {"format": "cadenza-corpus", "format_version": FORMAT_VERSION, **asdict(settings),
              **renderer.describe(),
              "held_out_combinations": sorted(list(c) for c in HELD_OUT_COMBINATIONS),
              "test_only_templates": list(captions.TEST_ONLY_TEMPLATES),
              "audio": f"{'mono' if settings.channels == 1 else 'stereo'} 16-bit PCM WAV"}
    _check_settings(out, header)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "corpus.json", json.dumps({**header, "clips": None}, indent=2) + "\n")

    records = plan(n, settings)
    todo = [r for r in records if not _complete(out, r, settings)]
    levels: dict[str, dict[str, float]] = {}
    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="clip", desc="rendering", disable=not progress or None, leave=False)
    try:
        if workers == 1 or len(todo) <= 1:
            for record in todo:
                levels[record["id"]] = render_clip(record, settings, renderer, out)
                bar.update()
        else:
            # The work is in the FluidSynth processes; threads only hand out clips and write files
            # (composing a clip takes ~1 ms), so no Python process pool, pickling or __main__ guard.
            from concurrent.futures import ThreadPoolExecutor, as_completed

            with ThreadPoolExecutor(min(workers, len(todo)), thread_name_prefix="corpus") as pool:
                futures = {pool.submit(render_clip, r, settings, renderer, out): r["id"] for r in todo}
                try:
                    for future in as_completed(futures):
                        levels[futures[future]] = future.result()
                        bar.update()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    finally:
        bar.close()

    lines = {split: [] for split in SPLITS}
    for record in records:
        lines[record["split"]].append(json.dumps(record, ensure_ascii=False))
    atomic.write_text(out / "manifest.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    for split in SPLITS:
        atomic.write_text(out / f"{split}.jsonl", "".join(line + "\n" for line in lines[split]))
    elapsed = time.perf_counter() - started
    counts = Counter(r["split"] for r in records)
    summary = {
        "out": str(out), "clips": n, "splits": {s: counts.get(s, 0) for s in SPLITS},
        "rendered": len(todo), "kept": n - len(todo), "seconds": settings.seconds,
        "sample_rate": settings.sample_rate, "elapsed": elapsed,
        "clips_per_second": len(todo) / elapsed if todo and elapsed > 0 else 0.0, "workers": workers,
        "peak": max((v["peak"] for v in levels.values()), default=None),
    }
    attribute_counts = {k: dict(sorted(Counter(str(r[k]) for r in records).items()))
                        for k in ("instrument", "tempo_class", "mode", "key", "register", "dynamics", "drums",
                                  "accompaniment")}
    atomic.write_text(out / "corpus.json", json.dumps(
        {**header, "clips": n, "splits": summary["splits"], "attribute_counts": attribute_counts}, indent=2) + "\n")
    return summary
