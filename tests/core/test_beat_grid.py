"""Beat grid: the semantic stage's onsets keep one tempo, given (``bpm``) or the opening's."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from tiny_specs import TINY_SPEC

from cadenza.core.steering.beat_grid import (
    OPENING,
    Beat,
    beat_model,
    check_bpm,
    check_strength,
    estimate_beats,
    hear_beats,
    heard_beats,
    phase_at,
    piece_beats,
    relation,
    strongest_beat,
    token_onsets,
)
from cadenza.core.engine.cascade import Cascade
from cadenza.core.engine.longform import DECODE_MARGIN, decode_chunked, frames_before
from cadenza.core.components import StageRequest
from cadenza.core.errors import InputError
from cadenza.core.spec.schema import parse_spec, spec_to_dict
from cadenza.registry import discover

RATE = 25.0  # frames per second of the semantic streams below


def onset_train(frames: int, period: float, first: float) -> torch.Tensor:
    """``[1, frames]``: onset 1 on the frames nearest ``first + k period``, 0 elsewhere."""
    onset = torch.zeros(1, frames)
    for k in range(frames):
        beat = first + k * period
        if round(beat) < frames:
            onset[0, round(beat)] = 1.0
    return onset


def music_features_tree(**output) -> dict:
    """The tiny cascade with a music-features semantic tokenizer (random centroids, some of them onsets)."""
    tree = yaml.safe_load(TINY_SPEC)
    tree["semantic_tokenizer"] = {"name": "music-features", "params": {"vocab_size": 32}}
    tree["output"] = {**tree.get("output", {}), **output}
    return tree


@pytest.fixture(scope="module")
def cascade():
    return Cascade.from_spec(music_features_tree(), registry=discover(environ={}))


def on_grid_share(ids: torch.Tensor, onsets: torch.Tensor, beat: Beat, start: int = 0) -> float:
    """Share of the onset tokens (onset > 0.5) from frame ``start`` on that fall within a frame of a beat."""
    hits = [t for t in range(start, ids.shape[-1]) if onsets[ids[t]] > 0.5]
    return sum(beat.closeness(t) > math.exp(-0.5 / 0.49) - 1e-9 for t in hits) / max(1, len(hits))


def beats(generation) -> tuple[dict, ...]:
    """Each row's ``beat`` as the steering recorded it (the sidecar's): strength, pulse, what the audio holds."""
    return tuple(row["beat"] for row in generation.steering if "beat" in row)


def strength(generation) -> float | None:
    """The beat grid's logit scale a generation ran with; None: no grid applied."""
    return beats(generation)[0]["strength"] if beats(generation) else None


def held_pulses(generation) -> tuple[dict, ...]:
    """Each row's pulse as the grid held it (``Beat.describe()``), without what the audio measured."""
    return tuple({k: v for k, v in pulse.items() if k not in ("heard", "strength")} for pulse in beats(generation))


def test_strongest_beat_finds_tempo_and_phase_of_regular_onsets():
    for bpm, first in ((100.0, 4.0), (75.0, 0.0), (140.0, 7.0)):
        period, phase, confidence = strongest_beat(onset_train(250, 60 * RATE / bpm, first), RATE)
        beat = Beat(float(period[0]), float(phase[0]), "opening", float(confidence[0]))
        # a click every beat is as periodic at twice the tempo; the prior around 120 BPM picks 150 over 75
        assert beat.bpm(RATE) == pytest.approx(bpm if bpm > 90 else 2 * bpm, abs=1.5)
        assert beat.closeness(round(first)) > 0.9 and beat.closeness(round(first + beat.period / 2)) < 0.01
        assert beat.describe(RATE)["first_beat_s"] == pytest.approx(first / RATE, abs=0.05)
        assert float(confidence[0]) > 0.5


