"""The instrument-family classifier behind the ``instrument`` metric: a small CNN over log-mel frames.

Why a trained model: the lead's family (16 in :data:`cadenza.plugins.workflows.corpus.compose.INSTRUMENTS`)
is a matter of timbre heard through accompaniment, bass and drums, which no hand-made feature
separates well. The model is small on purpose (a few hundred kB, milliseconds per clip on a
CPU) so the estimators stay cheap to run over many generated clips.

* Input: mono audio at :attr:`ClassifierConfig.sample_rate` (``[B, S]``); :func:`classify`
  takes any rate and channel count and resamples with :mod:`cadenza.core.audio.io`.
* Front end: log-mel spectrogram (Hann STFT, triangular mel filters from
  :func:`cadenza.core.audio.dsp.htk_mel_filters`), standardised per clip, so the level of
  the clip (its dynamics) cannot be a cue.
* Body: convolution blocks (3x3 convolutions, batch norm, ReLU, 2x2 average pooling), then
  the mean over frequency and the mean and max over time (any clip length), dropout, and a
  linear layer to one logit per family.
* Weights: one safetensors file whose metadata holds ``component``, the JSON ``config`` (this
  module's :class:`ClassifierConfig`, labels included) and a ``training`` note; no code is ever
  loaded. :data:`PACKAGED` is the file trained on a rendered corpus and shipped with Cadenza
  (``cadenza train --stage instrument``; docs/benchmarks/instrument_classifier.md).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from cadenza.core.audio.dsp import htk_mel_filters
from cadenza.core.errors import WeightsError
from cadenza.core.spec.validators import at_least
from cadenza.plugins import PACKAGED_WEIGHTS
from cadenza.core.files.atomic import atomic_path
from cadenza.core.spec.params import unstructure_config
from cadenza.core.spec.params import ParamsError, structure_config
from cadenza.core.engine.checkpoint import load_state_into
from cadenza.core.audio.io import resample

if TYPE_CHECKING:
    import torch

COMPONENT = "instrument-classifier"
PACKAGED = PACKAGED_WEIGHTS / "instrument_classifier.safetensors"
UNKNOWN = "unknown"


def default_labels() -> tuple[str, ...]:
    """The corpus's lead families, in :data:`~cadenza.plugins.workflows.corpus.compose.INSTRUMENTS` order."""
    from cadenza.plugins.workflows.corpus.compose import INSTRUMENTS

    return tuple(INSTRUMENTS)


