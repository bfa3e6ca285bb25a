"""The ``musicgen`` stage: transformers' ``MusicgenForCausalLM`` behind Cadenza's stage protocol.

The decoder module is the library's own, so its numbers are the reference's; what Cadenza
adds is around it: the delayed decode loop (guidance, samplers, long-form, continuation), the
conditioning (text states projected to the decoder's width and zeroed where masked, as the
library does), and loading only the decoder's tensors of a composite checkpoint.

Inputs are ``[B * Q, steps]`` ids as the library takes them; a step with no token of a
codebook (before it starts, after it ends) is fed the checkpoint's padding id, which is also
the start token. The null condition of guidance is the library's: zero states, zero mask.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from cadenza.core.components import BuildContext, StageRequest
from cadenza.core.engine.delayed_decode import NO_TOKEN
from cadenza.core.errors import WeightsError
from cadenza.core.layout import StageLayout
from cadenza.plugins.hf.composite import build_part, load_part
from cadenza.plugins.hf.hub import local_folder, quiet_transformers
from cadenza.plugins.musicgen import MUSICGEN, MusicgenConfig


@attrs.define
class DecodeState:
    """The library's encoder-decoder KV cache plus the (projected, masked) text states."""

    cache: Any
    states: torch.Tensor | None
    mask: torch.Tensor | None
    logits: torch.Tensor  # [B, Q, V], predicting the next step