def test_estimate_beats_reads_each_rows_token_onsets():
    onsets = torch.tensor([0.0, 1.0, 0.1])  # token 1 is an onset
    rows = torch.zeros(2, 200, dtype=torch.long)
    rows[0, ::15] = 1  # 100 BPM
    rows[1, 3::12] = 1  # 125 BPM, first beat on frame 3
    medium, fast = estimate_beats(rows, onsets, RATE)
    assert medium.bpm(RATE) == pytest.approx(100, abs=1.5) and fast.bpm(RATE) == pytest.approx(125, abs=1.5)
    assert fast.closeness(3) > 0.9 and medium.source == "opening"


def test_phase_at_a_given_tempo_finds_where_the_beats_fall():
    phase, confidence = phase_at(onset_train(200, 15.0, 6.0), 15.0)
    beat = Beat(15.0, float(phase[0]), "given", float(confidence[0]))
    assert beat.closeness(6) > 0.99 and beat.closeness(21) > 0.99 and beat.closeness(13) < 0.01
    assert beat.describe(RATE)["first_beat_s"] == pytest.approx(6 / RATE, abs=0.01)


def test_a_given_tempo_keeps_the_phase_of_what_exists(cascade):
    """--bpm with a prime: the beats fall where the prime's onsets put them at that tempo, not on frame 0."""
    onsets = token_onsets(cascade.semantic_tokenizer, "test")
    ids = torch.full((1, 1, 100), int(onsets.argmin()))
    ids[0, 0, 6::15] = int(onsets.argmax())  # onsets at 100 BPM, first on frame 6
    beat, = piece_beats({"semantic": ids}, 4.0, 100.0, 1, onsets, RATE)
    assert beat.source == "given" and beat.bpm(RATE) == pytest.approx(100.0)
    assert beat.closeness(6) > 0.99 and beat.closeness(0) < 0.01 and beat.confidence > 0.5
    assert piece_beats({}, 0.0, 100.0, 2, onsets, RATE) == [Beat.given(100.0, RATE)] * 2  # nothing written yet
    prime = torch.randn(1, cascade.sample_rate) * 0.1
    continued = cascade.generate(["more"], seconds=2.0, seed=0, prime=prime, steering=cascade.steering(bpm=100, beat=10))
    heard = estimate_beats(cascade.encode_prime(prime)["semantic"][:, 0], onsets, RATE, bpm=100.0)[0]
    assert held_pulses(continued) == (heard.describe(RATE),) and beats(continued)[0]["from"] == "given"


def test_heard_beats_measure_the_tempo_and_how_much_of_it_is_on_the_grid():
    """What the note reports: the strongest pulse of the re-read onsets, how it stands to the
    grid's tempo, and the share of onsets within a frame of a beat."""
    onsets = torch.tensor([0.0, 1.0])  # token 1 is an onset
    ids = torch.zeros(3, 240, dtype=torch.long)
    ids[0, ::15] = 1  # 100 BPM, on a grid at 100 BPM from frame 0
    ids[1, ::15] = 1  # the same onsets under a grid at 200 BPM: every other beat sounds
    ids[2, 7::15] = 1  # 100 BPM, half a beat off a 100 BPM grid
    grid, fast = Beat.given(100.0, RATE), Beat.given(200.0, RATE)
    on, half, off = heard_beats(ids, onsets, RATE, [grid, fast, grid])
    assert on["bpm"] == pytest.approx(100, abs=1.5) and on["relation"] == "same" and on["on_beat"] == 1.0
    assert half["bpm"] == pytest.approx(100, abs=1.5) and half["relation"] == "half" and half["on_beat"] == 1.0
    assert off["relation"] == "same" and off["on_beat"] == 0.0 and on["confidence"] > 0.5
    late = torch.zeros(1, 240, dtype=torch.long)
    late[0, 3:120:10] = 1  # 150 BPM before frame 120 (off the grid), then the grid's 100 BPM
    late[0, 120::15] = 1
    measured, = heard_beats(late, onsets, RATE, [grid], start=120)  # only what the grid steered counts
    assert measured["relation"] == "same" and measured["on_beat"] == 1.0
    silent, = heard_beats(torch.zeros(1, 50, dtype=torch.long), onsets, RATE, [grid])
    assert silent["on_beat"] is None


