"""``encodec``: the EnCodec model of the ``encodec`` package behind Cadenza's Tokenizer contract.

The model is built from the library's own classes (``SEANetEncoder``, ``SEANetDecoder``,
``ResidualVectorQuantizer``, ``EncodecModel``) with the per-model settings of
``EncodecModel.encodec_model_24khz/48khz``, so the published state dicts load unchanged and a
random build is a real (small) EnCodec. Encoding and decoding call ``EncodecModel.encode`` /
``decode`` directly; this wrapper only fixes the channel layout and checks inputs.

The 48 kHz model and its scales. The library cuts 48 kHz audio into 1 s segments (1 %
overlap), normalises each to unit RMS and returns the scale with its codes, then overlap-adds
the decoded segments. A cascade only has codes (a stage model generates them), and codes cut
at 0.99 s strides are not one stream at 150 frames/s. So Cadenza runs the model with
``segment = None``: a clip is encoded in one segment, normalised to unit RMS as a whole (the
library's own normalisation, so the encoder sees the level it was trained on and codes do not
depend on the input gain), and ``decode`` multiplies by a fixed level ``config.rms`` (default
0.15, about -16 dBFS RMS, typical of mastered music) instead of the unknown original scale.
Relative dynamics inside a clip are kept by the codes; the absolute level is the config's.
The network is fully convolutional plus an LSTM and normalises over time, so longer
segments are in its domain. The 24 kHz model has no normalisation or segments and is used as is.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch
from encodec import modules as encodec_modules
from encodec import quantization as encodec_quantization
from encodec.model import EncodecModel
from torch import nn

from cadenza.core.audio.io import to_channels
from cadenza.core.engine.checkpoint import build_module, load_state_into, save_module
from cadenza.core.errors import InputError, WeightsError
from cadenza.core.engine.weights import fetch_url, load_failure_reason
from cadenza.plugins.encodec import (
    CODEBOOK_SIZE,
    ENCODEC,
    MODELS,
    ROOT_URL,
    EncodecConfig,
    weights_source,
)


def make_encodec(config: EncodecConfig) -> EncodecModel:
    """A library ``EncodecModel`` for ``config`` (random init; weights are loaded by the caller)."""
    spec = MODELS[config.model]
    sizes = {"channels": spec["channels"], "dimension": config.dimension, "n_filters": config.n_filters,
             "n_residual_layers": config.n_residual_layers, "ratios": list(config.ratios),
             "norm": spec["norm"], "causal": spec["causal"], "lstm": config.lstm}
    with warnings.catch_warnings():  # the library uses torch's deprecated (still working) weight_norm
        warnings.filterwarnings("ignore", message=".*weight_norm.*deprecated", category=FutureWarning)
        encoder = encodec_modules.SEANetEncoder(**sizes)
        decoder = encodec_modules.SEANetDecoder(**sizes)
    # kmeans_init=False: uniform random codebooks, so a random codec's codes vary with the audio
    # (the library's zero init expects k-means on the first training batch). Buffers are the same.
    quantizer = encodec_quantization.ResidualVectorQuantizer(
        dimension=config.dimension, n_q=config.total_codebooks, bins=CODEBOOK_SIZE, kmeans_init=False)
    model = EncodecModel(encoder, decoder, quantizer, list(spec["bandwidths"]), spec["sample_rate"], spec["channels"],
                         normalize=spec["normalize"], segment=None, name=f"encodec_{config.model}")
    model.set_target_bandwidth(config.target_bandwidth)
    return model


class EncodecTokenizer(nn.Module):
    """``encode`` ``[B, C, S]`` -> ``[B, Q, ceil(S / hop)]``; ``decode`` -> ``[B, channels, T * hop]``."""

    def __init__(self, config: EncodecConfig):
        super().__init__()
        self.config = config
        self.info = config.info()
        self.model = make_encodec(config)

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() != 3:
            raise InputError(f"encodec encodes audio [batch, channels, samples], got shape {tuple(audio.shape)}")
        x = to_channels(audio.float(), self.info.channels)
        [(codes, _scale)] = self.model.encode(x)  # one segment (segment=None); the scale is dropped
        return codes

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        q, k = self.info.num_codebooks, self.info.codebook_size
        if codes.dim() != 3 or codes.shape[1] != q:
            raise InputError(f"encodec decodes codes [batch, {q}, frames], got shape {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= k):
            raise InputError(f"encodec codes must be in [0, {k}), got {int(codes.min())}..{int(codes.max())}")
        scale = None
        if self.model.normalize:  # 48 kHz: a fixed output level stands in for the unknown scale
            scale = codes.new_full((codes.shape[0], 1), self.config.rms, dtype=torch.float32)
        return self.model.decode([(codes.long(), scale)])

    def save_pretrained(self, folder):
        """A Cadenza checkpoint folder (config.json + safetensors) that ``weights:`` can point at."""
        return save_module(self, folder, ENCODEC)


def checkpoint_url(config: EncodecConfig) -> str:
    return ROOT_URL + MODELS[config.model]["checkpoint"]


def cached_checkpoint(config: EncodecConfig) -> Path:
    """Where the encodec package caches the official file: ``torch.hub.load_state_dict_from_url``'s place."""
    return Path(torch.hub.get_dir()) / "checkpoints" / MODELS[config.model]["checkpoint"]


def official_file(config: EncodecConfig, weights) -> Path:
    """The official-format ``.th`` file for ``weights`` (``pretrained``: cached, or downloaded if allowed)."""
    name = MODELS[config.model]["checkpoint"]
    if weights_source(weights) == "pretrained":
        dest = cached_checkpoint(config)
        fresh = not dest.exists()
        fetch_url(checkpoint_url(config), dest, f"EnCodec {config.model} checkpoint")
        if fresh:
            _check_sha256(dest, name.rsplit("-", 1)[-1].split(".")[0])
        return dest
    path = weights.local_path()
    if path.is_dir():
        found = [path / name] if (path / name).exists() else sorted(path.glob("*.th"))
        if len(found) != 1:
            raise WeightsError(f"{path}: expected {name} (or exactly one .th state dict) in this folder, "
                               f"found {len(found) or 'none'}")
        path = found[0]
    return path


def _check_sha256(path: Path, prefix: str) -> None:
    """The library's file names end in the first hex digits of their SHA-256, as torch hub checks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(prefix):
        path.unlink(missing_ok=True)
        raise WeightsError(f"{path}: download is corrupt (SHA-256 does not start with {prefix}); removed it, try again")


def load_state_dict(path: Path) -> dict:
    """``torch.load(weights_only=True)``: a tensors-only unpickler, so a checkpoint cannot run code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated, or pickles more than tensors
        first = load_failure_reason(exc)
        raise WeightsError(f"{path}: not a loadable EnCodec state dict ({type(exc).__name__}: {first})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def build(config: EncodecConfig, context) -> EncodecTokenizer:
    """Random or Cadenza-checkpoint weights go through ``build_module``; official files load here."""
    if weights_source(context.weights) in ("random", "checkpoint"):
        return build_module(EncodecTokenizer, config, context, ENCODEC)
    config = config.resolved(context.weights)
    file = official_file(config, context.weights)
    state = load_state_dict(file)
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten; keep the caller's RNG as it was
        tokenizer = EncodecTokenizer(config)
    load_state_into(tokenizer.model, state, str(file))
    return tokenizer.to(context.device).eval()
