"""The ``perth`` watermark, built: Perth-Net's encoder and decoder from the resemble-perth wheel.

What runs is the library's own ``PerthNet`` (encoder, decoder, STFT front end), the way its
``PerthImplicitWatermarker`` runs it, with three differences:

* The weights are read here with ``torch.load(..., weights_only=True)`` (the library's
  ``CheckpointManager`` calls ``torch.load`` without it, and creates folders inside the
  installed package), and its ``hparams.yaml`` with the safe YAML loader.
* ``embed`` adds only the watermark: the difference between the spectrogram Perth-Net marked
  and the same spectrogram unmarked (one inverse STFT of their complex difference, at 32 kHz)
  is resampled to the clip's rate and added to the clip. The library instead returns its
  32 kHz round trip, which drops everything above 16 kHz of a 44.1/48 kHz clip. The difference
  lies below 2 kHz (Perth-Net only changes those bins), so resampling it loses nothing.
* ``detect`` reads the channels' mean; its score is the decoder's raw output (the library
  clips it to [0, 1]), turned into a p-value against the stored null sample
  (:func:`cadenza.plugins.perth.null_sample.null_scores`, data in ``null_scores.json``).

Resampling uses Cadenza's soxr resampler (:func:`cadenza.core.audio.io.resample`), not librosa.
"""

from __future__ import annotations

import bisect
import importlib
import math
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from cadenza.core.audio.io import resample
from cadenza.core.errors import InputError, WeightsError
from cadenza.core.types import Detection
from cadenza.plugins.perth import MISSING, PACKAGED, PERTH
from cadenza.plugins.perth.null_sample import BUCKETS, null_scores

CHECKPOINT = "perth_net_250000.pth.tar"  # the one checkpoint in the wheel's pretrained/implicit/
MIN_SECONDS = 0.1  # shorter audio is padded with silence to this much before the STFT


def _perth_modules() -> tuple[Any, Any, Any, Path]:
    """``(PerthNet, PerthConfig, magphase_to_cx, folder of the packaged weights)`` from resemble-perth."""
    try:
        with warnings.catch_warnings():  # its perth_net/__init__ imports pkg_resources (deprecated)
            warnings.simplefilter("ignore")
            net_module = importlib.import_module("perth.perth_net.perth_net_implicit.model.perth_net")
            config_module = importlib.import_module("perth.perth_net.perth_net_implicit.config")
            utils_module = importlib.import_module("perth.perth_net.perth_net_implicit.utils")
    except ImportError as exc:
        name = getattr(exc, "name", None) or ""
        if name == "perth" or name.startswith("perth."):
            raise WeightsError(MISSING) from None
        raise WeightsError(f"{MISSING} (importing it failed: {exc})") from None  # one of its own imports
    folder = Path(net_module.__file__).resolve().parents[2] / "pretrained" / "implicit"
    return net_module.PerthNet, config_module.PerthConfig, utils_module.magphase_to_cx, folder


