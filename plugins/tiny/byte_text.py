"""``byte-text``: a byte-level text encoder, the download-free stand-in for T5 / MuLan text towers.

Text is read as UTF-8 bytes, so any Unicode prompt has a representation and there is no
vocabulary file to ship; prompts longer than ``max_length`` bytes are truncated (possibly
mid-character, which is harmless for bytes). Bytes are embedded, given learned positions and
run through a small pre-norm transformer. ``sequence`` output is ``[B, L, dim]`` with a mask
(``L`` the longest prompt in the batch, at most ``max_length``); ``pooled`` is the masked mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cadenza.core.prompts import check_prompts
from cadenza.core.types import Conditioning
from cadenza.core.engine.checkpoint import build_module, save_module
from cadenza.plugins.tiny import BYTE_TEXT, ByteTextConfig


class ByteText(nn.Module):
    """The ``byte-text`` conditioner (``embed_text`` -> :class:`Conditioning`)."""

    def __init__(self, config: ByteTextConfig):
        super().__init__()
        self.config = config
        self.info = config.info()
        self.bytes = nn.Embedding(256, config.dim)
        self.positions = nn.Parameter(torch.randn(config.max_length, config.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            config.dim, config.heads, dim_feedforward=4 * config.dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)

    def byte_ids(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids [B, L] int64, mask [B, L] bool)``; raises :class:`InputError` for an empty prompt."""
        encoded = [text.encode("utf-8")[: self.config.max_length] for text in check_prompts(texts)]
        length = max(len(b) for b in encoded)
        ids = torch.zeros(len(encoded), length, dtype=torch.long)
        mask = torch.zeros(len(encoded), length, dtype=torch.bool)
        for row, data in enumerate(encoded):
            ids[row, : len(data)] = torch.tensor(list(data), dtype=torch.long)
            mask[row, : len(data)] = True
        device = self.positions.device
        return ids.to(device), mask.to(device)

    def embed_text(self, texts: Sequence[str]) -> Conditioning:
        ids, mask = self.byte_ids(texts)
        x = self.bytes(ids) + self.positions[: ids.shape[1]]
        x = self.norm(self.encoder(x, src_key_padding_mask=~mask))
        if self.config.output == "sequence":
            return Conditioning("sequence", x.masked_fill(~mask.unsqueeze(-1), 0.0), mask)
        weights = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1)
        return Conditioning("pooled", pooled)

    def save_pretrained(self, folder):
        return save_module(self, folder, BYTE_TEXT)


def build(config: ByteTextConfig, context) -> ByteText:
    return build_module(ByteText, config, context, BYTE_TEXT)
