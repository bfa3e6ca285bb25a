"""Melody conditioning: the melody sources on real files, melody -> semantic tokens, and the
cascade, CLI and batch mode following a melody."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile
import torch
import yaml

from cadenza.core.engine.cascade import Cascade
from cadenza.plugins.workflows.corpus.compose import Song, Track
from cadenza.plugins.workflows.corpus.render import Renderer, RenderToolError
from cadenza.core.errors import InputError
from cadenza.core.steering.melody import Melody, Note, melody_tokens, notes_from_contour, read_melody, synthesize
from tiny_specs import TINY_SPEC

BPM = 120  # half a second per beat
# (start beat, length in beats, pitch): a small tune with leaps both ways
TUNE = [(0, 1, 67), (1, 1, 72), (2, 0.5, 71), (2.5, 0.5, 69), (3, 1, 64), (4, 1, 65), (5, 1, 62), (6, 2, 60)]


def song(lead_name: str = "lead", drums: bool = True, lead_program: int = 73) -> Song:
    """The tune as the lead (flute) over sustained chords below it, a bass and drums."""
    lead = Track(lead_name, 0, lead_program, [(s, l, p, 100) for s, l, p in TUNE])
    chords = Track("pads", 1, 48, [(b, 2, p, 70) for b in (0, 2, 4, 6) for p in (48, 52, 55)])
    bass = Track("bass", 2, 33, [(b, 1, 36 + (b % 2) * 7, 90) for b in range(8)])
    tracks = [lead, chords, bass]
    if drums:
        tracks.append(Track("drums", 9, 0, [(b / 2, 0.25, 42, 80) for b in range(16)]))
    return Song(bpm=BPM, beats=8, tracks=tracks)


def tune_notes() -> list[tuple[float, float, int]]:
    spb = 60 / BPM
    return [(s * spb, (s + l) * spb, p) for s, l, p in TUNE]


@pytest.fixture
def midi_file(tmp_path):
    def write(name: str = "tune.mid", **kwargs) -> str:
        path = tmp_path / name
        path.write_bytes(song(**kwargs).to_midi())
        return path

    return write


@pytest.fixture(scope="module")
def cascade():
    return Cascade.from_spec(yaml.safe_load(TINY_SPEC))


# -- melody sources ----------------------------------------------------------------------------


@pytest.mark.parametrize("lead_name", ["lead", "track 1"])  # by track name; else the highest one-line part
def test_midi_source_reads_the_melody_line(midi_file, lead_name, registry):
    melody = read_melody(midi_file(lead_name=lead_name), registry=registry)
    assert melody.source == "midi" and melody.file.endswith("tune.mid")
    got = [(round(n.start, 3), round(n.end, 3), n.pitch) for n in melody.notes]
    assert got == [(round(a, 3), round(b, 3), p) for a, b, p in tune_notes()]


def test_midi_source_options_pick_another_part_and_voice(midi_file, registry):
    path = midi_file()
    pads = read_melody(path, "midi:channel=2", registry)  # the chords, reduced to their top voice
    assert {n.pitch for n in pads.notes} == {55} and len(pads.notes) == 4
    assert {n.pitch for n in read_melody(path, "midi:track=2,voice=lowest", registry).notes} == {48}
    with pytest.raises(InputError, match="no pitched notes in track=None channel=10"):
        read_melody(path, "midi:channel=10", registry)
    with pytest.raises(InputError, match="melody source 'midi': .*channel must be a MIDI channel 1..16"):
        read_melody(path, "midi:channel=17", registry)


def test_notes_from_contour_merges_frames_and_drops_blips():
    contour = [float("nan")] * 3 + [60.2] * 20 + [61.0] * 2 + [64.4] * 30 + [float("nan")] * 5
    notes = notes_from_contour(contour, 100.0, min_seconds=0.06)
    assert [(round(n.start, 2), round(n.end, 2), n.pitch) for n in notes] == [(0.03, 0.23, 60), (0.25, 0.55, 64)]


@pytest.fixture(scope="module")
def flute_clip(tmp_path_factory):
    """The tune's lead alone, rendered by FluidSynth (a real instrument sound, with vibrato and reverb)."""
    try:
        renderer = Renderer.find(sample_rate=22050)
    except RenderToolError as exc:
        pytest.fail(f"{exc} (setup.sh installs them)")
    lead = song()
    lead.tracks = lead.tracks[:1]
    path = tmp_path_factory.mktemp("flute") / "flute.wav"
    soundfile.write(path, renderer.render_midi(lead.to_midi(), 4.0), 22050)
    return path


def frame_accuracy(melody: Melody, reference: list[tuple[float, float, int]], rate: float = 100.0) -> float:
    """Share of the reference's sounding frames where the melody has the same pitch (within a semitone's half)."""
    frames = math.ceil(max(b for _, b, _ in reference) * rate)
    ref = Melody(tuple(Note(a, b, p) for a, b, p in reference)).contour(rate, frames)
    got = melody.contour(rate, frames)
    voiced = ~torch.isnan(ref)
    return float(((got - ref).abs() <= 0.5)[voiced].float().mean())


