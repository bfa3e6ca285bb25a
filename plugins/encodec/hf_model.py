"""``encodec`` from transformers-format weights: ``transformers.EncodecModel`` behind the Tokenizer contract.

Built by ``from_pretrained`` on the checkpoint's own folder (``EncodecModel`` repos and
``audio_encoder/`` subfolders), or, for a MusicGen checkpoint, from its ``audio_encoder``
sub-config with only the ``audio_encoder.*`` tensors read from its safetensors (the text
encoder and decoder, most of the file, are never loaded). ``from_pretrained`` is kept in both
cases because it renames the ``weight_g`` / ``weight_v`` tensors of checkpoints saved before
torch's parametrized weight norm. Only safetensors are read: a pickled ``pytorch_model.bin``
could run code.

Encoding and decoding are ``EncodecModel.encode`` / ``decode`` at the spec's bandwidth; this
wrapper fixes the channel layout, checks inputs, and drops the per-chunk scales. Models that
normalise (the 48 kHz one) are run as :mod:`.model` runs the library's: one segment per clip
(``chunk_length_s`` cleared), normalised to unit RMS as a whole, decoded at the fixed level
``rms`` - a cascade generates codes only, and codes cut into 1 s chunks with a scale each are
not one stream a stage can continue. Clips within one chunk get exactly the library's codes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import EncodecConfig as HFEncodecConfig
from transformers import EncodecModel

from cadenza.core.audio.io import to_channels
from cadenza.core.errors import InputError, WeightsError
from cadenza.plugins.encodec import ENCODEC, EncodecConfig
from cadenza.plugins.encodec.hf_format import PART, describe_checkpoint, folder_layout
from cadenza.plugins.hf.composite import part_state
from cadenza.plugins.hf.hub import load_pretrained, local_folder


class TransformersEncodec(nn.Module):
    """``encode`` ``[B, C, S]`` -> ``[B, Q, ceil(S / hop)]``; ``decode`` -> ``[B, channels, T * hop]``."""

    def __init__(self, model: EncodecModel, config: EncodecConfig, source: str):
        super().__init__()
        self.config = config
        self.model = model
        self.info, self.bandwidth = describe_checkpoint(model.config.to_dict(), config.bandwidth, source)

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() != 3:
            raise InputError(f"encodec encodes audio [batch, channels, samples], got shape {tuple(audio.shape)}")
        x = to_channels(audio.float(), self.info.channels)
        encoded = self.model.encode(x, bandwidth=self.bandwidth, return_dict=True)
        return encoded.audio_codes[0]  # one chunk: [B, Q, T]; its scale (if any) is dropped

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        q, k = self.info.num_codebooks, self.info.codebook_size
        if codes.dim() != 3 or codes.shape[1] != q:
            raise InputError(f"encodec decodes codes [batch, {q}, frames], got shape {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= k):
            raise InputError(f"encodec codes must be in [0, {k}), got {int(codes.min())}..{int(codes.max())}")
        scale = None
        if self.model.config.normalize:  # a fixed output level stands in for the unknown scale
            scale = torch.full((codes.shape[0], 1), self.config.rms, device=codes.device)
        return self.model.decode(codes.long()[None], [scale], return_dict=True).audio_values


def _from_pretrained(folder: Path, where: Path | None, **kwargs) -> EncodecModel:
    """``EncodecModel.from_pretrained(where)`` (safetensors only; ``where=None`` with a given config
    and state dict); every tensor of the model must come from the checkpoint in ``folder``."""
    def load(_folder):
        return EncodecModel.from_pretrained(where, use_safetensors=True, output_loading_info=True, **kwargs)

    with torch.random.fork_rng(devices=[]):  # init is overwritten; keep the caller's RNG as it was
        model, loading = load_pretrained(ENCODEC, folder, load)
    missing, mismatched = loading.get("missing_keys") or [], loading.get("mismatched_keys") or []
    if missing or mismatched:
        what = f"missing {sorted(missing)[:3]}" if missing else f"shape mismatch {list(mismatched)[:3]}"
        raise WeightsError(f"{ENCODEC}: {folder}: the weights do not fit the EnCodec its config.json describes "
                           f"({what})")
    return model


def load_model(folder: Path) -> EncodecModel:
    """The EnCodec of a transformers-format folder, in whichever of the three layouts it is."""
    found = folder_layout(folder)
    if found is None:
        raise WeightsError(f"{ENCODEC}: {folder}: no transformers EnCodec config.json here (nor in {PART}/)")
    layout, part = found
    if layout == "encodec":
        return _from_pretrained(folder, folder)
    if layout == "subfolder":
        return _from_pretrained(folder, folder / PART)
    state = part_state(folder, PART)  # composite: the MusicGen checkpoint's codec tensors, nothing else
    if not state:
        raise WeightsError(f"{ENCODEC}: {folder} holds no '{PART}.*' tensors (not a MusicGen checkpoint?)")
    return _from_pretrained(folder, None, config=HFEncodecConfig.from_dict(part), state_dict=state)


def build(config: EncodecConfig, context) -> TransformersEncodec:
    """The codec of a hub id (cache first, one line if missing offline) or a local folder."""
    weights = context.weights
    config = config.resolved(weights)  # refuses architecture params: the checkpoint has its own
    folder = local_folder(weights, ENCODEC)
    model = load_model(folder)
    model.config.chunk_length_s = None  # one segment per clip (module docstring)
    return TransformersEncodec(model, config, weights.source).to(context.device).eval()
