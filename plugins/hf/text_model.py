"""The ``t5`` and ``minilm`` conditioners (imported only when a spec builds one).

Both wrap a transformers encoder and its tokenizer: prompts are tokenised to the longest in
the batch (at most ``max_length``), encoded, and returned as :class:`Conditioning`. Sequence
outputs are zero at padded positions and carry the attention mask, so a cross-attending stage
ignores the padding. Models are frozen and in eval mode; gradients are never needed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cadenza.core.prompts import check_prompts
from cadenza.core.types import Conditioning, ConditioningInfo
from cadenza.core.engine.checkpoint import read_json_object
from cadenza.plugins.hf.composite import build_part, composite_part_config
from cadenza.plugins.hf.hub import load_pretrained, local_folder
from cadenza.plugins.hf.text import MINILM, T5, MiniLMConfig, T5TextConfig


class _HFText(nn.Module):
    """A tokenizer + encoder pair; subclasses turn the token states into conditioning."""

    def __init__(self, config: Any, model: nn.Module, tokenizer: Any, info: Any):
        super().__init__()
        self.config = config
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.info = info

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(states [B, L, D] float32, mask [B, L] bool)``, ``L`` the longest prompt (<= max_length)."""
        batch = self.tokenizer(check_prompts(texts), padding="longest", truncation=True,
                               max_length=self.config.max_length, return_tensors="pt")
        device = next(self.model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        states = self.model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].bool()
        return states.masked_fill(~mask.unsqueeze(-1), 0.0), mask


class T5Text(_HFText):
    """``t5``: the encoder's last hidden states, ``sequence`` conditioning for cross-attention."""

    def embed_text(self, texts: Sequence[str]) -> Conditioning:
        states, mask = self.encode(texts)
        return Conditioning("sequence", states, mask)


class MiniLMText(_HFText):
    """``minilm``: sentence-transformers' mean pooling + L2 normalisation, or the token states."""

    def embed_text(self, texts: Sequence[str]) -> Conditioning:
        states, mask = self.encode(texts)
        if self.config.output == "sequence":
            return Conditioning("sequence", states, mask)
        weights = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return Conditioning("pooled", F.normalize(pooled, p=2, dim=-1))


def build_t5(config: T5TextConfig, context) -> T5Text:
    from transformers import AutoTokenizer, ByT5Tokenizer, T5EncoderModel
    from transformers import T5Config as HFT5Config

    if context.weights.is_random:
        # No SentencePiece vocabulary can be downloaded for a random model: ByT5's byte-level
        # tokenizer needs no file, and its ids (pad 0, eos 1) are T5's own conventions.
        tokenizer = ByT5Tokenizer()
        hf_config = HFT5Config(vocab_size=config.vocab_size, d_model=config.d_model, d_kv=config.d_model // config.num_heads,
                               d_ff=config.d_ff, num_layers=config.num_layers, num_heads=config.num_heads,
                               dropout_rate=0.0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = T5EncoderModel(hf_config)
    else:
        folder = local_folder(context.weights, T5)
        tokenizer = load_pretrained(T5, folder, AutoTokenizer.from_pretrained)
        if composite_part_config(read_json_object(folder / "config.json"), "text_encoder") is not None:
            # a MusicGen checkpoint: only its text encoder's tensors are read
            model = build_part(folder, "text_encoder", lambda sub: T5EncoderModel(HFT5Config(**sub)), T5)
        else:
            model = load_pretrained(T5, folder, T5EncoderModel.from_pretrained)
    info = ConditioningInfo(kind="sequence", dim=int(model.config.d_model), length=config.max_length)
    return T5Text(config, model.to(context.device), tokenizer, info)


def build_minilm(config: MiniLMConfig, context) -> MiniLMText:
    from transformers import AutoModel, AutoTokenizer

    config.describe(context.weights)  # rejects random weights with one line
    folder = local_folder(context.weights, MINILM)
    if not (folder / "config.json").exists() and (folder / "0_Transformer" / "config.json").exists():
        folder = folder / "0_Transformer"  # older sentence-transformers layout
    tokenizer = load_pretrained(MINILM, folder, AutoTokenizer.from_pretrained)
    model = load_pretrained(MINILM, folder, AutoModel.from_pretrained)
    dim = int(model.config.hidden_size)
    info = ConditioningInfo(kind=config.output, dim=dim, length=config.max_length if config.output == "sequence" else 1)
    return MiniLMText(config, model.to(context.device), tokenizer, info)