def _positive(instance: Any, attribute: Any, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a positive number, got {value!r}")


def _probability(instance: Any, attribute: Any, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{attribute.name} must be in [0, 1), got {value!r}")


def _labels(instance: Any, attribute: Any, value: tuple[str, ...]) -> None:
    if len(value) < 2 or len(set(value)) != len(value) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{attribute.name} must be at least two distinct names, got {list(value)!r}")


def _channels(instance: Any, attribute: Any, value: tuple[int, ...]) -> None:
    if not value or any(not isinstance(c, int) or c < 1 for c in value):
        raise ValueError(f"{attribute.name} must be one or more positive integers, got {list(value)!r}")


@attrs.frozen
class ClassifierConfig:
    """Architecture and front end; saved in the weights file's metadata, so a file builds its own model."""

    labels: tuple[str, ...] = attrs.field(factory=default_labels, converter=tuple, validator=_labels)
    sample_rate: int = attrs.field(default=16000, validator=at_least(1000))
    n_fft: int = attrs.field(default=1024, validator=at_least(16))
    hop: int = attrs.field(default=256, validator=at_least(1))
    n_mels: int = attrs.field(default=64, validator=at_least(8))
    fmin: float = attrs.field(default=30.0, validator=_positive)
    fmax: float = attrs.field(default=8000.0, validator=_positive)
    channels: tuple[int, ...] = attrs.field(default=(16, 32, 64, 128), converter=tuple, validator=_channels)
    dropout: float = attrs.field(default=0.2, validator=_probability)
    seed: int = attrs.field(default=0, validator=at_least(0))


def build_model(config: ClassifierConfig) -> "torch.nn.Module":
    """A randomly initialised :class:`InstrumentClassifier` (seeded by ``config.seed``, the caller's RNG untouched)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return _model_class()(config)


_MODEL_CLASS = None


def _model_class() -> type:
    """Defined on first use, so importing this module does not import torch."""
    global _MODEL_CLASS
    if _MODEL_CLASS is not None:
        return _MODEL_CLASS
    import numpy as np
    import torch
    from torch import nn

    class InstrumentClassifier(nn.Module):
        """``forward(wave [B, S] at config.sample_rate) -> logits [B, len(labels)]``."""

        def __init__(self, config: ClassifierConfig):
            super().__init__()
            self.config = config
            fb, _ = htk_mel_filters(config.n_fft, config.n_mels, config.sample_rate, config.fmin, config.fmax)
            # Derived from the config, so not saved with the weights.
            self.register_buffer("mel", torch.from_numpy(fb.astype(np.float32)), persistent=False)
            self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
            blocks, width = [], 1
            for out in config.channels:
                blocks += [nn.Conv2d(width, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True),
                           nn.AvgPool2d(2, ceil_mode=True)]
                width = out
            self.body = nn.Sequential(*blocks)
            self.dropout = nn.Dropout(config.dropout)
            self.head = nn.Linear(2 * width, len(config.labels))

        def features(self, wave: torch.Tensor) -> torch.Tensor:
            """``[B, S]`` -> standardised log-mel ``[B, 1, n_mels, frames]``."""
            spec = torch.stft(wave.float(), self.config.n_fft, self.config.hop, window=self.window, center=True,
                              return_complex=True).abs().pow(2)
            logmel = torch.log(torch.einsum("mf,bft->bmt", self.mel, spec) + 1e-8)
            mean = logmel.mean(dim=(1, 2), keepdim=True)
            std = logmel.std(dim=(1, 2), keepdim=True)
            return ((logmel - mean) / (std + 1e-5))[:, None]

        def forward(self, wave: torch.Tensor) -> torch.Tensor:
            x = self.body(self.features(wave)).mean(dim=2)  # [B, C, frames']
            pooled = torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=-1)
            return self.head(self.dropout(pooled))

    _MODEL_CLASS = InstrumentClassifier
    return _MODEL_CLASS


# --------------------------------------------------------------------------- saving and loading

def save_classifier(model: "torch.nn.Module", path: str | Path, **training: Any) -> Path:
    """Write ``model``'s weights to one safetensors file (atomically), its config in the metadata.

    ``training`` (JSON data: steps, data, accuracy...) is kept in the metadata too, for the record.
    """
    from safetensors.torch import save_file

    metadata = {"component": COMPONENT, "config": json.dumps(unstructure_config(model.config), sort_keys=True),
                "training": json.dumps(training, sort_keys=True)}
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def resolve_weights(weights: str | Path) -> Path:
    """``"packaged"`` -> :data:`PACKAGED`; anything else is a path (``~`` expanded)."""
    return PACKAGED if str(weights) == "packaged" else Path(weights).expanduser()


def read_classifier(weights: str | Path) -> tuple[ClassifierConfig, dict[str, "torch.Tensor"], dict[str, Any]]:
    """``(config, state dict, training note)`` of a weights file; every problem is one WeightsError naming it."""
    from safetensors import SafetensorError, safe_open

    path = resolve_weights(weights)
    where = f"{path}" + (" (the packaged instrument classifier)" if path == PACKAGED else "")
    if not path.is_file():
        raise WeightsError(f"{where}: no such weights file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - a safetensors handle, not a dict
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{where}: not a readable safetensors file ({exc})") from None
    if metadata.get("component") != COMPONENT:
        raise WeightsError(f"{where}: not {COMPONENT} weights (metadata component {metadata.get('component')!r})")
    try:
        config = structure_config(ClassifierConfig, json.loads(metadata.get("config", "")))
        training = json.loads(metadata.get("training", "{}"))
    except (ValueError, ParamsError) as exc:
        raise WeightsError(f"{where}: its config metadata does not fit {COMPONENT}: {exc}") from None
    return config, state, training


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> "torch.nn.Module":
    config, state, _ = read_classifier(path)
    model = build_model(config)
    load_state_into(model, state, path)
    return model.eval()


def load_classifier(weights: str | Path = "packaged") -> "torch.nn.Module":
    """The classifier in eval mode on the CPU, loaded once per file (and again only if the file changes)."""
    path = resolve_weights(weights)
    try:
        mtime = path.stat().st_mtime
    except OSError:
        mtime = -1.0  # read_classifier says what is wrong
    return _load_cached(str(path), mtime)


# --------------------------------------------------------------------------- inference

def probabilities(model: "torch.nn.Module", audio: Any, rate: int) -> "torch.Tensor":
    """Family probabilities ``[len(labels)]`` of one clip ``[C, S]`` or ``[S]`` (torch or numpy) at ``rate``."""
    import torch

    wave = torch.as_tensor(audio, dtype=torch.float32)
    wave = wave.mean(dim=0) if wave.ndim == 2 else wave
    wave = resample(wave[None], int(rate), model.config.sample_rate)
    with torch.no_grad():
        return torch.softmax(model(wave).float(), dim=-1)[0]


def classify(model: "torch.nn.Module", audio: Any, rate: int) -> dict[str, Any]:
    """``{"instrument": family, "instrument_confidence": its probability}`` of one clip at ``rate``."""
    probs = probabilities(model, audio, rate)
    best = int(probs.argmax())
    return {"instrument": model.config.labels[best], "instrument_confidence": float(probs[best])}
