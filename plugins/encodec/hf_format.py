"""Transformers-format EnCodec (``transformers.EncodecModel``): what a checkpoint holds, from JSON alone.

The ``encodec`` tokenizer also reads the checkpoints ``transformers`` publishes and saves:
``facebook/encodec_24khz`` / ``_32khz`` / ``_48khz``, a folder written by
``EncodecModel.save_pretrained``, and the codec inside a MusicGen checkpoint
(``facebook/musicgen-small`` ...). This module says what such weights are - sample rate, frame
rate, codebooks at a bandwidth - by reading ``config.json`` only, because ``cadenza validate``
sizes every stage from it before anything is built; it imports no torch and no transformers
(the plugin's registration module imports it, at discovery). The model itself is
:mod:`.hf_model`.

Where the EnCodec config is, in the three layouts read here:

``encodec``   - ``config.json`` of ``model_type: encodec`` (an ``EncodecModel`` folder or hub repo);
``subfolder`` - ``audio_encoder/config.json`` (a MusicGen-style folder holding only its codec, as
                ``model.audio_encoder.save_pretrained(folder / "audio_encoder")`` writes it);
``composite`` - the ``audio_encoder`` sub-config of a MusicGen ``config.json``, whose codec
                tensors are the checkpoint's ``audio_encoder.*`` tensors (how the hub's
                ``facebook/musicgen-*`` repos are laid out: one config, one set of safetensors).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cadenza.core.engine.checkpoint import read_json_object
from cadenza.core.engine.weights import Weights
from cadenza.core.errors import WeightsError
from cadenza.core.types import TokenizerInfo
from cadenza.plugins.hf.composite import composite_part_config
from cadenza.plugins.hf.hub import hf_config

ENCODEC_TYPE = "encodec"
PART = "audio_encoder"  # MusicgenForConditionalGeneration.audio_encoder: sub-config key, subfolder, tensor prefix
DEFAULT_BANDWIDTH = 6.0  # the library models' default; a checkpoint without it uses its highest

# transformers' EncodecConfig defaults (the 24 kHz model) for fields a config.json leaves out:
# save_pretrained may write only the values that differ from them.
DEFAULTS: dict[str, Any] = {"sampling_rate": 24000, "audio_channels": 1, "upsampling_ratios": [8, 5, 4, 2],
                            "codebook_size": 1024, "target_bandwidths": [1.5, 3.0, 6.0, 12.0, 24.0],
                            "normalize": False}

# The published codecs (transformers' conversion settings), so an offline machine validates a spec
# naming one before it is downloaded. Every MusicGen checkpoint's codec is the 32 kHz one.
_24KHZ = {"model_type": ENCODEC_TYPE, "sampling_rate": 24000, "audio_channels": 1, "upsampling_ratios": [8, 5, 4, 2],
          "codebook_size": 1024, "target_bandwidths": [1.5, 3.0, 6.0, 12.0, 24.0], "normalize": False}
_32KHZ = {"model_type": ENCODEC_TYPE, "sampling_rate": 32000, "audio_channels": 1, "upsampling_ratios": [8, 5, 4, 4],
          "codebook_size": 2048, "target_bandwidths": [2.2], "normalize": False}
_48KHZ = {"model_type": ENCODEC_TYPE, "sampling_rate": 48000, "audio_channels": 2, "upsampling_ratios": [8, 5, 4, 2],
          "codebook_size": 1024, "target_bandwidths": [3.0, 6.0, 12.0, 24.0], "normalize": True}
KNOWN: dict[str, dict[str, Any]] = {
    "facebook/encodec_24khz": _24KHZ, "facebook/encodec_32khz": _32KHZ, "facebook/encodec_48khz": _48KHZ,
    **{f"facebook/musicgen-{size}": _32KHZ for size in ("small", "medium", "large", "melody")},
}


def encodec_part(config: dict[str, Any]) -> dict[str, Any] | None:
    """The EnCodec config inside a ``config.json``: itself, or a MusicGen checkpoint's ``audio_encoder``."""
    if config.get("model_type") == ENCODEC_TYPE:
        return config
    part = composite_part_config(config, PART)
    return part if part is not None and part.get("model_type", ENCODEC_TYPE) == ENCODEC_TYPE else None


def is_transformers_config(config: dict[str, Any]) -> bool:
    """A transformers ``config.json`` (``model_type``), not a Cadenza checkpoint's (``component``)."""
    return "model_type" in config and "component" not in config


