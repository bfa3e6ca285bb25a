"""The shared DSP (core/audio/dsp.py): the metrics' mel spectra are the textbook ones."""

from __future__ import annotations

import math

import pytest
import torch

from cadenza.core.audio.dsp import mel_spectrogram

RATE = 24000


@pytest.mark.parametrize("power, norm", [(2, None), (1, "slaney")])
def test_mel_spectrogram_matches_torchaudio(power, norm):
    torchaudio = pytest.importorskip("torchaudio")
    x = torch.randn(2, RATE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    reference = torchaudio.transforms.MelSpectrogram(RATE, n_fft=1024, hop_length=256, n_mels=64, power=power,
                                                     norm=norm, mel_scale="slaney", center=True,
                                                     pad_mode="reflect").double()(x)
    ours = mel_spectrogram(x, RATE, 1024, 256, 64, power=power, norm=norm)
    assert ours.shape == reference.shape == (2, 64, RATE // 256 + 1)
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-9)  # the filters are float32


def test_mel_spectrogram_of_a_sine_peaks_in_its_band_and_short_clips_get_a_frame():
    t = torch.arange(RATE, dtype=torch.float32) / RATE
    mel = mel_spectrogram(torch.sin(2 * math.pi * 1000 * t), RATE, 1024, 256, 64)
    assert mel.dtype == torch.float32 and mel.shape == (64, RATE // 256 + 1)
    peak = int(mel.mean(-1).argmax())
    assert 0 < peak < 63 and mel.mean(-1)[peak] > 100 * mel.mean(-1).median()
    assert mel_spectrogram(torch.ones(100), RATE, 1024, 256, 64).shape == (64, 1024 // 256 + 1)


def test_mel_spectrogram_refuses_other_powers():
    with pytest.raises(ValueError, match="power must be 1"):
        mel_spectrogram(torch.zeros(2048), RATE, 1024, 256, 64, power=3)