def test_relation_names_the_metrical_levels():
    assert relation(138.0, 138.0) == "same" and relation(69.0, 138.0) == "half" and relation(276.0, 138.0) == "double"
    assert relation(92.0, 138.0) == "two thirds" and relation(150.0, 100.0) == "three halves"
    assert relation(81.0, 138.0) is None


def test_the_beat_records_what_the_decoded_audio_holds(cascade):
    """``heard`` is read off the decoded audio by the semantic tokenizer, from where the grid
    began to steer: not the tokens the semantic stage wrote."""
    held = cascade.generate(["a march"], seconds=3.0, seed=0, window=1.0, overlap=0.25, steering=cascade.steering(bpm=100, beat=30),
                            watermark=False)
    onsets = token_onsets(cascade.semantic_tokenizer, "test")
    rate = cascade.frame_rates["acoustic"]
    with torch.inference_mode():
        audio = decode_chunked(cascade.tokenizer, held.tokens["acoustic"], rate, cascade.sample_rate,
                               frames_before(1.0, rate), frames_before(DECODE_MARGIN, rate))
    expected = hear_beats(cascade.semantic_tokenizer, 16000, audio, cascade.sample_rate, onsets, RATE,
                          [Beat.given(100.0, RATE)])
    assert beats(held)[0]["heard"] == expected[0]
    assert set(expected[0]) == {"bpm", "confidence", "relation", "on_beat"}


def test_given_beat_starts_on_the_first_frame():
    beat = Beat.given(120.0, RATE)  # a beat every 12.5 frames
    assert beat.period == 12.5 and beat.closeness(0) == 1.0 and beat.closeness(25) == pytest.approx(1.0)
    assert beat.closeness(6) < 1e-3 and beat.describe(RATE) == {"bpm": 120.0, "from": "given", "first_beat_s": 0.0,
                                                                 "confidence": 1.0}


def test_checks():
    assert check_strength(None) is None and check_strength(0) is None and check_strength(6) == 6.0
    assert check_bpm(None) is None and check_bpm(96) == 96.0
    for bad in (-1.0, float("nan"), True, "8"):
        with pytest.raises(InputError, match="beat must be a number >= 0"):
            check_strength(bad)
    for bad in (10, 1000, float("inf"), False, "96"):
        with pytest.raises(InputError, match="bpm must be a tempo from 30 to 300"):
            check_bpm(bad)


def test_grid_lifts_onsets_on_beats_and_lowers_them_between(cascade):
    stage = cascade.pipeline.stages[0]
    model = cascade.models[stage.spec.name]
    onsets = token_onsets(cascade.semantic_tokenizer, "test")
    beat = Beat.given(100.0, RATE)  # beats on frames 0, 15, 30, ...
    steered = beat_model(model, onsets, [beat], strength=5.0, offset=10)  # written position 5 is frame 15
    request = StageRequest(1, (), None)
    written = torch.zeros(1, 20, dtype=torch.long)
    plain, biased = model.forward(request, written), steered.forward(request, written)
    lift = (biased - plain)[0]
    on, off = lift[5], lift[12]  # frame 15 (a beat), frame 22 (between beats)
    assert torch.allclose(on, 5.0 * onsets, atol=1e-5) and torch.allclose(off, -5.0 * onsets, atol=1e-4)


def test_given_bpm_puts_the_semantic_onsets_on_the_grid(cascade):
    onsets = token_onsets(cascade.semantic_tokenizer, "test")
    free = cascade.generate(["a march"], seconds=4.0, seed=0, window=1.0, overlap=0.25)
    held = cascade.generate(["a march"], seconds=4.0, seed=0, window=1.0, overlap=0.25, steering=cascade.steering(bpm=100, beat=30))
    beat = Beat.given(100.0, RATE)
    assert beats(free) == () and strength(free) is None
    assert strength(held) == 30.0 and held_pulses(held) == (beat.describe(RATE),)
    assert on_grid_share(held.tokens["semantic"][0, 0], onsets, beat) > 0.9
    assert on_grid_share(free.tokens["semantic"][0, 0], onsets, beat) < 0.6


