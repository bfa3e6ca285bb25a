"""Registration and config of the ``clap`` conditioner: LAION-CLAP (``pip install cadenza[clap]``).

CLAP embeds text and audio into one 512-d space, like MuLan; the model is in :mod:`.clap_model`.
This module stays light (no torch, laion_clap or transformers import): discovery and
``cadenza validate`` only need the config and ``describe``.

``weights:`` is one of
  ``lukewys/laion_clap`` (default) - the hub repo the library downloads from; the file in it is
      ``checkpoint`` (default ``630k-audioset-best.pt``), resolved from the local Hugging Face
      cache (downloaded only when the machine is online);
  a local ``.pt``/``.ckpt``/``.pth`` file - a checkpoint as LAION publishes it;
  a Cadenza checkpoint folder written by ``save_pretrained`` (its ``config.json`` rules);
  ``random`` - a seeded random CLAP from the architecture fields (tests, plumbing).

The published checkpoints use the ``roberta`` text model, whose tokenizer (``roberta-base``)
comes from the Hugging Face cache; ``transformer`` uses the CLIP BPE vocabulary shipped in
the laion-clap wheel, so it works with no download at all.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import attrs

from cadenza.core.errors import WeightsError
from cadenza.core.hookspecs import hookimpl
from cadenza.core.spec.params import config_for_weights
from cadenza.core.types import ConditioningInfo
from cadenza.core.spec.validators import at_least

CLAP = "clap"
HUB_REPO = "lukewys/laion_clap"
# Audio model configs shipped in laion_clap/clap_module/model_configs (the audio ones).
AUDIO_MODELS = ("HTSAT-tiny", "HTSAT-tiny-win-1536", "HTSAT-base", "HTSAT-large", "PANN-6", "PANN-10",
                "PANN-14", "PANN-14-fmax-18k", "PANN-14-fmax-8k-20s", "PANN-14-tiny-transformer",
                "PANN-14-win-1536")
FUSION_TYPES = ("aff_2d", "iaff_2d", "daf_2d", "channel_map", "aff_1d", "iaff_1d", "daf_1d")
# The published checkpoints in HUB_REPO and the architecture each was trained with (audio model,
# fusion); all use the roberta text model and a 512-d joint space.
CHECKPOINTS = {
    "630k-best.pt": ("HTSAT-tiny", False),
    "630k-audioset-best.pt": ("HTSAT-tiny", False),
    "630k-fusion-best.pt": ("HTSAT-tiny", True),
    "630k-audioset-fusion-best.pt": ("HTSAT-tiny", True),
    "music_audioset_epoch_15_esc_90.14.pt": ("HTSAT-base", False),
    "music_speech_epoch_15_esc_89.25.pt": ("HTSAT-base", False),
    "music_speech_audioset_epoch_15_esc_89.98.pt": ("HTSAT-base", False),
}
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
# create_htsat_model's sizes per model name: (patch width, depths, heads, window, spec image size),
# and the audio input all HTSAT model configs share (rate, mel hop, mel bins, clip length).
HTSAT_SIZES = {"tiny": (96, (2, 2, 6, 2), (4, 8, 16, 32), 8, 256),
               "base": (128, (2, 2, 12, 2), (4, 8, 16, 32), 8, 256),
               "large": (256, (2, 2, 12, 2), (4, 8, 16, 32), 8, 256)}
HTSAT_AUDIO = {"sample_rate": 48000, "hop_size": 480, "mel_bins": 64, "clip_samples": 480000}
SIZE_OVERRIDES = ("clip_seconds", "mel_bins", "htsat_dim", "htsat_depths", "htsat_heads", "htsat_window",
                  "htsat_spec_size", "text_width", "text_layers", "text_heads", "text_context")


def _non_negative(instance, attribute, value) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be >= 0 (0: the model's own value), got {value!r}")


def _audio_model(instance, attribute, value) -> None:
    if value not in AUDIO_MODELS:
        raise ValueError(f"audio_model must be one of {', '.join(AUDIO_MODELS)}, got {value!r}")


def _htsat_only(instance, attribute, value) -> None:
    if isinstance(value, int) and value < 0:
        raise ValueError(f"{attribute.name} must be >= 0 (0: the model's own value), got {value!r}")
    if value and not instance.audio_model.startswith("HTSAT"):
        raise ValueError(f"{attribute.name} shrinks an HTSAT audio model; {instance.audio_model!r} is not one")
    if isinstance(value, tuple) and any(v < 1 for v in value):
        raise ValueError(f"{attribute.name} must be a list of integers >= 1, got {list(value)!r}")


def _heads(instance, attribute, value) -> None:
    _htsat_only(instance, attribute, value)
    if bool(value) != bool(instance.htsat_depths) or len(value) != len(instance.htsat_depths):
        raise ValueError(f"htsat_heads and htsat_depths go together, one entry per Swin stage "
                         f"(got {list(value)!r} and {list(instance.htsat_depths)!r})")


def htsat_sizes(config: ClapConfig) -> tuple[int, tuple[int, ...], tuple[int, ...], int, int]:
    """(patch width, depths, heads, window, spec image size) of an HTSAT config, overrides applied."""
    width, depths, heads, window, spec = HTSAT_SIZES[config.audio_model.split("-")[1]]
    return (config.htsat_dim or width, config.htsat_depths or depths, config.htsat_heads or heads,
            config.htsat_window or window, config.htsat_spec_size or spec)


def _htsat_geometry(instance, attribute, value) -> None:
    """HTSAT folds the mel image (frames x mel_bins) into a square of ``spec`` pixels and runs a
    Swin transformer on 4x4 patches of it; these are the shapes its reshapes need, checked here
    so a bad size fails validation instead of a forward pass."""
    _htsat_only(instance, attribute, value)
    if not instance.audio_model.startswith("HTSAT"):
        return
    width, depths, heads, window, spec = htsat_sizes(instance)
    mel = instance.mel_bins or HTSAT_AUDIO["mel_bins"]
    if spec % mel or spec < mel:
        raise ValueError(f"mel_bins ({mel}) must divide htsat_spec_size ({spec})")
    ratio, grid, stages = spec // mel, spec // 4, len(depths)
    clip = round(instance.clip_seconds * HTSAT_AUDIO["sample_rate"]) if instance.clip_seconds else HTSAT_AUDIO["clip_samples"]
    frames = clip // HTSAT_AUDIO["hop_size"] + 1
    if frames > spec * ratio:
        raise ValueError(f"clip_seconds gives {frames} mel frames, more than the {spec * ratio} that "
                         f"htsat_spec_size {spec} holds with mel_bins {mel}")
    if spec % 4 or grid % 2 ** (stages - 1) or (grid >> (stages - 1)) % ratio:
        raise ValueError(f"htsat_spec_size ({spec}) / 4 must halve {stages - 1} times and stay a multiple "
                         f"of htsat_spec_size / mel_bins ({ratio})")
    if any(grid >> i > window and (grid >> i) % window for i in range(stages)):
        raise ValueError(f"htsat_window ({window}) must divide the Swin grid of every stage "
                         f"({', '.join(str(grid >> i) for i in range(stages))})")
    if any((width << i) % h for i, h in enumerate(heads)):
        raise ValueError(f"htsat_heads ({list(heads)}) must divide each stage's width "
                         f"({', '.join(str(width << i) for i in range(stages))})")


def _transformer_only(instance, attribute, value) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0 (0: the model's own value), got {value!r}")
    if value and instance.text_model != "transformer":
        raise ValueError(f"{attribute.name} sizes the 'transformer' text model, not {instance.text_model!r}")


@attrs.frozen
class ClapConfig:
    """A LAION-CLAP model: ``audio_model`` (a laion-clap model config name) and ``text_model``.

    Zero / empty size fields keep the named model's values; set them (with ``weights: random``)
    to build a small real CLAP, e.g. for tests: ``clip_seconds`` and ``mel_bins`` change the
    audio input, ``htsat_*`` the Swin sizes of an HTSAT tower (patch width, blocks and heads
    per stage, window, spectrogram image size), ``text_*`` the ``transformer`` text tower.
    ``fusion_type`` applies with ``enable_fusion`` (LAION's fusion checkpoints use ``aff_2d``).
    """

    audio_model: str = attrs.field(default="HTSAT-tiny", validator=_audio_model)
    text_model: Literal["transformer", "roberta"] = attrs.field(
        default="roberta", validator=attrs.validators.in_(("transformer", "roberta")))
    enable_fusion: bool = False
    fusion_type: str = attrs.field(default="aff_2d", validator=attrs.validators.in_(FUSION_TYPES))
    checkpoint: str = "630k-audioset-best.pt"
    joint_dim: int = attrs.field(default=512, validator=at_least(1))
    output: Literal["pooled"] = attrs.field(default="pooled", validator=attrs.validators.in_(("pooled",)))
    clip_seconds: float = attrs.field(default=0.0, validator=_non_negative)
    mel_bins: int = attrs.field(default=0, validator=_non_negative)
    htsat_dim: int = attrs.field(default=0, validator=_htsat_only)
    htsat_depths: tuple[int, ...] = attrs.field(default=(), converter=tuple, validator=_htsat_only)
    htsat_heads: tuple[int, ...] = attrs.field(default=(), converter=tuple, validator=_heads)
    htsat_window: int = attrs.field(default=0, validator=_htsat_only)
    htsat_spec_size: int = attrs.field(default=0, validator=_htsat_geometry)
    text_width: int = attrs.field(default=0, validator=_transformer_only)
    text_layers: int = attrs.field(default=0, validator=_transformer_only)
    text_heads: int = attrs.field(default=0, validator=_transformer_only)
    text_context: int = attrs.field(default=0, validator=_transformer_only)
    seed: int = attrs.field(default=0, validator=at_least(0))

    def info(self) -> ConditioningInfo:
        return ConditioningInfo(kind="pooled", dim=self.joint_dim, has_audio=True)

    def describe(self, weights) -> ConditioningInfo:
        if is_laion_checkpoint(weights):
            check_checkpoint(self, weights)
            return self.info()
        return config_for_weights(self, weights).info()


def is_laion_checkpoint(weights) -> bool:
    """True for weights in LAION's own format: the hub repo, or a local torch file."""
    if weights.kind == "hub":
        return True
    return weights.kind == "path" and Path(weights.path).suffix in TORCH_SUFFIXES


def check_checkpoint(config: ClapConfig, weights) -> None:
    """A one-line WeightsError when a published checkpoint needs another architecture.

    Checked from the file name before anything is loaded, so ``cadenza validate`` catches a
    fusion checkpoint in a non-fusion spec (loading would fail on missing keys much later).
    """
    name = config.checkpoint if weights.kind == "hub" else Path(weights.path).name
    if weights.kind == "hub" and not name.strip():
        raise WeightsError(f"clap: hub weights {weights.source!r} need a `checkpoint` file name")
    known = CHECKPOINTS.get(name) if weights.kind == "path" or weights.source == HUB_REPO else None
    if known is None:
        return
    audio_model, fusion = known
    wanted = f"audio_model: {audio_model}, enable_fusion: {str(fusion).lower()}, text_model: roberta, joint_dim: 512"
    if (config.audio_model, config.enable_fusion, config.text_model, config.joint_dim) != (audio_model, fusion, "roberta", 512):
        raise WeightsError(f"clap checkpoint {name!r} was trained as {{{wanted}}}; set those params")
    shrunk = [name for name in SIZE_OVERRIDES if getattr(config, name)]
    if shrunk:
        raise WeightsError(f"clap checkpoint {name!r} has the published sizes; remove {', '.join(shrunk)} "
                           "(size overrides are for random weights)")


@hookimpl
def register_conditioners(register):
    register(CLAP, "cadenza.plugins.clap.model:build", config=ClapConfig, default_weights=HUB_REPO,
             description="LAION-CLAP joint audio-text embedding (pooled 512-d, laion-clap)")