def load_net(weights: Any = None) -> torch.nn.Module:
    """Perth-Net from a parsed ``weights:`` value: None or "packaged" (the wheel's checkpoint), a
    local file (a checkpoint as the library saves it, ``{"model": state_dict, "step": ...}``, or a
    bare state dict), or "random" (seeded; plumbing only)."""
    import yaml

    perth_net, perth_config, _, folder = _perth_modules()
    hparams = folder / "hparams.yaml"
    try:
        hp = perth_config(**yaml.safe_load(hparams.read_text()))
    except (OSError, TypeError, yaml.YAMLError) as exc:
        raise WeightsError(f"{hparams}: not Perth-Net's hyper-parameters ({exc})") from None
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten; keep the caller's RNG
        torch.manual_seed(0)
        net = perth_net(hp)
    if weights is None or weights.source == PACKAGED:
        file = folder / CHECKPOINT
    elif weights.is_random:
        return net.eval()
    elif weights.kind == "path":
        file = weights.local_path()
    else:
        raise WeightsError(f"perth weights must be {PACKAGED!r}, 'random' or a local checkpoint file, "
                           f"got {weights.source!r}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
        net.load_state_dict(state["model"] if isinstance(state, dict) and "model" in state else state)
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{file}: not Perth-Net weights ({first})") from None
    return net.eval()


def _audio(audio: Any, sample_rate: Any, what: str) -> tuple[torch.Tensor, int]:
    if not isinstance(audio, torch.Tensor) or audio.dim() != 2 or not audio.is_floating_point():
        shape = tuple(audio.shape) if isinstance(audio, torch.Tensor) else type(audio).__name__
        raise InputError(f"perth {what}: audio must be a float tensor [channels, samples], got {shape}")
    rate = -1 if isinstance(sample_rate, bool) or not hasattr(sample_rate, "__index__") else int(sample_rate)
    if not 1000 <= rate <= 384000:
        raise InputError(f"perth {what}: sample_rate must be an integer in 1000-384000 Hz, got {sample_rate!r}")
    if audio.shape[-1] == 0:
        raise InputError(f"perth {what}: audio holds no samples")
    if not torch.isfinite(audio).all():
        raise InputError(f"perth {what}: audio contains NaN or infinite samples")
    return audio, rate


def p_value(score: float, null: tuple[float, ...]) -> float:
    """``(1 + #{null >= score}) / (n + 1)``: the share of the null sample at or above ``score``,
    counted so that a clip drawn from the null distribution gets p <= t with probability at most t."""
    above = len(null) - bisect.bisect_left(null, score)
    return (1 + above) / (len(null) + 1)


def null_for(seconds: float, null: dict[float, tuple[float, ...]]) -> tuple[float, ...]:
    """The bucket of ``null`` for a clip of ``seconds``."""
    for upper in sorted(null):
        if seconds <= upper:
            return null[upper]
    return null[max(null)]


class PerthWatermark:
    """``embed(audio [C, S], rate, payload)`` / ``detect(audio [C, S], rate)``; no payload."""

    payload_bits = 0

    def __init__(self, net: torch.nn.Module, threshold: float = 0.01,
                 null: dict[float, tuple[float, ...]] | None = None):
        self.net = net
        self.rate = int(net.hp.sample_rate)
        self.threshold = float(threshold)
        null = null_scores() if null is None else null
        self.null = {float(upper): tuple(sorted(scores)) for upper, scores in null.items()}
        self._magphase_to_cx = _perth_modules()[2]

    def _padded(self, audio: torch.Tensor) -> torch.Tensor:
        """``[C, S]`` at the net's rate, padded with silence to at least MIN_SECONDS."""
        minimum = int(MIN_SECONDS * self.rate)
        return torch.nn.functional.pad(audio, (0, max(0, minimum - audio.shape[-1])))

    def _to_complex(self, mag: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        return self._magphase_to_cx(self.net.hp, mag, phase)

    @torch.no_grad()
    def embed(self, audio: torch.Tensor, sample_rate: int, payload: int = 0) -> torch.Tensor:
        """The clip with Perth-Net's mark added, same shape and dtype; ``payload`` is ignored."""
        audio, sample_rate = _audio(audio, sample_rate, "embed")
        device = next(self.net.parameters()).device
        x = self._padded(resample(audio.float(), sample_rate, self.rate).to(device))
        length = x.shape[-1]
        mag, phase = self.net.ap.signal_to_magphase(x)  # [C, F, T] (normalised dB), [C, F, T]
        marked, _mask = self.net.encoder(mag)
        # The encoder changes only the lowest `subband` bins: the mark is the inverse STFT of the
        # complex difference there (one inverse STFT, exactly marked minus unmarked: it is linear).
        band = self.net.subband
        difference = torch.zeros_like(phase, dtype=torch.complex64)
        difference[:, :band] = (self._to_complex(marked[:, :band], phase[:, :band])
                                - self._to_complex(mag[:, :band], phase[:, :band]))
        delta = self.net.ap.inv_spectrogram(difference)
        delta = torch.nn.functional.pad(delta, (0, max(0, length - delta.shape[-1])))[..., :length]
        delta = resample(delta.to(audio.device), self.rate, sample_rate)
        delta = torch.nn.functional.pad(delta, (0, max(0, audio.shape[-1] - delta.shape[-1])))
        return (audio + delta[..., : audio.shape[-1]].to(audio.dtype)).contiguous()

    @torch.no_grad()
    def _read(self, audio: torch.Tensor, sample_rate: int) -> float | None:
        """The decoder's raw output on the channels' mean; None when no frame is loud enough to read."""
        audio, sample_rate = _audio(audio, sample_rate, "detect")
        device = next(self.net.parameters()).device
        x = self._padded(resample(audio.float().mean(0, keepdim=True), sample_rate, self.rate).to(device))
        mag, _phase = self.net.ap.signal_to_magphase(x)
        value = float(self.net.decoder(mag)[0])
        return value if math.isfinite(value) else None  # NaN: its frame mask is empty (silence)

    def score(self, audio: torch.Tensor, sample_rate: int) -> float:
        """The decoder's raw output (about 0 unmarked, 1 marked; the library clips it to [0, 1]); 0 for silence."""
        value = self._read(audio, sample_rate)
        return 0.0 if value is None else value

    def detect(self, audio: torch.Tensor, sample_rate: int) -> Detection:
        value = self._read(audio, sample_rate)
        if value is None:  # nothing to read: no evidence either way
            return Detection(score=0.0, p_value=1.0, payload=None, marked=False, threshold=self.threshold)
        p = p_value(value, null_for(audio.shape[-1] / int(sample_rate), self.null))
        return Detection(score=value, p_value=p, payload=None, marked=p <= self.threshold, threshold=self.threshold)


def build(config: Any, context: Any = None) -> PerthWatermark:
    net = load_net(getattr(context, "weights", None)).to(getattr(context, "device", "cpu") or "cpu")
    return PerthWatermark(net, threshold=config.threshold)


__all__ = ["BUCKETS", "PERTH", "PerthWatermark", "build", "load_net", "null_for", "p_value"]