def test_the_opening_sets_the_tempo_of_the_later_windows(cascade):
    """1 s windows continuing the last 0.25 s: the first to start at or after OPENING (10 s) starts
    at 10 s, so the tempo is read from the first 250 frames and held from there on."""
    assert OPENING == 10.0
    onsets = token_onsets(cascade.semantic_tokenizer, "test")
    generation = cascade.generate(["a waltz", "a jig"], seconds=12.0, seed=[1, 2], window=1.0, overlap=0.25,
                                  steering=cascade.steering(beat=30))
    assert len(beats(generation)) == 2 and all(b["from"] == "opening" for b in beats(generation))
    for row in range(2):
        ids = generation.tokens["semantic"][row, 0]
        opening = estimate_beats(ids[None, :250], onsets, RATE)[0]
        assert held_pulses(generation)[row] == opening.describe(RATE)
        assert on_grid_share(ids, onsets, opening, start=250) > 0.9
    short = cascade.generate(["a waltz"], seconds=4.0, seed=1, window=1.0, overlap=0.25, steering=cascade.steering(beat=30))
    assert beats(short) == () and strength(short) is None  # no window starts after the opening: nothing is steered


def test_a_prime_as_long_as_the_opening_sets_the_tempo(cascade):
    prime = torch.randn(1, 10 * cascade.sample_rate) * 0.1
    generation = cascade.generate(["more"], seconds=11.0, seed=0, prime=prime, steering=cascade.steering(beat=10))
    onsets = token_onsets(cascade.semantic_tokenizer, "test")
    heard = estimate_beats(cascade.encode_prime(prime)["semantic"][:, 0], onsets, RATE)[0]
    assert held_pulses(generation) == (heard.describe(RATE),)


def test_pipelines_without_onset_tokens_refuse_the_grid(registry):
    tiny = Cascade.from_spec(yaml.safe_load(TINY_SPEC), registry=registry)  # mel-kmeans: no onsets per token
    with pytest.raises(InputError, match=r"test-tiny.*mel-kmeans.*cannot hold a beat"):
        tiny.generate(["x"], seconds=1.0, steering=tiny.steering(bpm=100))
    assert beats(tiny.generate(["x"], seconds=1.0, window=0.5)) == ()  # the spec's beat is 0: nothing to refuse


def test_bpm_with_the_grid_off_is_refused(cascade):
    with pytest.raises(InputError, match="a bpm needs the beat grid"):
        cascade.generate(["x"], seconds=1.0, steering=cascade.steering(bpm=100, beat=0))


def test_spec_beat_is_checked_and_written_back():
    spec, problems = parse_spec(music_features_tree(beat=6))
    assert not problems and spec.output.beat == 6.0 and spec_to_dict(spec)["output"]["beat"] == 6.0
    assert "beat" not in spec_to_dict(parse_spec(music_features_tree())[0])["output"]
    _, problems = parse_spec(music_features_tree(beat=-1))
    assert problems == [(("output", "beat"), "beat must be a number >= 0 (0: off), got -1")]


def test_spec_beat_is_the_default(registry):
    cascade = Cascade.from_spec(music_features_tree(beat=20), registry=registry)
    generation = cascade.generate(["x"], seconds=11.0, seed=0, window=1.0, overlap=0.25)
    assert strength(generation) == 20.0 and beats(generation)[0]["from"] == "opening"
    assert beats(cascade.generate(["x"], seconds=11.0, seed=0, window=1.0, overlap=0.25,
                                 steering=cascade.steering(beat=0))) == ()


