"""`cadenza corpus`: attributes, splits, captions, MIDI, FluidSynth rendering, resumption."""

from __future__ import annotations

import json
import re
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile
from cadenza.plugins.workflows.corpus import captions
from cadenza.plugins.workflows.corpus import compose
from cadenza.plugins.workflows.corpus.build import (
    HELD_OUT_COMBINATIONS,
    Settings,
    combination,
    plan,
    song_of,
)
from cadenza.plugins.workflows.corpus.render import (
    Renderer,
    RenderToolError,
    find_fluidsynth,
    find_soundfont,
    fit,
)
from cadenza.plugins.workflows.data_sources import list_items

APT = "fluidsynth timgm6mb-soundfont"


@pytest.fixture(scope="module")
def renderer_factory():
    try:
        Renderer.find()
    except RenderToolError as exc:
        pytest.fail(f"{exc} (setup.sh installs them)")
    return Renderer.find


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


# ---------------------------------------------------------------- planning: attributes, splits, captions


def test_plan_is_deterministic_and_prefix_stable():
    a, b = plan(40, Settings(seed=0)), plan(40, Settings(seed=0))
    assert a == b
    assert plan(15, Settings(seed=0)) == a[:15]  # a larger corpus keeps the first clips
    other = plan(40, Settings(seed=1))
    assert sum(x["caption"] != y["caption"] for x, y in zip(a, other)) > 30
    assert [r["instrument"] for r in a] != [r["instrument"] for r in other]


def test_every_attribute_takes_several_values():
    records = plan(400, Settings(seed=3))
    values = {k: Counter(r[k] for r in records) for k in records[0] if not isinstance(records[0][k], list)}
    assert set(values["instrument"]) == set(compose.INSTRUMENTS)
    assert set(values["tempo_class"]) == {"slow", "medium", "fast"}
    assert set(values["mode"]) == {"major", "minor"}
    assert {compose.tonic_pitch_class(k) for k in values["key"]} == set(range(12))
    assert set(values["register"]) == {"low", "mid", "high"}
    assert set(values["dynamics"]) == {"soft", "loud"}
    assert set(values["drums"]) == set(compose.DRUMS)
    assert set(values["accompaniment"]) == set(compose.ACCOMPANIMENTS)
    assert len(values["program"]) >= 25 and len(values["bpm"]) >= 60
    for r in records:
        low, high = compose.TEMPO_CLASSES[r["tempo_class"]]
        assert low <= r["bpm"] <= high
        assert r["program"] in [p for p, _ in compose.INSTRUMENTS[r["instrument"]][0]]
        assert r["accompaniment_instrument"] != r["instrument"]


def test_held_out_combinations_and_templates_never_leak_into_train_or_valid():
    records = plan(1500, Settings(seed=7))
    splits = Counter(r["split"] for r in records)
    assert splits["train"] > 0.75 * len(records) and splits["valid"] > 0.03 * len(records) and splits["test"] > 0.1 * len(records)
    for r in records:
        if r["split"] != "test":
            assert combination(r) not in HELD_OUT_COMBINATIONS, r
            assert r["template"] not in captions.TEST_ONLY_TEMPLATES, r
            assert not set(r["alt_templates"]) & set(captions.TEST_ONLY_TEMPLATES), r
        elif combination(r) in HELD_OUT_COMBINATIONS:
            assert r["split"] == "test"
    test = [r for r in records if r["split"] == "test"]
    # every held-out triple and every test-only template is actually tested ...
    assert {combination(r) for r in test} >= HELD_OUT_COMBINATIONS
    assert {r["template"] for r in test} >= set(captions.TEST_ONLY_TEMPLATES)
    # ... while each instrument, mode and tempo class still occurs in training
    train = [r for r in records if r["split"] == "train"]
    for key in ("instrument", "mode", "tempo_class"):
        assert {r[key] for r in train} == {r[key] for r in records}
    # the split depends on the clip, not on how many clips there are
    assert [r["split"] for r in plan(300, Settings(seed=7))] == [r["split"] for r in records[:300]]


def _mentions(text: str, words) -> bool:
    return any(w.lower() in text.lower() for w in words)


