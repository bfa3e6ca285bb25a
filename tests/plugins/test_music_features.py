"""The ``music-features`` semantic tokenizer: chroma, onset, beat phase and dominant pitch per
frame, MIDI notes mapped into the same space, k-means fitting through `cadenza fit-kmeans` on
a rendered corpus, and its place in a cascade."""

import itertools
import json
import math
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from cadenza.core.quantize import kmeans
from cadenza.core.engine.cascade import Cascade
from cadenza.core.components import BuildContext, SemanticTokenizer
from cadenza.core.errors import InputError, WeightsError
from cadenza.core.spec.params import ParamsError, structure_config
from cadenza.core.types import SemanticInfo
from cadenza.core.spec.validate import load_pipeline
from cadenza.core.engine.weights import Weights, parse_weights
from cadenza.plugins.tiny import mel_kmeans
from cadenza.plugins.music_features import model as music_features
from cadenza.plugins.music_features import (
    BEAT, CHROMA, FEATURE_DIM, HEIGHT, ONSET, PITCH_CLASS, MusicFeaturesConfig,
)
from cadenza.plugins.tiny import MelKMeansConfig
from cadenza.registry import discover
from tiny_specs import TINY_SPEC

SR = 16000
FPS = 25
MELODY = [60, 64, 67, 72, 69, 65, 62, 59]  # C E G C' A F D B
NOTE_S, LEAD_S, TAIL_S = 0.4, 0.22, 0.3  # notes start mid-frame, in frames 5, 15, 25, ...
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}  # as the corpus composes them
SEMANTIC = "{name: mel-kmeans, params: {frame_rate: 25, vocab_size: 32}}"
PITCH_PART = list(range(*CHROMA)) + list(range(PITCH_CLASS[0], HEIGHT + 1))


def melody_notes():
    return [(LEAD_S + i * NOTE_S, LEAD_S + (i + 1) * NOTE_S, p) for i, p in enumerate(MELODY)]


def melody_seconds():
    return LEAD_S + len(MELODY) * NOTE_S + TAIL_S


def synth(notes, seconds, amp=0.4, fade=0.01):
    """Sine tones with 10 ms raised-cosine fades (no clicks), ``[1, 1, S]`` at 16 kHz."""
    t = torch.arange(round(seconds * SR), dtype=torch.float64) / SR
    out = torch.zeros_like(t)
    for start, end, pitch in notes:
        inside = (t >= start) & (t < end)
        local = t[inside] - start
        env = torch.clamp(torch.minimum(local, end - start - local) / fade, max=1.0)
        env = 0.5 - 0.5 * torch.cos(math.pi * env)
        out[inside] += amp * env * torch.sin(2 * math.pi * 440 * 2 ** ((pitch - 69) / 12) * local)
    return out.float().reshape(1, 1, -1)


def steady_frames(notes, margin=2):
    """(frame, pitch) of frames at least ``margin`` frames inside a note."""
    for start, end, pitch in notes:
        for frame in range(math.floor(start * FPS) + margin, math.floor(end * FPS) - margin + 1):
            yield frame, pitch


@pytest.fixture(scope="module")
def model():
    return music_features.build(MusicFeaturesConfig(), BuildContext())


@pytest.fixture(scope="module")
def melody(model):
    """(audio features [T, 28], note features [T, 28]) of the sine melody."""
    seconds = melody_seconds()
    return model.features(synth(melody_notes(), seconds))[0], model.features_from_notes(melody_notes(), seconds)


# -- registration and config ---------------------------------------------------------------------------

