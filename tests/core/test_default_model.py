"""The bundled default pipeline: loads offline from the package and makes music, not noise.

It is trained by ``recipes/default_model.py`` (figures in docs/default-model.md); these tests pin
what a user relies on, on the real shipped weights: it builds with no network, is the default
of ``cadenza generate``, its output has musical structure (tonal, with note onsets), seeds
behave, and the text steers it (tempo words move the measured tempo, key words the measured key).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cadenza.core.engine.cascade import Cascade
from cadenza.core.cli.main import DEFAULT_PIPELINE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default(registry):
    return Cascade.from_spec("default", registry)


def spectral_flatness(audio: torch.Tensor) -> float:
    """Geometric over arithmetic mean of the power spectrum, median over frames: ~1 for white noise, ~0 for tones."""
    x = audio.mean(0).double()
    power = torch.stft(x, 2048, 512, window=torch.hann_window(2048, dtype=x.dtype), return_complex=True).abs() ** 2
    power = power[1:] + 1e-12
    flatness = torch.exp(torch.log(power).mean(0)) / power.mean(0)
    loud = power.sum(0) > power.sum(0).max() * 1e-3
    return float(flatness[loud].median())


def test_default_pipeline_is_the_trained_one_and_loads_offline(default, monkeypatch):
    assert DEFAULT_PIPELINE == "default"
    assert default.random_components() == []


def test_default_pipeline_makes_tonal_music_with_onsets(default, real_audio):
    from cadenza.plugins.estimators.model import Analysis

    generation = default.generate(["a cheerful piano melody in C major at a medium tempo"], seconds=4.0, seed=0)
    audio = generation.audio[0]
    assert audio.shape[-1] == 4 * default.sample_rate
    rms_db = 20 * np.log10(float(audio.pow(2).mean().sqrt()) + 1e-12)
    assert rms_db > -40  # not silent
    noise = torch.randn(audio.shape, generator=torch.Generator().manual_seed(0))
    music, _ = real_audio("24k", seconds=4.0)
    # white noise ~0.5+, real music ~0.01; generated music must sit with the music
    assert spectral_flatness(audio) < 0.2 < spectral_flatness(noise)
    assert spectral_flatness(music[0]) < 0.2
    onsets = Analysis.of(audio.numpy().astype(np.float64), default.sample_rate).onset_envelope
    peaks = ((onsets[1:-1] > onsets[:-2]) & (onsets[1:-1] >= onsets[2:]) & (onsets[1:-1] > onsets.mean() + 2 * onsets.std()))
    assert int(peaks.sum()) >= 2  # note attacks, not a static drone or a hiss


def test_seeds(default):
    a = default.generate(["a soft flute tune"], seconds=2.0, seed=1).audio
    b = default.generate(["a soft flute tune"], seconds=2.0, seed=1).audio
    c = default.generate(["a soft flute tune"], seconds=2.0, seed=2).audio
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_tempo_words_move_the_measured_tempo(registry, default):
    """"very slow" vs "very fast", averaged over eight seeds: the fast prompts measure faster.
    (Single clips vary by tens of BPM; the shipped default's means are about 90 vs 77 BPM.)"""
    entry = registry.get("metric", "tempo")
    tempo = entry.build(entry.config())
    seeds = list(range(8))
    bpm = {}
    for word in ("very slow", "very fast"):
        prompts = [f"a {word} piano piece in A minor"] * len(seeds)
        audio = default.generate(prompts, seconds=5.0, seed=seeds).audio
        values = [v for v in tempo(audio, sample_rate=default.sample_rate)["bpm"] if np.isfinite(v)]
        bpm[word] = float(np.mean(values))
    assert bpm["very fast"] > bpm["very slow"]


def test_key_words_move_the_measured_key(default):
    """"in C major" vs "in F# major" (a tritone apart, sharing 2 of 7 scale notes), six seeds each:
    each prompt's clips correlate better with its own key profile than with the other's, on average.
    Measured on the shipped default: +1.09 and +0.63 (correlation difference, range -2..2). Keys the
    captions spell differently (D# minor, A# major for Eb, Bb) do not follow, so this pins only the
    vocabulary the corpus uses. Instrument words are not pinned: the default is at chance there."""
    from cadenza.plugins.estimators.model import PROFILES, Analysis, key_scores, pitch_class

    seeds = list(range(6))
    lean = {}
    for key, other in (("C", "F#"), ("F#", "C")):
        audio = default.generate([f"a piano piece in {key} major, no drums"] * len(seeds), seconds=5.0, seed=seeds).audio
        diffs = []
        for clip in audio:
            analysis = Analysis.of(clip.numpy().astype(np.float64), default.sample_rate)
            scores = key_scores(analysis.chroma(36, 96).sum(axis=0), *PROFILES["albrecht-shanahan"])
            diffs.append(scores[0, pitch_class(key)] - scores[0, pitch_class(other)])
        lean[key] = float(np.mean(diffs))
    assert lean["C"] > 0.2 and lean["F#"] > 0.2, lean