def test_captions_mention_the_attributes_in_many_templates():
    records = plan(600, Settings(seed=11))
    texts = []
    for r in records:
        for text in [r["caption"], *r["alt_captions"]]:
            texts.append(text)
            assert _mentions(text, captions.instrument_words(r["instrument"], r["program"])), text
            assert str(r["bpm"]) in text or _mentions(text, captions.TEMPO_WORDS[r["tempo_class"]]
                                                     + captions.TEMPO_NOUNS[r["tempo_class"]]), text
            assert r["mode"] in text.lower() and ({"major", "minor"} - {r["mode"]}).pop() not in text.lower(), text
            assert _mentions(text, captions.DYNAMICS_WORDS[r["dynamics"]] + captions.DYNAMICS_PHRASES[r["dynamics"]]), text
            assert _mentions(text, captions.DRUM_WITH[r["drums"]] + captions.DRUM_NP[r["drums"]]), text
            assert not re.search(r"\b[Aa] [aeiouAEIOU]", text), text  # "an" before a vowel
            assert not re.search(r"\b[Aa]n [b-df-hj-np-tv-z]", text), text
            assert "{" not in text and "  " not in text
    templates = Counter(r["template"] for r in records)
    assert len(templates) >= 35 and len(captions.TEMPLATES) >= 35
    assert len(set(texts)) > 0.98 * len(texts)  # paraphrases, not one sentence per attribute set
    tonic_named = sum(r["key"][0] in r["caption"] for r in records) / len(records)
    assert tonic_named > 0.6


def test_caption_examples_read_naturally():
    attributes = {"instrument": "piano", "program": 0, "bpm": 70, "tempo_class": "slow", "key": "A",
                  "mode": "minor", "register": "high", "dynamics": "soft", "drums": "none",
                  "accompaniment": "arpeggio", "accompaniment_instrument": "harp"}
    rng = np.random.default_rng(0)
    text = captions.fill("t00", attributes, rng)
    assert re.fullmatch(r"An? [\w-]+, [\w-]+ [\w -]*piano [\w]+ in A[- ]minor, (no drums|no percussion|drumless)\.?",
                        text, re.IGNORECASE), text
    text = captions.fill("t01", attributes, rng)
    assert "minor" in text and "70" in text and "piano" in text
    assert captions.fix_articles("a A minor tune, a F# major one, a E-flat minor one") == \
        "an A minor tune, an F# major one, an E-flat minor one"
    assert captions.fix_articles("a up-tempo, a 84 BPM and a 120 BPM piece, a FM piano, a D minor line") == \
        "an up-tempo, an 84 BPM and a 120 BPM piece, an FM piano, a D minor line"


# ---------------------------------------------------------------- composition and MIDI


def _midi_events(data: bytes) -> list[list[tuple[int, bytes]]]:
    """A minimal Standard MIDI File reader: per track, (absolute tick, event bytes)."""
    assert data[:4] == b"MThd"
    _, fmt, ntracks, division = struct.unpack(">IHHH", data[4:14])
    assert fmt == 1 and division == compose.TICKS_PER_BEAT
    pos, tracks = 14, []
    for _ in range(ntracks):
        assert data[pos:pos + 4] == b"MTrk"
        (length,) = struct.unpack(">I", data[pos + 4:pos + 8])
        body, pos = data[pos + 8:pos + 8 + length], pos + 8 + length
        i, tick, events = 0, 0, []
        while i < len(body):
            delta = 0
            while True:
                delta = (delta << 7) | (body[i] & 0x7F)
                i += 1
                if not body[i - 1] & 0x80:
                    break
            tick += delta
            status = body[i]
            if status == 0xFF:
                size = body[i + 2]
                events.append((tick, body[i:i + 3 + size]))
                i += 3 + size
            else:
                size = 2 if status & 0xF0 in (0xC0, 0xD0) else 3
                events.append((tick, body[i:i + size]))
                i += size
        tracks.append(events)
    assert pos == len(data)
    return tracks