def folder_layout(folder: Path) -> tuple[str, dict[str, Any]] | None:
    """``(layout, EnCodec config)`` of a local transformers-format folder; None if it is not one.

    A Cadenza checkpoint (``config.json`` with ``component``) is not one. A transformers
    ``config.json`` of another model is refused in one line rather than read as a state dict.
    """
    top = folder / "config.json"
    if top.exists():
        config = read_json_object(top)
        if not is_transformers_config(config):
            return None
        part = encodec_part(config)
        if part is None:
            raise WeightsError(f"{top}: a transformers {config.get('model_type')!r} checkpoint, not an EnCodec "
                               f"(expected model_type 'encodec', or a MusicGen checkpoint with '{PART}')")
        return ("encodec" if part is config else "composite"), part
    sub = folder / PART / "config.json"
    if sub.exists():
        part = read_json_object(sub)
        if part.get("model_type", ENCODEC_TYPE) != ENCODEC_TYPE:
            raise WeightsError(f"{sub}: model_type {part.get('model_type')!r}, expected 'encodec'")
        return "subfolder", part
    return None


def _cached(repo_id: str, filename: str) -> dict[str, Any] | None:
    """A file of a hub repo from the local Hugging Face cache only (no network), parsed; None if absent."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, filename)
    except Exception:  # noqa: BLE001 - an invalid id or an unreadable cache reads as "not cached"
        return None
    return read_json_object(Path(found)) if isinstance(found, str) else None


def checkpoint_config(weights: Weights) -> dict[str, Any]:
    """The EnCodec config of transformers-format ``weights``, read without loading them.

    A hub id is looked up in the local Hugging Face cache (``config.json``, then
    ``audio_encoder/config.json``), then among the published ids in :data:`KNOWN`; otherwise
    one line naming the id and how to fetch it.
    """
    if weights.kind == "path":
        path = weights.local_path()
        found = folder_layout(path if path.is_dir() else path.parent)
        if found is None:
            raise WeightsError(f"{path}: no transformers EnCodec config.json here (nor in {PART}/)")
        return found[1]
    top = hf_config(weights)
    if top is not None:
        part = encodec_part(top)
        if part is None:
            raise WeightsError(f"weights {weights.source!r} are a transformers {top.get('model_type')!r} checkpoint, "
                               f"not an EnCodec (expected model_type 'encodec', or a MusicGen checkpoint)")
        return part
    sub = _cached(weights.source, f"{PART}/config.json")
    if sub is not None:
        return sub
    if weights.source in KNOWN:
        return dict(KNOWN[weights.source])
    raise WeightsError(f"weights {weights.source!r}: not in the local Hugging Face cache, so what it holds is unknown; "
                       f"run `huggingface-cli download {weights.source}` on a connected machine, or set `weights:` "
                       "to a local folder saved by EncodecModel.save_pretrained (or to 'pretrained', the encodec "
                       "package's own checkpoint)")


def _field(config: dict[str, Any], name: str) -> Any:
    value = config.get(name)
    return DEFAULTS[name] if value is None else value


def describe_checkpoint(config: dict[str, Any], bandwidth: float | None, source: str) -> tuple[TokenizerInfo, float]:
    """``(TokenizerInfo, bandwidth used)`` of an EnCodec config at ``bandwidth`` kbps (None: the default).

    Codebook counts follow ``transformers``' own formulas (``EncodecConfig.frame_rate`` rounds up,
    ``EncodecResidualVectorQuantizer.get_num_quantizers_for_bandwidth``, capped at the
    quantizer's ``num_quantizers``), so the info is what ``EncodecModel.encode`` returns.
    """
    try:
        rate = int(_field(config, "sampling_rate"))
        hop = math.prod(int(r) for r in _field(config, "upsampling_ratios"))
        bins = int(_field(config, "codebook_size"))
        channels = int(_field(config, "audio_channels"))
        offered = [float(b) for b in _field(config, "target_bandwidths")]
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"weights {source!r}: unreadable EnCodec config.json ({exc})") from None
    if rate < 1 or hop < 1 or bins < 2 or channels not in (1, 2) or not offered:
        raise WeightsError(f"weights {source!r}: an EnCodec config.json with sampling_rate {rate}, hop {hop}, "
                           f"codebook_size {bins}, {channels} channels, bandwidths {offered}: not a usable codec")
    if bandwidth is None:
        bandwidth = DEFAULT_BANDWIDTH if DEFAULT_BANDWIDTH in offered else max(offered)
    elif bandwidth not in offered:
        raise WeightsError(f"bandwidth {bandwidth:g} kbps is not offered by weights {source!r} (offered: "
                           f"{', '.join(f'{b:g}' for b in offered)}); set one of them, or leave bandwidth out")
    frames = math.ceil(rate / hop)  # EncodecConfig.frame_rate
    total = int(1000 * offered[-1] // (frames * math.ceil(math.log2(bins))))  # EncodecConfig.num_quantizers
    if total < 1:
        raise WeightsError(f"weights {source!r}: {offered[-1]:g} kbps at {frames} frames/s holds no "
                           f"{bins}-bin codebook")
    used = min(total, int(max(1, math.floor(bandwidth * 1000 / (math.log2(bins) * frames)))))
    return TokenizerInfo(rate, rate / hop, used, bins, channels), bandwidth
