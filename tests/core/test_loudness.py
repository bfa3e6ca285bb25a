"""The output stage's level: BS.1770 loudness, the true-peak limiter, and what generation does with them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile
import torch

from cadenza.core.audio.loudness import (LevelSettings, apply_output_stage, finish_levels, integrated_loudness,
                                         level_gain, limit, true_peak, to_db)
from cadenza.core.engine.cascade import Cascade
from cadenza.core.spec.schema import parse_spec, spec_to_dict
from cadenza.registry import discover

RATE = 24000


def sine(freq: float, amplitude: float, seconds: float = 2.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t))[None]


def test_a_full_scale_1khz_sine_is_about_minus_3_lufs():
    # BS.1770's reference point: a 0 dBFS 997 Hz sine in one channel reads -3.01 LUFS
    assert integrated_loudness(sine(997, 1.0), RATE) == pytest.approx(-3.01, abs=0.1)
    assert integrated_loudness(sine(997, 0.1), RATE) == pytest.approx(-23.01, abs=0.1)


def test_silence_and_clips_shorter_than_a_block_have_no_loudness():
    assert integrated_loudness(np.zeros((1, RATE)), RATE) == -math.inf
    assert integrated_loudness(sine(440, 0.5, seconds=0.3), RATE) == -math.inf
    gain, report = level_gain(np.zeros((1, RATE)), RATE, LevelSettings())
    assert gain == 0.0 and "no gain" in report["note"] and report["measured_lufs"] is None


def test_true_peak_sees_peaks_between_samples():
    # a sine at a quarter of the rate sampled 45 degrees off its crest: samples at 0.707, true peak 1
    n = np.arange(4000)
    x = np.sin(2 * np.pi * n / 4 + np.pi / 4)[None]
    assert np.abs(x).max() == pytest.approx(0.7071, abs=1e-3)
    assert true_peak(x) == pytest.approx(1.0, abs=0.02)


def test_the_limiter_holds_the_ceiling_and_leaves_the_rest_alone():
    rng = np.random.default_rng(0)
    x = 0.1 * rng.standard_normal((2, 3 * RATE))
    x[:, RATE : RATE + 50] *= 12  # a burst far over the ceiling
    limited, reduction = limit(x, RATE, -1.0)
    assert to_db(true_peak(limited)) <= -1.0 + 1e-6
    assert reduction > 10
    quiet = slice(2 * RATE, 3 * RATE)  # a second after the burst the gain is back at 1
    np.testing.assert_allclose(limited[:, quiet], x[:, quiet], atol=1e-6)
    np.testing.assert_allclose(limited[0] / np.where(x[0] == 0, 1, x[0]), limited[1] / np.where(x[1] == 0, 1, x[1]),
                               atol=1e-6)  # one gain for both channels: the image does not move
    untouched, none = limit(0.1 * x, RATE, -1.0)
    assert none == 0.0 and untouched is not None and np.array_equal(untouched, 0.1 * x)


def test_the_gain_keeps_a_share_of_each_clips_distance_from_the_reference():
    soft, loud = sine(440, 0.01), sine(440, 0.3)
    full = LevelSettings(loudness=-14.0)
    kept = LevelSettings(loudness=-14.0, keep=0.5, reference=-22.0)
    for x in (soft, loud):
        gain, report = level_gain(x, RATE, full)
        assert report["measured_lufs"] + gain == pytest.approx(-14.0, abs=0.01)
    (g_soft, r_soft), (g_loud, r_loud) = level_gain(soft, RATE, kept), level_gain(loud, RATE, kept)
    before = r_loud["measured_lufs"] - r_soft["measured_lufs"]
    after = (r_loud["measured_lufs"] + g_loud) - (r_soft["measured_lufs"] + g_soft)
    assert after == pytest.approx(before / 2, abs=0.02)
    assert level_gain(sine(440, 1e-3), RATE, full)[0] == 40.0  # a boost stops before the noise floor


def test_finish_reports_what_the_listener_gets():
    x = sine(440, 0.99) * 1.5  # clipping before the stage
    audio, report = finish_levels(x, RATE, LevelSettings())
    assert report["true_peak_dbtp"] <= -1.0 and report["clipped_samples"] == 0
    _, raw = finish_levels(x, RATE, LevelSettings(true_peak=None))
    assert raw["clipped_samples"] > 0 and "limiter_max_reduction_db" not in raw


def test_the_output_stage_gains_then_marks_then_limits():
    soft, loud = sine(440, 0.02), sine(220, 0.6)
    batch = torch.from_numpy(np.stack([soft, loud])).float()  # [2, 1, S]
    settings = LevelSettings(loudness=-14.0, true_peak=-1.0)
    seen = []

    def spike(audio):  # a "watermark" that adds a peak far over the ceiling: only a limiter after it holds it
        seen.append(audio.clone())
        marked = audio.clone()
        marked[:, :, 1000] = 1.5
        return marked

    out, levels = apply_output_stage(batch, RATE, settings, mark=spike)
    assert out.dtype == torch.float32 and out.shape == batch.shape and len(levels) == 2
    for row, x in enumerate((soft, loud)):
        gain, report = level_gain(x.astype(np.float32), RATE, settings)
        assert levels[row]["gain_db"] == round(gain, 2) and levels[row]["measured_lufs"] == report["measured_lufs"]
        assert integrated_loudness(seen[0][row].numpy(), RATE) == pytest.approx(-14.0, abs=0.02)  # marked after the gain
        assert levels[row]["true_peak_dbtp"] <= -1.0 and levels[row]["limiter_max_reduction_db"] > 3.0
        expected, finished = finish_levels(spike(seen[0])[row].numpy(), RATE, settings)
        assert np.array_equal(out[row].numpy(), expected.astype(np.float32))
        assert levels[row] == {**report, "gain_db": round(gain, 2), **finished}
    unmarked, _ = apply_output_stage(batch, RATE, settings)
    assert not torch.equal(unmarked, out) and true_peak(unmarked[1].numpy()) <= 10 ** (-1 / 20) + 1e-6


def test_the_output_stage_leaves_a_continuation_s_level_and_keeps_the_legacy_peak_key():
    batch = torch.from_numpy(np.stack([sine(440, 0.05), sine(440, 0.2)])).float()
    primed, levels = apply_output_stage(batch, RATE, LevelSettings(true_peak=None), primed=True)
    assert torch.equal(primed, batch) and all(r["gain_db"] == 0.0 and "prime sets the level" in r["note"] for r in levels)
    legacy = LevelSettings(loudness=None, true_peak=None, peak_dbfs=-6.0)
    peaked, levels = apply_output_stage(batch, RATE, legacy)
    assert peaked.abs().amax(dim=(1, 2)).tolist() == pytest.approx([10 ** (-6 / 20)] * 2, rel=1e-5)
    assert [r["gain_db"] for r in levels] == [round(-6.0 - to_db(0.05), 2), round(-6.0 - to_db(0.2), 2)]
    assert levels[0]["peak_dbfs"] == -6.0 and "measured_lufs" not in levels[0]
    kept, levels = apply_output_stage(batch, RATE, legacy, primed=True)
    assert torch.equal(kept, batch) and [r["gain_db"] for r in levels] == [0.0, 0.0]


def test_spec_level_keys_defaults_ranges_and_the_legacy_peak_key():
    base = {"tokenizer": "tiny-codec", "stages": [{"role": "acoustic", "model": "transformer", "writes": "acoustic"}]}
    spec, problems = parse_spec({**base})
    out = spec.output
    assert not problems and (out.loudness, out.loudness_keep, out.loudness_reference, out.true_peak, out.peak_dbfs) == \
        (-14.0, 0.0, None, -1.0, None)
    legacy, problems = parse_spec({**base, "output": {"peak_dbfs": -1.0}})
    assert not problems and legacy.output.loudness is None and legacy.output.true_peak is None
    assert spec_to_dict(legacy)["output"] == {"seconds": 5.0, "peak_dbfs": -1.0}
    _, problems = parse_spec({**base, "output": {"peak_dbfs": -1.0, "loudness": -14}})
    assert [p for _, p in problems] == ["give loudness or peak_dbfs, not both: peak normalisation and a loudness "
                                        "target would fight over the level (set peak_dbfs: null)"]
    for key, bad in (("loudness", 3), ("loudness_keep", 1.5), ("loudness_keep", None), ("true_peak", "loud"),
                     ("loudness_reference", -90)):
        _, problems = parse_spec({**base, "output": {key: bad}})
        assert [path for path, _ in problems] == [("output", key)], (key, bad)
    kept, _ = parse_spec({**base, "output": {"loudness": None, "loudness_keep": 0.5, "loudness_reference": -20,
                                             "true_peak": -2}})
    again, _ = parse_spec(spec_to_dict(kept))
    assert again.output == kept.output


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_specs import TINY_SPEC

    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY_SPEC.replace("output: {seconds: 0.5}", "output: {seconds: 1.0}"))
    return Cascade.from_spec(path, registry=discover(environ={}))


def test_generation_meets_the_target_and_says_so(tiny):
    result = tiny.generate(["a", "b"], seconds=1.0, seed=0, watermark=False)
    for row, levels in enumerate(result.levels):
        assert levels["measured_lufs"] + levels["gain_db"] == pytest.approx(-14.0, abs=0.02)
        # the limiter takes back what peaks over the ceiling (a lot, on the random codec's spiky noise)
        assert -14.0 - levels["limiter_max_reduction_db"] - 0.05 <= levels["output_lufs"] <= -14.0 + 0.05, levels
        assert levels["true_peak_dbtp"] <= -1.0 and levels["clipped_samples"] == 0
        assert integrated_loudness(result.audio[row].numpy(), result.sample_rate) == \
            pytest.approx(levels["output_lufs"], abs=0.01)


def test_a_continuation_keeps_the_primes_level(tiny):
    prime = torch.from_numpy(sine(440, 0.05, seconds=0.5, rate=tiny.sample_rate)).float()
    result = tiny.generate("a", seconds=1.0, prime=prime, prime_rate=tiny.sample_rate, watermark=False)
    assert result.levels[0]["gain_db"] == 0.0 and "prime sets the level" in result.levels[0]["note"]


def test_the_command_line_override_and_the_sidecar(cli, tiny_spec, tmp_path):
    out = tmp_path / "a.wav"
    assert cli("generate", "x", "-p", tiny_spec, "--seconds", "1", "-o", out, "-q", "--loudness", "-20")[0] == 0
    levels = json.loads(out.with_suffix(".json").read_text())["levels"]
    assert levels["target_lufs"] == -20.0 and levels["measured_lufs"] + levels["gain_db"] == pytest.approx(-20, abs=0.02)
    assert cli("generate", "x", "-p", tiny_spec, "--seconds", "1", "-o", out, "-q", "--loudness", "none")[0] == 0
    raw = json.loads(out.with_suffix(".json").read_text())["levels"]
    assert set(raw) == {"measured_lufs", "gain_db", "output_lufs", "true_peak_dbtp", "clipped_samples"}
    # no gain; what is left is the watermark, 30.5 dB below the clip: at most 20*log10(1 + 10**(-30.5/20))
    # = 0.26 dB of level, a little more where K-weighting lifts the mark's 0.5-5 kHz band
    assert raw["gain_db"] == 0.0 and raw["output_lufs"] == pytest.approx(raw["measured_lufs"], abs=0.3)
    audio, _ = soundfile.read(out)
    assert np.abs(audio).max() <= 1.0
    code, _, err = cli("generate", "x", "-p", tiny_spec, "-o", out, "--loudness", "loud")
    assert code == 2 and "--loudness: must be a loudness in LUFS" in err and len(err.strip().splitlines()) == 1