def test_registration_and_describe_import_no_torch():
    code = ("import sys, cadenza.plugins.music_features as m; from cadenza.core.engine.weights import Weights; "
            "info = m.MusicFeaturesConfig(vocab_size=64).describe(Weights('random', 'random')); "
            "print('torch' in sys.modules, info.frame_rate, info.vocab_size)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "25.0", "64"]


def test_discovered_and_is_a_semantic_tokenizer(registry, model):
    entry = registry.entries("semantic_tokenizer")
    names = {e.name: e for e in entry}
    assert "music-features" in names and names["music-features"].config is MusicFeaturesConfig
    assert isinstance(model, SemanticTokenizer) and not model.training
    assert model.info == SemanticInfo(16000, 25.0, 128) == MusicFeaturesConfig().describe(Weights("random", "random"))
    assert model.centroids.shape == (128, FEATURE_DIM)


@pytest.mark.parametrize("params, field", [
    ({"frame_rate": 30}, "frame_rate"),
    ({"n_fft": 512}, "n_fft"),
    ({"onset_n_fft": 256}, "onset_n_fft"),
    ({"pitch_min": 60, "pitch_max": 60}, "pitch_max"),
    ({"pitch_max": 127}, "pitch_max"),  # 12.5 kHz: above Nyquist at 16 kHz
    ({"pitch_min": -1}, "pitch_min"),
    ({"chroma_weight": -1.0}, "chroma_weight"),
    ({"beat_weight": float("nan")}, "beat_weight"),
    ({"vocab_size": 1}, "vocab_size"),
])
def test_config_validation_names_the_field(params, field):
    with pytest.raises(ParamsError) as err:
        structure_config(MusicFeaturesConfig, params)
    assert err.value.problems[0][0] == (field,)


# -- audio features ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, seconds", [("24k", 2.0), ("48k", 1.3)])
def test_shapes_and_frame_rate_on_real_music(model, real_audio, name, seconds):
    audio, rate = real_audio(name, seconds=seconds)  # 48k is stereo: channels are averaged
    feats = model.features(audio, rate)
    frames = math.ceil(seconds * SR / 640)
    assert feats.shape == (1, frames, FEATURE_DIM) and feats.dtype == torch.float32 and torch.isfinite(feats).all()
    assert abs(frames - seconds * FPS) <= 1
    chroma_norm = feats[0, :, slice(*CHROMA)].norm(dim=-1)
    assert torch.allclose(chroma_norm[chroma_norm > 0], torch.ones(1), atol=1e-4)  # unit norm, or silent
    assert (chroma_norm > 0).float().mean() > 0.9  # music: nearly every frame has a chroma
    onset = feats[0, :, ONSET]
    assert 0 <= onset.min() and onset.max() <= 1 and onset.max() == 1
    assert (feats[0, :, slice(*BEAT)].norm(dim=-1) <= 0.5 + 1e-5).all()  # weight 0.5 times confidence <= 1
    voicing = feats[0, :, slice(*PITCH_CLASS)].sum(-1)
    assert 0 <= voicing.min() and voicing.max() <= 1 + 1e-5 and voicing.mean() > 0.3
    ids = model.tokenize(audio, rate)
    assert ids.shape == (1, frames) and ids.dtype == torch.int64 and 0 <= ids.min() and ids.max() < 128
    assert len(ids.unique()) > 3


@pytest.mark.parametrize("samples", [0, 1, 640, 641])
def test_frame_count_is_ceil_of_hops(model, samples):
    x = 0.1 * torch.randn(2, 1, samples, generator=torch.Generator().manual_seed(0))
    assert model.features(x).shape == (2, math.ceil(samples / 640), FEATURE_DIM)
    assert model.tokenize(x).shape == (2, math.ceil(samples / 640))
    with pytest.raises(InputError):
        model.features(x[0])


def test_silence_and_noise_have_no_pitch(model):
    silence = model.features(torch.zeros(1, 1, SR))[0]
    assert torch.equal(silence[:, slice(*CHROMA)], torch.zeros(25, 12)) and silence[:, ONSET].max() == 0
    assert silence[:, PITCH_CLASS[0]:].abs().max() == 0
    noise = model.features(0.3 * torch.randn(1, 1, 2 * SR, generator=torch.Generator().manual_seed(1)))[0]
    assert noise[:, slice(*PITCH_CLASS)].sum(-1).mean() < 0.1  # voicing near 0: no pitch in white noise


def test_chroma_and_pitch_follow_a_sine_melody(melody):
    audio, _ = melody
    checked = 0
    for frame, pitch in steady_frames(melody_notes()):
        row = audio[frame]
        assert int(row[slice(*CHROMA)].argmax()) == pitch % 12, frame
        assert int(row[slice(*PITCH_CLASS)].argmax()) == pitch % 12, frame
        voicing = float(row[slice(*PITCH_CLASS)].sum())
        assert voicing > 0.9 and float(row[HEIGHT]) / 0.5 / voicing * 12 + 60 == pytest.approx(pitch, abs=0.01)
        checked += 1
    assert checked == len(MELODY) * 7


def test_onset_peaks_at_note_starts(melody):
    audio, _ = melody
    onset = audio[:, ONSET]
    starts = [math.floor(start * FPS) for start, _, _ in melody_notes()]
    for frame in starts:
        assert onset[frame - 1: frame + 2].max() > 0.8, frame
        assert int(onset[frame - 2: frame + 6].argmax()) + frame - 2 in (frame - 1, frame, frame + 1)
    steady = [frame for frame, _ in steady_frames(melody_notes())]
    assert onset[steady].max() < 0.2


def test_beat_phase_of_a_regular_melody(melody):
    audio, notes = melody
    beat = audio[:, slice(*BEAT)] / 0.5
    # 150 BPM (a note every 0.4 s = 10 frames): the phase turns once per 10 frames, 0 on the starts.
    assert beat.norm(dim=-1).min() > 0.5
    phase = torch.atan2(beat[:, 1], beat[:, 0])
    starts = torch.tensor([math.floor(start * FPS) for start, _, _ in melody_notes()])
    assert torch.cos(phase[starts]).min() > 0.9
    assert torch.allclose(torch.cos(phase[starts + 5]), -torch.ones(len(starts)), atol=0.1)
    note_beat = notes[:, slice(*BEAT)] / 0.5
    assert torch.nn.functional.cosine_similarity(beat, note_beat, dim=-1).min() > 0.95


# -- MIDI notes --------------------------------------------------------------------------------------------

def test_notes_features_match_the_audio_in_chroma_and_pitch(model, melody):
    audio, notes = melody
    assert notes.shape == audio.shape
    cosine = torch.nn.functional.cosine_similarity(audio[:, PITCH_PART], notes[:, PITCH_PART], dim=-1)
    steady = [frame for frame, _ in steady_frames(melody_notes())]
    assert cosine[steady].min() > 0.95
    sounding = [f for f in range(len(notes)) if notes[f, slice(*PITCH_CLASS)].sum() > 0]
    assert cosine[sounding].mean() > 0.9
    onset = notes[:, ONSET]
    assert onset.nonzero().flatten().tolist() == [math.floor(start * FPS) for start, _, _ in melody_notes()]


def test_a_melody_tokenizes_like_its_audio(model, melody):
    """Centroids fitted on the melody's audio give its MIDI notes the same ids on steady frames."""
    audio, _ = melody
    fitted = model.with_centroids(kmeans.fit_kmeans(audio, 8, batch_size=len(audio), epochs=10, seed=0))
    from_audio = fitted.tokenize(synth(melody_notes(), melody_seconds()))[0]
    from_notes = fitted.tokenize_notes(melody_notes(), melody_seconds())
    assert from_notes.shape == from_audio.shape and from_notes.dtype == torch.int64
    steady = [frame for frame, _ in steady_frames(melody_notes())]
    assert (from_notes[steady] == from_audio[steady]).float().mean() > 0.9


def test_notes_details(model):
    seconds = 1.0
    chord = [(0.0, 1.0, 60), (0.0, 1.0, 64, 90), (0.5, 1.0, 79)]  # C and E, then G above
    feats = model.features_from_notes(chord, seconds)
    assert feats.shape == (model.frames_for(seconds), FEATURE_DIM) == (25, FEATURE_DIM)
    assert set(feats[5, slice(*CHROMA)].topk(2).indices.tolist()) == {0, 4}
    assert int(feats[5, slice(*PITCH_CLASS)].argmax()) == 4  # the highest sounding note: E4
    assert int(feats[20, slice(*PITCH_CLASS)].argmax()) == 7 and feats[20, HEIGHT] == pytest.approx(0.5 * 19 / 12)
    assert feats[:, ONSET].nonzero().flatten().tolist() == [0, 12]
    low = model.features_from_notes([(0.0, 1.0, 12)], seconds)  # C0: moved by octaves into the pitch range
    assert low[10, HEIGHT] / 0.5 * 12 + 60 == MusicFeaturesConfig().pitch_min == 36
    empty = model.features_from_notes([], seconds)
    assert empty.shape == (25, FEATURE_DIM) and empty.abs().max() == 0
    for bad in ([(0.5, 0.5, 60)], [(0.0, 1.0, 128)], [(0.0, 1.0, 60.5)], [(0.0, 1.0)], [(-1.0, 1.0, 60)]):
        with pytest.raises(InputError, match="note 0"):
            model.features_from_notes(bad, seconds)


# -- weights -----------------------------------------------------------------------------------------------

def test_seeded_random_centroids_and_global_rng():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = music_features.build(MusicFeaturesConfig(vocab_size=16), BuildContext())
    assert torch.equal(torch.rand(3), expected)
    b = music_features.build(MusicFeaturesConfig(vocab_size=16), BuildContext())
    c = music_features.build(MusicFeaturesConfig(vocab_size=16, seed=1), BuildContext())
    assert torch.equal(a.centroids, b.centroids) and not torch.equal(a.centroids, c.centroids)
    voicing = a.centroids[:, slice(*PITCH_CLASS)].sum(-1)
    assert ((voicing == 0) | (voicing == 1)).all() and torch.isfinite(a.centroids).all()


def test_checkpoint_round_trip_and_weights_errors(model, tmp_path):
    config = MusicFeaturesConfig(vocab_size=16, beat_weight=0.0)
    fitted = music_features.build(config, BuildContext()).with_centroids(torch.randn(12, FEATURE_DIM))
    assert fitted.info.vocab_size == 12 and fitted.config.beat_weight == 0.0
    folder = fitted.save_pretrained(tmp_path / "mf")
    weights = parse_weights(str(folder))
    assert MusicFeaturesConfig().describe(weights).vocab_size == 12  # the checkpoint's config decides
    loaded = music_features.build(MusicFeaturesConfig(), BuildContext(weights=weights))
    assert torch.equal(loaded.centroids, fitted.centroids) and loaded.config == fitted.config
    x = synth(melody_notes()[:3], 1.5)
    assert torch.equal(loaded.tokenize(x), fitted.tokenize(x))
    assert loaded.features(x)[..., slice(*BEAT)].abs().max() == 0  # weight 0 drops the block
    with pytest.raises(WeightsError, match=r"\[K, 28\]"):
        model.with_centroids(torch.zeros(4, 27))
    mel_kmeans.build(MelKMeansConfig(vocab_size=8), BuildContext()).save_pretrained(tmp_path / "mel")
    with pytest.raises(WeightsError, match="mel-kmeans"):
        music_features.build(MusicFeaturesConfig(), BuildContext(weights=parse_weights(str(tmp_path / "mel"))))


# -- fit-kmeans on a rendered corpus -------------------------------------------------------------------

FIT_SPEC = """\
semantic_tokenizer: {{name: music-features, weights: {weights}, params: {{vocab_size: 32}}}}
tokenizer: {{name: tiny-codec, params: {{num_codebooks: 2, codebook_size: 32, channels: 8, latent_dim: 16}}}}
stages:
  - {{name: sem, role: semantic, model: transformer, params: {{d_model: 32, layers: 1, heads: 2}}, writes: semantic}}
  - {{name: ac, role: coarse, model: transformer, params: {{d_model: 32, layers: 1, heads: 2}}, reads: [semantic], writes: acoustic}}
"""


@pytest.fixture(scope="module")
def corpus_clips(tmp_path_factory):
    """Eight 3 s clips rendered with FluidSynth at 16 kHz, and their manifest records."""
    from cadenza.plugins.workflows.corpus import build as corpus
    from cadenza.plugins.workflows.corpus.render import Renderer, RenderToolError

    try:
        renderer = Renderer.find(16000, 1)
    except RenderToolError as exc:
        pytest.fail(f"{exc} (setup.sh installs them)")
    out = tmp_path_factory.mktemp("corpus")
    corpus.build(out, 8, corpus.Settings(seed=0, seconds=3.0, sample_rate=16000), workers=2, progress=False,
                 renderer=renderer)
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    return out, records


def test_fit_kmeans_end_to_end_on_a_corpus(cli, write_spec, corpus_clips, tmp_path):
    corpus_dir, records = corpus_clips
    spec = write_spec(FIT_SPEC.format(weights="random"))
    out = tmp_path / "km" / "centroids.safetensors"
    code, stdout, stderr = cli("fit-kmeans", "-p", spec, "--data", corpus_dir / "audio", "-o", out,
                               "--clusters", "16", "--epochs", "10")
    assert code == 0, stderr
    assert "8 files read, 0 skipped" in stdout
    centroids = load_file(str(out))["centroids"]
    assert centroids.shape == (16, FEATURE_DIM) and torch.isfinite(centroids).all()
    with safe_open(str(out), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["tokenizer"] == "music-features" and meta["feature_dim"] == "28" and meta["frames"] == str(8 * 75)
    folder = out.with_suffix("")  # like mel-kmeans: no `kmeans` param, so a weights folder beside the file
    assert f"weights: {folder.resolve()}" in stdout
    assert json.loads((folder / "config.json").read_text())["component"] == "music-features"

    fitted_spec = write_spec(FIT_SPEC.format(weights=folder), "fitted.yaml")
    registry = discover(environ={})
    assert load_pipeline(fitted_spec, registry).semantic_tokenizer.info.vocab_size == 16  # not the spec's 32
    tokenizer = Cascade.from_spec(fitted_spec, registry=registry).semantic_tokenizer
    assert torch.equal(tokenizer.centroids, centroids)

    from cadenza.core.audio.io import load_audio
    from cadenza.plugins.workflows.corpus.compose import tonic_pitch_class

    histograms = []
    for record in records:
        audio, rate = load_audio(corpus_dir / record["audio"])
        ids = tokenizer.tokenize(audio[None], rate)[0]
        assert ids.shape == (75,)
        histograms.append(torch.bincount(ids, minlength=16).float() / len(ids))
        # The centroids a clip's tokens pick carry its key: most of their chroma lies on its scale
        # (7 of 12 pitch classes: 58% by chance).
        chroma = (histograms[-1][:, None] * centroids[:, slice(*CHROMA)].clamp(min=0)).sum(0)
        tonic = tonic_pitch_class(record["key"])
        scale = [(tonic + step) % 12 for step in SCALES[record["mode"]]]
        assert chroma[scale].sum() / chroma.sum() > 0.7, record["key"]
    assert int((torch.stack(histograms).sum(0) > 0).sum()) >= 10  # the codebook is used, not one cluster
    pairs = [(a, b) for a, b in itertools.combinations(range(len(records)), 2)
             if records[a]["key"] != records[b]["key"]]
    assert len(pairs) >= 20
    for a, b in pairs:  # different keys: clearly different token histograms (total variation distance)
        distance = 0.5 * float((histograms[a] - histograms[b]).abs().sum())
        assert distance > 0.3, (records[a]["key"], records[b]["key"], distance)


# -- in a cascade ------------------------------------------------------------------------------------------

def test_spec_with_music_features_validates_and_generates(cli, write_spec, real_audio):
    assert SEMANTIC in TINY_SPEC
    spec = write_spec(TINY_SPEC.replace(SEMANTIC, "{name: music-features, params: {vocab_size: 32}}"))
    code, _, stderr = cli("validate", spec)
    assert code == 0, stderr
    cascade = Cascade.from_spec(spec, registry=discover(environ={}))
    result = cascade.generate("a cello", seconds=0.5, seed=1)
    assert result.audio.shape == (1, 1, 8000) and torch.isfinite(result.audio).all()
    assert result.tokens["semantic"].shape[-1] == 13 and int(result.tokens["semantic"].max()) < 32
    prime, rate = real_audio("24k", seconds=0.5)  # a prime runs the semantic tokenizer itself
    continued = cascade.generate("a cello", seconds=1.0, seed=1, prime=prime[0], prime_rate=rate)
    assert continued.audio.shape == (1, 1, 16000)
    expected = cascade.semantic_tokenizer.tokenize(prime, rate)[0, :12]  # the prime's whole frames
    assert torch.equal(continued.tokens["semantic"][0, 0, :12], expected)


def test_block_weights_scale_the_layout():
    config = MusicFeaturesConfig(chroma_weight=2.0, onset_weight=0.0, pitch_weight=0.5, height_weight=1.0)
    model = music_features.build(config, BuildContext())
    notes = melody_notes()[:2]
    base = music_features.build(MusicFeaturesConfig(), BuildContext()).features_from_notes(notes, 1.2)
    scaled = model.features_from_notes(notes, 1.2)
    assert torch.allclose(scaled[:, slice(*CHROMA)], 2 * base[:, slice(*CHROMA)])
    assert scaled[:, ONSET].abs().max() == 0
    assert torch.allclose(scaled[:, slice(*PITCH_CLASS)], 0.5 * base[:, slice(*PITCH_CLASS)])
    assert torch.allclose(scaled[:, HEIGHT], 2 * base[:, HEIGHT])