class MusicgenStage(nn.Module):
    """Decoder + text projection; ``codebook_delays`` selects the core's delayed decode loop."""

    def __init__(self, decoder: nn.Module, projection: nn.Module | None, layout: StageLayout):
        super().__init__()
        self.decoder = decoder.eval().requires_grad_(False)
        self.projection = None if projection is None else projection.eval().requires_grad_(False)
        self.layout = layout
        self.num_codebooks = int(decoder.config.num_codebooks)
        self.pad = int(decoder.config.pad_token_id)
        self.codebook_delays = tuple(range(self.num_codebooks))

    def _text(self, request: StageRequest) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Text states for cross-attention: projected, zero where masked or dropped (the null condition)."""
        cond = request.conditioning
        if cond is None:
            return None, None
        device = next(self.decoder.parameters()).device
        states = cond.values.to(device, torch.float32)
        mask = torch.ones(states.shape[:2], dtype=torch.bool, device=device) if cond.mask is None \
            else cond.mask.to(device, torch.bool)
        if request.drop_conditioning is not None:
            drop = request.drop_conditioning.to(device, torch.bool).reshape(-1)
            states = states.masked_fill(drop[:, None, None], 0.0)
            mask = mask & ~drop[:, None]
        if self.projection is not None:
            states = self.projection(states)
        states = states.to(next(self.decoder.parameters()).dtype)
        return states * mask[..., None].to(states.dtype), mask.long()

    def _ids(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, Q, S]`` codes with :data:`NO_TOKEN` -> the library's ``[B * Q, S]`` input ids."""
        device = next(self.decoder.parameters()).device
        ids = torch.where(tokens == NO_TOKEN, torch.full_like(tokens, self.pad), tokens).to(device)
        return ids.reshape(-1, ids.shape[-1])

    def _run(self, ids: torch.Tensor, states, mask, cache=None) -> Any:
        return self.decoder(input_ids=ids, encoder_hidden_states=states, encoder_attention_mask=mask,
                            cache=cache, use_cache=cache is not None)

    def _logits(self, output: Any, batch: int) -> torch.Tensor:
        """Library logits ``[B * Q, S, V]`` -> ``[B, S, Q, V]``."""
        logits = output.logits
        return logits.view(batch, self.num_codebooks, logits.shape[1], logits.shape[2]).transpose(1, 2)

    @torch.no_grad()
    def forward(self, request: StageRequest, written: torch.Tensor) -> torch.Tensor:
        """Teacher forcing over step tokens ``[B, Q, S]`` (delayed, :data:`NO_TOKEN` for none):
        logits ``[B, S + 1, Q, V]``, position ``s`` predicting step ``s``."""
        B = request.batch_size
        start = torch.full((B, self.num_codebooks, 1), NO_TOKEN, dtype=torch.long, device=written.device)
        states, mask = self._text(request)
        return self._logits(self._run(self._ids(torch.cat([start, written], dim=2)), states, mask), B)

    @torch.no_grad()
    def prefill(self, request: StageRequest, max_new_tokens: int) -> DecodeState:
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        B = request.batch_size
        states, mask = self._text(request)
        cache = EncoderDecoderCache(DynamicCache(config=self.decoder.config), DynamicCache(config=self.decoder.config))
        start = torch.full((B, self.num_codebooks, 1), NO_TOKEN, dtype=torch.long)
        output = self._run(self._ids(start), states, mask, cache)
        return DecodeState(output.cache, states, mask, self._logits(output, B)[:, -1])

    @torch.no_grad()
    def step(self, state: DecodeState, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one step's tokens ``[B, Q]``; logits ``[B, Q, V]`` for the next step."""
        B = tokens.shape[0]
        output = self._run(self._ids(tokens[:, :, None]), state.states, state.mask, state.cache)
        state.cache = output.cache
        state.logits = self._logits(output, B)[:, -1]
        return state.logits


def random_decoder_settings(config: Any, layout: StageLayout) -> dict[str, Any]:
    """The transformers decoder config of a ``random`` MusicGen(-melody) stage sized by ``config``
    (either model's config: the same size fields) for ``layout``'s codebooks; no dropout."""
    vocab = layout.writes.codebook_size
    return dict(vocab_size=vocab, num_codebooks=layout.writes.num_codebooks, hidden_size=config.hidden_size,
                num_hidden_layers=config.layers, num_attention_heads=config.heads, ffn_dim=config.ffn_dim,
                max_position_embeddings=config.max_positions, pad_token_id=vocab, bos_token_id=vocab,
                decoder_start_token_id=vocab, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)


def projection(width: int, hidden_size: int) -> nn.Module | None:
    """The linear map from a conditioning width to the decoder's, None when they already match."""
    return nn.Linear(width, hidden_size) if width != hidden_size else None


def _random_decoder(config: MusicgenConfig, layout: StageLayout) -> tuple[nn.Module, nn.Module | None]:
    from transformers import MusicgenDecoderConfig, MusicgenForCausalLM

    width = layout.conditioning.dim if layout.conditioning is not None else config.hidden_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        decoder = MusicgenForCausalLM(MusicgenDecoderConfig(**random_decoder_settings(config, layout)))
        text = projection(width, config.hidden_size)
    return decoder, text


def _pretrained_decoder(weights: Any) -> tuple[nn.Module, nn.Module | None]:
    from transformers import MusicgenDecoderConfig, MusicgenForCausalLM

    folder = local_folder(weights, MUSICGEN)
    with quiet_transformers():
        decoder = build_part(folder, "decoder", lambda sub: MusicgenForCausalLM(MusicgenDecoderConfig(**sub)), MUSICGEN)
    config = MusicgenConfig().decoder_config(weights) or {}
    width, hidden = config.get("text_width"), int(decoder.config.hidden_size)
    projection = None
    if width is not None and width != hidden and decoder.config.cross_attention_hidden_size is None:
        projection = load_part(folder, "enc_to_dec_proj", nn.Linear(int(width), hidden), MUSICGEN)
    return decoder, projection


def build_musicgen(config: MusicgenConfig, context: BuildContext) -> MusicgenStage:
    layout = context.layout
    if layout is None:
        raise ValueError("the musicgen stage model needs context.layout (built for a cascade stage)")
    problems = config.check(layout, context.weights)
    if problems:
        raise WeightsError(f"{MUSICGEN}: {problems[0]}")
    weights = context.weights
    decoder, projection = (_random_decoder(config, layout) if weights is None or weights.is_random
                           else _pretrained_decoder(weights))
    return MusicgenStage(decoder, projection, layout).to(context.device)