def test_generate_command_records_the_beat(cli, write_spec, tmp_path):
    spec = write_spec(yaml.safe_dump(music_features_tree()), "beat.yaml")
    out = tmp_path / "held.wav"
    code, _, err = cli("generate", "a march", "-p", spec, "-s", "2", "--window", "1", "--bpm", "90", "-o", out)
    assert code == 0, err
    sidecar = json.loads(out.with_suffix(".json").read_text())
    heard = sidecar["beat"].pop("heard")
    share = "none" if heard["on_beat"] is None else f"{heard['on_beat']:.0%}"
    assert f"beat grid at 90 BPM (as asked); measured in the audio: {heard['bpm']:g} BPM (" in err
    assert f"), {share} of its onsets on the grid's beats" in err
    assert sidecar["beat"] == {"strength": 8.0, "bpm": 90.0, "from": "given", "first_beat_s": 0.0, "confidence": 1.0}


@pytest.mark.parametrize("args, message", [
    (["--bpm", "1000"], "--bpm must be a tempo from 30 to 300 beats per minute, got 1000.0"),
    (["--beat", "-2"], "--beat must be a number >= 0"),
    (["--bpm", "90", "--beat", "0"], "--bpm needs the beat grid: --beat 0 turns it off"),
    (["--bpm", "90"], "pipeline 'test-tiny' has a semantic tokenizer (mel-kmeans) that does not say which tokens are "
                      "onsets, so it cannot hold a beat"),
])
def test_generate_command_bad_beat_is_one_line(cli, tiny_spec, tmp_path, args, message):
    out = tmp_path / "x.wav"
    code, _, err = cli("generate", "a march", "-p", tiny_spec, "-o", out, "-q", *args)  # -q: no random-weights note
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_batch_lines_carry_their_own_tempo(cli, write_spec, tmp_path):
    spec = write_spec(yaml.safe_dump(music_features_tree()), "beat.yaml")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "a march", "bpm": 120, "name": "march"}\n'
                       '{"prompt": "a dirge", "name": "dirge"}\n'
                       '{"prompt": "too fast", "bpm": 900}\n')
    code, _, err = cli("generate", "--prompts", prompts, "--out", tmp_path / "out", "-p", spec, "-s", "2",
                       "--window", "1", "-q")
    assert code == 2 and f"{prompts}:3: \"bpm\" must be a tempo from 30 to 300" in err
    march = json.loads((tmp_path / "out" / "march.json").read_text())
    dirge = json.loads((tmp_path / "out" / "dirge.json").read_text())
    assert march["beat"]["bpm"] == 120.0 and march["beat"]["from"] == "given" and "beat" not in dirge


@pytest.mark.slow
def test_the_bundled_default_puts_its_onsets_on_a_given_beat(registry):
    """With the trained default, --bpm 100 at the spec's scale puts every onset token of a 10 s
    clip within a frame of a beat; the same seed without it (a 10 s clip is all opening), about
    one in five."""
    default = Cascade.from_spec("default", registry=registry)
    onsets = token_onsets(default.semantic_tokenizer, "default")
    beat = Beat.given(100.0, RATE)
    prompt = "a calm piano piece in D minor at a medium tempo, soft, no drums"
    held = default.generate([prompt], seconds=10.0, seed=0, steering=default.steering(bpm=100))
    free = default.generate([prompt], seconds=10.0, seed=0)
    assert strength(held) == default.pipeline.spec.output.beat == 12.0 and beats(held)[0]["bpm"] == 100.0
    assert on_grid_share(held.tokens["semantic"][0, 0], onsets, beat) > 0.9
    assert on_grid_share(free.tokens["semantic"][0, 0], onsets, beat) < 0.5
    # and the audio carries the grid's tempo itself (not half or double of it), more of its onsets on the beats
    heard = beats(held)[0]["heard"]
    unsteered, = hear_beats(default.semantic_tokenizer, 16000, free.audio, default.sample_rate, onsets, RATE, [beat])
    assert heard["relation"] == "same" and heard["on_beat"] > unsteered["on_beat"] + 0.1


def test_the_grid_and_the_music_features_tokenizer_read_tempo_with_the_one_core_estimator():
    from cadenza.core.audio import tempo
    from cadenza.core.steering import beat_grid
    from cadenza.plugins.music_features import model as music_features

    assert beat_grid.strongest_beat is music_features.strongest_beat is tempo.strongest_beat
    assert beat_grid.phase_at is tempo.phase_at
