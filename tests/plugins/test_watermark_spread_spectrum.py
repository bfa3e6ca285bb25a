"""The built-in ``spread-spectrum`` watermark: registration, marking at every common rate,
surviving the edits a generated file meets, and a false-positive rate the threshold keeps.

The component is built directly from its config (not through the registry), on seconds of
the two real recordings in tests/data plus synthetic tones and noise. Speed is measured by a
benchmark, not here.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cadenza.core.errors import InputError
from cadenza.core.types import Detection
from cadenza.plugins.watermarks import SpreadSpectrumConfig, register_watermarks
from cadenza.plugins.watermarks.spread_spectrum import PUBLIC_KEY, build

DATA = Path(__file__).resolve().parents[1] / "data"
KEY = "test-private-key"
PAYLOAD = 0xC0FFEE42


def watermark(**params):
    return build(SpreadSpectrumConfig(**{"key": KEY, **params}))


@pytest.fixture(scope="module")
def music():
    """``{"24k": ([1, S], 24000), "48k": ([2, S], 48000)}``: the real recordings."""
    from cadenza.core.audio.io import load_audio

    out = {}
    for name in ("24k", "48k"):
        path = DATA / f"test_{name}.wav"
        if not path.exists():
            pytest.fail(f"{path} is missing: run `python tests/fetch_test_audio.py` (setup.sh does)")
        out[name] = load_audio(path)
    return out


def clip(music, name, start, seconds, rate=None):
    from cadenza.core.audio.io import resample

    audio, sr = music[name]
    audio = audio[:, int(start * sr): int((start + seconds) * sr)]
    return (audio, sr) if rate is None else (resample(audio, sr, rate), rate)


def snr_db(clean, marked):
    return 10 * math.log10(float((clean.double() ** 2).sum() / ((marked - clean).double() ** 2).sum()))


# ---------------------------------------------------------------- registration and config


def test_registration_imports_neither_numpy_nor_torch():
    code = ("import sys, cadenza.plugins.watermarks; "
            "print(sorted(m for m in ('numpy', 'torch', 'soxr', 'cadenza.plugins.watermarks.spread_spectrum')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_registers_spread_spectrum_with_its_config():
    calls = []
    register_watermarks(lambda name, factory, **kwargs: calls.append((name, factory, kwargs)))
    assert [(name, factory) for name, factory, _ in calls] == [
        ("spread-spectrum", "cadenza.plugins.watermarks.spread_spectrum:build")]
    assert calls[0][2]["config"] is SpreadSpectrumConfig
    assert calls[0][2]["description"]


@pytest.mark.parametrize("field, value", [
    ("key", ""), ("key", 3), ("strength", 0.0), ("strength", 1.0), ("strength", math.nan),
    ("depth_exponent", -1.0), ("depth_exponent", math.inf), ("min_snr_db", -1.0), ("threshold", 0.0), ("threshold", 1.5),
])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field} "):
        SpreadSpectrumConfig(**{field: value})


def test_key_comes_from_config_then_environment_then_public_default(monkeypatch):
    def key_id(key):
        return hashlib.sha256(key.encode()).hexdigest()[:8]

    monkeypatch.setenv("CADENZA_WATERMARK_KEY", "from-the-environment")
    assert watermark().key_id == key_id(KEY)
    assert build(SpreadSpectrumConfig()).key_id == key_id("from-the-environment")
    monkeypatch.delenv("CADENZA_WATERMARK_KEY")
    public = build(SpreadSpectrumConfig())
    assert public.key_id == key_id(PUBLIC_KEY) and public.public
    assert len(public.key_id) == 8 and not watermark().public


# ---------------------------------------------------------------- marking


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", [16000, 24000, 32000, 44100, 48000])
def test_marked_music_is_detected_with_its_payload_at_30_db(music, rate, channels):
    audio, sr = clip(music, "48k", 2.0, 5.0, rate)
    audio = audio[:channels]
    wm = watermark()
    marked = wm.embed(audio, sr, PAYLOAD)
    assert marked.shape == audio.shape and marked.dtype == audio.dtype
    assert snr_db(audio, marked) >= 30.0
    found = wm.detect(marked, sr)
    assert found.marked and found.p_value <= 1e-6 and found.threshold == 1e-6
    assert found.payload == PAYLOAD


def test_the_mark_stays_in_its_band_and_is_deterministic(music):
    audio, sr = clip(music, "48k", 0.0, 4.0)
    wm = watermark()
    marked = wm.embed(audio, sr, PAYLOAD)
    assert torch.equal(marked, wm.embed(audio, sr, PAYLOAD))
    power = torch.fft.rfft((marked - audio).double(), dim=-1).abs().pow(2).sum(dim=0)
    hz = torch.fft.rfftfreq(audio.shape[-1], 1 / sr)
    assert power[(hz < 300) | (hz > 6000)].sum() < 0.01 * power.sum()


def test_synthetic_chord_and_noise_are_marked_too():
    rate, t = 22050, torch.arange(6 * 22050) / 22050
    chord = sum(0.2 * torch.sin(2 * math.pi * f * t) for f in (220.0, 554.4, 659.3, 1318.5, 2637.0))
    noise = 0.02 * torch.randn(t.shape, generator=torch.Generator().manual_seed(0))
    audio = (chord + noise)[None].float()
    wm = watermark()
    marked = wm.embed(audio, rate, 7)
    found = wm.detect(marked, rate)
    assert snr_db(audio, marked) >= 30.0
    assert found.marked and found.payload == 7


# ---------------------------------------------------------------- robustness


def _crop_half(audio, sr, rng):
    half = audio.shape[-1] // 2
    start = int(rng.integers(0, audio.shape[-1] - half))
    return audio[:, start:start + half]


def _noise_20db(audio, sr, rng):
    noise = torch.from_numpy(rng.standard_normal(audio.shape).astype(np.float32))
    return audio + noise * torch.sqrt(audio.pow(2).mean() / noise.pow(2).mean() / 100)


def _low_pass_5k(audio, sr, rng):
    from scipy.signal import butter, sosfilt

    return torch.from_numpy(sosfilt(butter(8, 5000, fs=sr, output="sos"), audio.numpy()).astype(np.float32))


def _via_16k(audio, sr, rng):
    from cadenza.core.audio.io import resample

    return resample(resample(audio, sr, 16000), 16000, sr)


ATTACKS = {
    "crop 50% at a random offset": _crop_half,
    "100 ms of silence prepended": lambda a, sr, rng: torch.cat([torch.zeros(a.shape[0], sr // 10), a], dim=1),
    "first 100 ms dropped": lambda a, sr, rng: a[:, sr // 10:],
    "resampled to 16 kHz and back": _via_16k,
    "white noise at 20 dB SNR": _noise_20db,
    "gain +6 dB": lambda a, sr, rng: a * 2.0,
    "gain -6 dB": lambda a, sr, rng: a * 0.5,
    "low-pass at 5 kHz": _low_pass_5k,
}


@pytest.fixture(scope="module")
def marked_clips(music):
    """An 8 s mono 24 kHz clip and an 8 s stereo 48 kHz clip, each with its mark."""
    wm = watermark()
    out = []
    for name, start in (("24k", 6.0), ("48k", 4.0)):
        audio, sr = clip(music, name, start, 8.0)
        out.append((wm.embed(audio, sr, PAYLOAD), sr))
    return out


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_the_mark_survives(marked_clips, attack):
    rng = np.random.default_rng(sorted(ATTACKS).index(attack))
    wm = watermark()
    for marked, sr in marked_clips:
        found = wm.detect(ATTACKS[attack](marked, sr, rng), sr)
        assert found.marked and found.p_value <= 1e-6, (attack, sr, found)
        if attack != "white noise at 20 dB SNR":  # presence is what must survive noise; the bits usually do
            assert found.payload == PAYLOAD, (attack, sr, found)


# ---------------------------------------------------------------- false positives


def _clean_windows(music):
    """Over 150 unmarked windows (162): the recordings cut every 0.5 s at 1.5 s and 3 s, and noise."""
    windows = []
    for name in ("24k", "48k"):
        audio, sr = music[name]
        for seconds in (1.5, 3.0):
            length = int(seconds * sr)
            windows += [(audio[:, s:s + length], sr) for s in range(0, audio.shape[-1] - length, sr // 2)]
    generator = torch.Generator().manual_seed(3)
    windows += [(0.1 * torch.randn(2, 3 * 16000, generator=generator), 16000) for _ in range(40)]
    return windows


@pytest.mark.parametrize("key", [KEY, None])
def test_clean_audio_keeps_to_the_false_positive_rate(music, key, monkeypatch):
    monkeypatch.delenv("CADENZA_WATERMARK_KEY", raising=False)
    wm = build(SpreadSpectrumConfig(key=key))
    p_values = np.array([wm.detect(audio, sr).p_value for audio, sr in _clean_windows(music)])
    assert len(p_values) >= 150
    # Under the null P(p <= 1e-3) <= 1e-3: more than 3 of ~160 would happen by chance < 1e-4.
    assert (p_values <= 1e-3).sum() <= 3
    assert p_values.min() > 1e-6


def test_a_wrong_key_does_not_detect(marked_clips):
    for other in (build(SpreadSpectrumConfig(key="another-key")), build(SpreadSpectrumConfig(key=PUBLIC_KEY))):
        for marked, sr in marked_clips:
            found = other.detect(marked, sr)
            assert not found.marked and found.p_value > 1e-3 and found.payload is None


# ---------------------------------------------------------------- odd input


def test_too_short_a_clip_is_an_empty_detection():
    wm = watermark()
    short = wm.embed(0.1 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(0)), 16000, 1)
    assert wm.detect(short, 16000) == Detection(score=0.0, p_value=1.0, payload=None, marked=False)
    assert wm.detect(torch.zeros(2, 0), 44100).p_value == 1.0
    assert wm.detect(torch.zeros(0, 44100), 44100).p_value == 1.0
    assert wm.embed(torch.zeros(0, 44100), 44100, 1).shape == (0, 44100)


@pytest.mark.parametrize("audio, rate", [
    (torch.zeros(2, 3 * 44100), 44100),
    (torch.full((1, 3 * 16000), 0.5), 16000),
    (1e6 * torch.randn(1, 2 * 8000, generator=torch.Generator().manual_seed(1)), 8000),
    (torch.sign(torch.sin(torch.arange(3 * 24000) * 0.3)).expand(3, -1).contiguous(), 24000),
    (torch.tensor([math.nan, math.inf, -math.inf, 1.0]).repeat(1, 12000), 16000),
])
def test_odd_audio_gives_a_detection_and_an_unchanged_shape(audio, rate):
    wm = watermark()
    found = wm.detect(audio, rate)
    assert isinstance(found, Detection) and not found.marked and 0.0 <= found.p_value <= 1.0
    assert wm.embed(audio, rate, 5).shape == audio.shape


def test_silence_stays_silent_and_eight_channels_are_marked():
    wm = watermark()
    assert torch.equal(wm.embed(torch.zeros(2, 48000), 48000, 1), torch.zeros(2, 48000))
    noise = 0.1 * torch.randn(8, 4 * 32000, generator=torch.Generator().manual_seed(2))
    marked = wm.embed(noise, 32000, PAYLOAD)
    assert marked.shape == (8, 4 * 32000) and snr_db(noise, marked) >= 30.0
    found = wm.detect(marked, 32000)
    assert found.marked and found.payload == PAYLOAD


@pytest.mark.parametrize("payload", [-1, 1 << 32, 1.5, True])
def test_a_payload_that_does_not_fit_is_an_input_error(payload):
    with pytest.raises(InputError, match="payload"):
        watermark().embed(torch.zeros(1, 16000), 16000, payload)


def test_integer_audio_is_an_input_error():
    with pytest.raises(InputError, match="float"):
        watermark().embed(torch.zeros(1, 16000, dtype=torch.int16), 16000, 1)