def test_songs_are_in_key_in_register_and_in_tempo():
    settings = Settings(seed=5, seconds=6.0)
    for record in plan(30, settings):
        tracks = _midi_events(song_of(record, settings).to_midi())
        tempo = next(e for _, e in tracks[0] if e[:2] == b"\xff\x51")
        assert int.from_bytes(tempo[3:6], "big") == round(60_000_000 / record["bpm"])
        scale = {(compose.tonic_pitch_class(record["key"]) + i) % 12 for i in compose._SCALES[record["mode"]]}
        end = round(6.0 * record["bpm"] / 60 * compose.TICKS_PER_BEAT)
        lead = [e[1] for _, e in tracks[1] if e[0] & 0xF0 == 0x90]
        accompaniment = [e[1] for _, e in tracks[2] if e[0] & 0xF0 == 0x90]
        assert lead and accompaniment and len(tracks) == (5 if record["drums"] != "none" else 4)
        assert all(p % 12 in scale for p in lead + accompaniment), record
        centre = compose.register_centre(record["instrument"], record["register"])
        assert all(abs(p - centre) <= 7 for p in lead), record
        programs = [e[1] for _, e in tracks[1] if e[0] & 0xF0 == 0xC0]
        assert programs == [record["program"]]
        for track in tracks[1:]:
            assert all(tick <= end for tick, _ in track)
            on = Counter(e[1] for _, e in track if e[0] & 0xF0 == 0x90)
            off = Counter(e[1] for _, e in track if e[0] & 0xF0 == 0x80)
            assert on == off  # every note ends
    low, mid, high = (compose.register_centre("flute", r) for r in ("low", "mid", "high"))
    assert low < mid < high


def test_dynamics_change_levels_not_notes():
    settings = Settings(seed=2, seconds=4.0)
    record = plan(1, settings)[0]
    soft = _midi_events(song_of({**record, "dynamics": "soft"}, settings).to_midi())
    loud = _midi_events(song_of({**record, "dynamics": "loud"}, settings).to_midi())
    notes = lambda tracks: [(t, e[1]) for tr in tracks[1:] for t, e in tr if e[0] & 0xF0 == 0x90]
    velocity = lambda tracks: np.mean([e[2] for tr in tracks[1:] for _, e in tr if e[0] & 0xF0 == 0x90])
    volume = lambda tracks: [e[2] for _, e in tracks[1] if e[0] & 0xF0 == 0xB0 and e[1] in (7, 11)]
    assert notes(soft) == notes(loud)
    assert velocity(loud) > velocity(soft) + 25
    assert all(a > b for a, b in zip(volume(loud), volume(soft)))


def test_fit_trims_pads_and_mixes_down():
    stereo = np.ones((1000, 2), np.float32) * np.array([0.2, 0.6], np.float32)
    out = fit(stereo, 0.05, 8000, 1)
    assert out.shape == (400, 1) and out[0, 0] == pytest.approx(0.4) and out[-1, 0] == 0.0  # faded out
    out = fit(stereo, 0.2, 8000, 2)
    assert out.shape == (1600, 2) and np.all(out[1000:] == 0) and out[999, 1] == pytest.approx(0.6)


# ---------------------------------------------------------------- missing tools


def test_missing_fluidsynth_or_soundfont_is_one_line_naming_the_apt_packages(tmp_path, monkeypatch, cli):
    with pytest.raises(RenderToolError) as info:
        find_fluidsynth({"PATH": str(tmp_path)})
    assert APT in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(RenderToolError) as info:
        find_soundfont({}, dirs=(str(tmp_path / "sf2"), str(tmp_path / "soundfonts")))
    assert APT in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(RenderToolError, match="CADENZA_SOUNDFONT"):
        find_soundfont({"CADENZA_SOUNDFONT": str(tmp_path / "none.sf2")})
    font = tmp_path / "sf2" / "Some.sf2"
    font.parent.mkdir()
    font.write_bytes(b"RIFF")
    assert find_soundfont({}, dirs=(str(font.parent),)) == font.resolve()
    assert find_soundfont({"CADENZA_SOUNDFONT": str(font)}) == font.resolve()

    # through the CLI: one line on stderr, no traceback, nothing written
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CADENZA_FLUIDSYNTH", raising=False)
    code, _, err = cli("corpus", "--n", 2, "--seconds", 1, "--out", tmp_path / "c")
    assert code == 2 and err.count("\n") == 1 and APT in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()
    monkeypatch.undo()
    monkeypatch.setenv("CADENZA_SOUNDFONT", str(tmp_path / "missing.sf2"))
    code, _, err = cli("corpus", "--n", 2, "--seconds", 1, "--out", tmp_path / "c")
    assert code == 2 and err.count("\n") == 1 and "CADENZA_SOUNDFONT" in err and APT in err


# ---------------------------------------------------------------- rendering (FluidSynth)


