"""``dac`` from transformers-format weights: ``transformers.DacModel`` behind the Tokenizer contract.

The hub's ``descript/dac_16khz`` / ``_24khz`` / ``_44khz`` (and folders written by
``DacModel.save_pretrained``) are loaded with ``from_pretrained``, safetensors only (a pickled
``pytorch_model.bin`` could run code); the ``dac`` package is not imported.

Encoding and decoding are the same steps as :mod:`.model` takes with the library, on
transformers' modules: right-pad to a whole hop (what ``dac.DAC.preprocess`` does, and
``DacModel.encode`` does not), ``DacModel.encode(n_quantizers=num_codebooks)``, and
``DacModel.decode(audio_codes=...)`` zero-padded (or trimmed) to exactly ``frames * hop``
samples - DAC's transposed convolutions lose samples at odd strides, and the cascade and the
frame rate promise that length.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import DacModel

from cadenza.core.audio.io import to_channels
from cadenza.core.errors import InputError, WeightsError
from cadenza.plugins.dac import DAC, DacConfig
from cadenza.plugins.hf.hub import load_pretrained, local_folder


class TransformersDac(nn.Module):
    """``encode`` ``[B, C, S]`` -> ``[B, Q, ceil(S / hop)]``; ``decode`` -> ``[B, 1, T * hop]``."""

    def __init__(self, model: DacModel, config: DacConfig):
        super().__init__()
        self.config = config
        self.info = config.info()
        self.model = model
        self.hop = int(model.config.hop_length)

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() != 3:
            raise InputError(f"dac encodes audio [batch, channels, samples], got shape {tuple(audio.shape)}")
        x = to_channels(audio.float(), 1)
        x = F.pad(x, (0, math.ceil(x.shape[-1] / self.hop) * self.hop - x.shape[-1]))
        return self.model.encode(x, n_quantizers=self.info.num_codebooks, return_dict=True).audio_codes

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        q, k = self.info.num_codebooks, self.info.codebook_size
        if codes.dim() != 3 or codes.shape[1] != q:
            raise InputError(f"dac decodes codes [batch, {q}, frames], got shape {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= k):
            raise InputError(f"dac codes must be in [0, {k}), got {int(codes.min())}..{int(codes.max())}")
        audio = self.model.decode(audio_codes=codes.long(), return_dict=True).audio_values
        audio = audio.reshape(codes.shape[0], 1, -1)  # DacModel.decode squeezes the channel axis
        length = codes.shape[-1] * self.hop
        return F.pad(audio, (0, length - audio.shape[-1])) if audio.shape[-1] < length else audio[..., :length]


def load_model(folder: Path) -> DacModel:
    """``DacModel.from_pretrained`` (safetensors only); every model tensor must come from the file."""
    def load(where):
        return DacModel.from_pretrained(where, use_safetensors=True, output_loading_info=True)

    with torch.random.fork_rng(devices=[]):  # init is overwritten; keep the caller's RNG as it was
        model, loading = load_pretrained(DAC, folder, load)
    missing, mismatched = loading.get("missing_keys") or [], loading.get("mismatched_keys") or []
    if missing or mismatched:
        what = f"missing {sorted(missing)[:3]}" if missing else f"shape mismatch {list(mismatched)[:3]}"
        raise WeightsError(f"{DAC}: {folder}: the weights do not fit the DAC its config.json describes ({what})")
    return model


def build(config: DacConfig, context) -> TransformersDac:
    """The codec of a hub id (cache first, one line if missing offline) or a local folder."""
    weights = context.weights
    config = config.resolved(weights)  # refuses architecture params: the checkpoint has its own
    folder = local_folder(weights, DAC)
    model = load_model(folder)
    config.check_transformers(model.config.to_dict(), weights.source)  # the files, not just the cached config
    return TransformersDac(model, config).to(context.device).eval()