def test_audio_source_tracks_a_rendered_flute(flute_clip, registry):
    melody = read_melody(flute_clip, registry=registry)
    assert melody.source == "audio"
    # measured 0.88 here (violin 0.91, piano 0.93, alto sax 0.89); 0.84 on average over 40 rendered corpus leads
    assert frame_accuracy(melody, tune_notes()) > 0.85


def test_audio_source_on_humming_like_tones_and_silence(tmp_path, registry):
    notes = [Note(0.1, 0.6, 55), Note(0.6, 1.2, 59), Note(1.3, 1.9, 62)]
    hum = synthesize(notes, 16000, 2.0)[0, 0].numpy()
    soundfile.write(tmp_path / "hum.wav", hum, 16000)
    melody = read_melody(tmp_path / "hum.wav", registry=registry)
    assert [n.pitch for n in melody.notes] == [55, 59, 62]
    assert frame_accuracy(melody, [n.as_tuple()[:3] for n in notes]) > 0.95
    soundfile.write(tmp_path / "quiet.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(InputError, match="quiet.wav: no melody found"):
        read_melody(tmp_path / "quiet.wav", registry=registry)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("bad.mid", b"not a midi file", "bad.mid: cannot read MIDI"),
    ("bad.wav", b"RIFF....WAVE", "bad.wav: cannot read audio"),
    ("tune.xyz", b"", "no melody source reads '.xyz' files; installed: audio"),
])
def test_unreadable_melody_files_are_one_line_errors(tmp_path, registry, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_melody(tmp_path / name, registry=registry)


# -- melody -> semantic tokens -> the cascade -----------------------------------------------------


def test_melody_tokens_use_tokenize_notes_or_rendered_audio(registry):
    from cadenza.core.components import BuildContext
    from cadenza.core.spec.params import structure_config

    melody = Melody(tuple(Note(a, b, p) for a, b, p in tune_notes()))
    for name, params in (("music-features", {"vocab_size": 64}), ("mel-kmeans", {"frame_rate": 25, "vocab_size": 32})):
        entry = registry.get("semantic_tokenizer", name)
        config = structure_config(entry.config, params)
        tokenizer, info = entry.build(config, BuildContext()), config.describe(BuildContext().weights)
        ids = melody_tokens(tokenizer, info, melody, 3.0)
        assert ids.shape == (math.ceil(3.0 * info.frame_rate),) and ids.dtype == torch.long
        if name == "music-features":  # the bridge built for melodies
            expected = tokenizer.tokenize_notes([n.as_tuple() for n in melody.notes], 3.0)
        else:  # any other tokenizer hears the melody rendered
            expected = tokenizer.tokenize(synthesize(melody.notes, info.sample_rate, 3.0))[0]
        assert torch.equal(ids, expected[: ids.shape[0]])


def test_forced_melody_is_the_semantic_stream_and_skips_the_stage(cascade):
    melody = Melody(tuple(Note(a / 4, b / 4, p) for a, b, p in tune_notes()))  # 1 s
    info = cascade.pipeline.semantic_tokenizer.info
    expected = melody_tokens(cascade.semantic_tokenizer, info, melody, 0.5)
    out = cascade.generate("a flute", seconds=0.5, seed=3, steering=cascade.steering(melody=melody))
    assert torch.equal(out.tokens["semantic"][0, 0], expected)
    assert "semantic" not in out.stage_seconds and out.steering[0]["melody"]["notes"] == len(TUNE)
    # a melody shorter than the output is continued by the semantic stage
    longer = cascade.generate("a flute", seconds=1.5, seed=3, steering=cascade.steering(melody=melody))
    assert torch.equal(longer.tokens["semantic"][0, 0, :25], melody_tokens(cascade.semantic_tokenizer, info, melody, 1.0))
    assert longer.tokens["semantic"].shape[2] == 38 and "semantic" in longer.stage_seconds


def test_text_still_changes_the_output_under_a_melody(cascade):
    melody = Melody(tuple(Note(a / 4, b / 4, p) for a, b, p in tune_notes()))
    a = cascade.generate("a soft flute", seconds=0.5, seed=3, steering=cascade.steering(melody=melody))
    b = cascade.generate("loud distorted guitars", seconds=0.5, seed=3, steering=cascade.steering(melody=melody))
    assert torch.equal(a.tokens["semantic"], b.tokens["semantic"])
    assert not torch.equal(a.tokens["acoustic"], b.tokens["acoustic"])


def test_guided_melody_pulls_the_semantic_stage_by_strength(cascade):
    melody = Melody(tuple(Note(a / 4, b / 4, p) for a, b, p in tune_notes()))
    target = melody_tokens(cascade.semantic_tokenizer, cascade.pipeline.semantic_tokenizer.info, melody, 1.0)

    def agreement(strength):
        guided = cascade.steering(melody=melody, melody_strength=strength)
        rows = cascade.generate(["a flute"] * 4, seconds=1.0, seed=[0, 1, 2, 3], steering=guided).tokens["semantic"][:, 0]
        return float((rows == target).float().mean())

    free = float((cascade.generate(["a flute"] * 4, seconds=1.0, seed=[0, 1, 2, 3]).tokens["semantic"][:, 0]
                  == target).float().mean())
    weak, strong = agreement(1.0), agreement(20.0)
    assert free < weak < strong and strong > 0.95


def test_long_form_follows_a_melody_across_windows(cascade):
    melody = Melody((Note(0.0, 0.9, 60), Note(0.9, 2.0, 67)))
    out = cascade.generate("x", seconds=2.0, seed=1, window=0.8, overlap=0.3, steering=cascade.steering(melody=melody))
    assert len(out.windows) == 4 and "semantic" not in out.stage_seconds
    expected = melody_tokens(cascade.semantic_tokenizer, cascade.pipeline.semantic_tokenizer.info, melody, 2.0)
    assert torch.equal(out.tokens["semantic"][0, 0], expected) and out.tokens["acoustic"].shape[2] == 100


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"melody": "tune.mid"}, "melody must be a Melody or one per prompt"),
    ({"melody": [None, Melody((Note(0, 1, 60),))]}, "for every prompt of a batch or for none"),
    ({"melody": [Melody((Note(0, 1, 60),))]}, "got 1 melodies for 2 prompts"),
    ({"melody": Melody((Note(0, 1, 60),)), "melody_strength": -1.0}, "melody strength must be a positive number"),
    ({"melody": Melody((Note(2, 3, 60),))}, "no note starts within the 0.5 s to generate"),
])
def test_bad_melody_arguments(cascade, kwargs, message):
    with pytest.raises(InputError, match=message):
        cascade.generate(["a", "b"], seconds=0.5, steering=cascade.steering(**kwargs))