@pytest.mark.slow
def test_cli_renders_a_small_corpus_deterministically_and_resumes(tmp_path, cli, renderer_factory):
    out = tmp_path / "corpus"
    code, stdout, err = cli("corpus", "--n", 6, "--seconds", 2, "--out", out, "--seed", 4, "--workers", 2)
    assert code == 0, err
    assert re.search(r"6 clips \(train \d+, valid \d+, test \d+\) x 2 s at 24000 Hz .* rendered 6 in [\d.]+ s "
                     r"\([\d.]+ clips/s, 2 workers\)", stdout), stdout
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 6 and len({r["caption"] for r in records}) == 6
    per_split = [json.loads(line) for s in ("train", "valid", "test") for line in (out / f"{s}.jsonl").read_text().splitlines()]
    assert sorted(per_split, key=lambda r: r["id"]) == records
    for record in records:
        assert not Path(record["audio"]).is_absolute()
        audio, rate = soundfile.read(out / record["audio"], dtype="float32", always_2d=True)
        assert rate == 24000 and audio.shape == (48000, 1) and rms(audio) > 3e-3
        assert soundfile.info(out / record["audio"]).subtype == "PCM_16"
        assert (out / record["midi"]).read_bytes()[:4] == b"MThd"
    info = json.loads((out / "corpus.json").read_text())
    assert info["clips"] == 6 and info["seed"] == 4 and info["soundfont"].endswith((".sf2", ".sf3"))
    assert not list(out.rglob("*.tmp"))
    # the trainer's reader takes the manifest as it is: captions and attributes as extras
    items = list_items(out / "train.jsonl")
    assert all(i.path.is_file() and i.caption and i.extras["split"] == "train" for i in items)

    # resumable: complete clips are kept; a missing one is rendered again, identically
    first = {r["id"]: (out / r["audio"]).read_bytes() for r in records}
    stamps = {r["id"]: (out / r["audio"]).stat().st_mtime_ns for r in records}
    (out / records[2]["audio"]).unlink()
    code, stdout, _ = cli("corpus", "--n", 6, "--seconds", 2, "--out", out, "--seed", 4, "--workers", 1)
    assert code == 0 and "rendered 1, 5 kept" in stdout
    assert {r["id"]: (out / r["audio"]).read_bytes() for r in records} == first
    assert all((out / r["audio"]).stat().st_mtime_ns == stamps[r["id"]] for r in records if r["id"] != records[2]["id"])

    # same seed elsewhere (one worker): byte-identical audio and manifest; another seed differs
    again = tmp_path / "again"
    assert cli("corpus", "--n", 6, "--seconds", 2, "--out", again, "--seed", 4, "--workers", 1)[0] == 0
    assert (again / "manifest.jsonl").read_bytes() == (out / "manifest.jsonl").read_bytes()
    assert {r["id"]: (again / r["audio"]).read_bytes() for r in records} == first
    other = tmp_path / "other"
    assert cli("corpus", "--n", 2, "--seconds", 2, "--out", other, "--seed", 5, "--workers", 1)[0] == 0
    assert (other / "audio" / "000000.wav").read_bytes() != first["000000"]

    # other settings into the same folder: refused, one line
    code, _, err = cli("corpus", "--n", 6, "--seconds", 3, "--out", out, "--seed", 4)
    assert code == 2 and "other settings" in err and "seconds=2.0" in err and err.count("\n") == 1


def test_rendered_audio_has_the_length_rate_and_dynamics_asked_for(renderer_factory):
    settings = Settings(seed=9, seconds=2.5, sample_rate=16000, channels=2)
    renderer = renderer_factory(sample_rate=16000, channels=2)
    record = next(r for r in plan(20, settings) if r["drums"] != "none")
    soft = renderer.render_midi(song_of({**record, "dynamics": "soft"}, settings).to_midi(), 2.5)
    loud = renderer.render_midi(song_of({**record, "dynamics": "loud"}, settings).to_midi(), 2.5)
    assert soft.shape == loud.shape == (40000, 2) and soft.dtype == np.float32
    assert rms(soft) > 1e-3 and np.abs(loud).max() < 1.0
    assert rms(loud) > 2.0 * rms(soft)  # at least 6 dB louder
    assert np.array_equal(loud, renderer.render_midi(song_of({**record, "dynamics": "loud"}, settings).to_midi(), 2.5))