def test_bad_notes_are_one_line_errors():
    with pytest.raises(InputError, match="note 1: pitch must be a MIDI note 0..127"):
        Melody(((0, 1, 60), (1, 2, 128)))
    with pytest.raises(InputError, match="note 0: needs 0 <= start < end"):
        Melody(((1, 1, 60),))


# -- command line and batch ---------------------------------------------------------------------


def test_generate_command_follows_a_midi_melody(cli, tiny_spec, midi_file, tmp_path):
    wav = tmp_path / "out.wav"
    code, _, err = cli("generate", "a flute over pads", "-p", tiny_spec, "-s", 0.5, "--melody", midi_file(), "-o", wav)
    assert code == 0, err
    sidecar = json.loads(wav.with_suffix(".json").read_text())
    assert sidecar["melody"]["file"].endswith("tune.mid") and sidecar["melody"]["source"] == "midi"
    assert sidecar["melody"]["mode"] == "forced" and sidecar["melody"]["notes"] == len(TUNE)
    assert "followed the melody" in err and soundfile.info(str(wav)).frames == 8000


@pytest.mark.parametrize(("args", "message"), [
    (["--melody", "{tmp}/missing.mid"], "missing.mid: melody file not found"),
    (["--melody", "{tmp}/bad.mid"], "bad.mid: cannot read MIDI"),
    (["--melody", "{tmp}/tune.mid", "--prime", "{tmp}/tune.mid"], "--melody cannot be combined with --prime"),
    (["--melody-source", "midi"], "--melody-source needs --melody FILE"),
    (["--melody", "{tmp}/tune.mid", "--melody-source", "humming"], "unknown melody source 'humming'; available: audio, midi"),
    (["--melody", "{tmp}/tune.mid", "-p", "tiny-musicgen"], "has no semantic stage for a melody to steer"),
])
def test_generate_command_bad_melody_is_one_line(cli, tiny_spec, midi_file, tmp_path, args, message):
    midi_file()
    (tmp_path / "bad.mid").write_bytes(b"MThd garbage")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = cli("generate", "x", *args, *([] if "-p" in args else ["-p", tiny_spec]), "-o", tmp_path / "o.wav")
    assert code in (1, 2) and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o.wav").exists()


def test_batch_lines_carry_their_own_melody(cli, tiny_spec, midi_file, tmp_path):
    midi_file()
    prompts = tmp_path / "p.jsonl"
    lines = [{"prompt": "a flute", "melody": "tune.mid", "seconds": 0.5},
             {"prompt": "a piano", "melody": "tune.mid", "melody_source": "midi:channel=2", "seconds": 0.5},
             {"prompt": "free", "seconds": 0.5},
             {"prompt": "broken", "melody": "tune.mid", "melody_source": "midi:channel=10", "seconds": 0.5}]
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, _, err = cli("generate", "--prompts", prompts, "--out", tmp_path / "out", "-p", tiny_spec, "-q")
    assert code == 2 and f"{prompts}:4: " in err and "no pitched notes" in err
    first, second, free = (json.loads((tmp_path / "out" / f"000{i}.json").read_text()) for i in (1, 2, 3))
    assert first["melody"]["source"] == "midi" and first["melody"]["notes"] == len(TUNE)
    assert second["melody"]["source"].startswith("midi:") and second["melody"]["pitch_range"] == [55, 55]
    assert "melody" not in free and not (tmp_path / "out" / "0004.wav").exists()
