"""A decoder-only transformer that runs any MusicLM stage from its :class:`StageLayout` alone.

One token sequence serves the semantic, coarse and fine roles::

    [conditioning prefix] + [read slices, frame-major] + [BOS] + [written tokens, frame-major]

Logits at BOS predict written token 0; at written token ``i`` they predict ``i + 1``, whose
codebook is ``(i + 1) % Q``. All read and written codebooks share one embedding table (each
(stream, codebook) at its own offset, so ids never collide), plus a learned "slot" embedding
per (segment, codebook) that tells the model which stream and codebook a position holds.

With ``aligned_reads`` each written token also gets the summed embeddings of the read frames
covering the same time (frame ``f`` of a ``r_w`` Hz stream reads frame ``floor(f r_s / r_w)`` of
an ``r_s`` Hz one): a frame-synchronous path next to attention, which a small stage trained on
little data learns far sooner than attention's alignment.

Conditioning is a prefix (``prefix`` mode), a cross-attention memory (``cross``), or absent.
Rows flagged in ``StageRequest.drop_conditioning`` (and, in training, a random ``cond_dropout``
share) use a learned null condition, which is what classifier-free guidance contrasts against.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from cadenza.core.engine.checkpoint import build_module, save_module
from cadenza.core.components import BuildContext, StageRequest
from cadenza.core.errors import WeightsError
from cadenza.core.layout import StageLayout
from cadenza.plugins.transformer import TransformerConfig

COMPONENT = "transformer"


def rope_tables(length: int, head_dim: int, base: float, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin ``[length, head_dim // 2]`` for rotary position embeddings at positions 0..length-1."""
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv[None, :]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``[B, H, L, hd]`` by position (rotate-half form); ``cos``/``sin`` are ``[L, hd/2]``."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class SelfAttention(nn.Module):
    """Causal self-attention with RoPE; optionally writes into / reads from a preallocated KV cache."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim, self.dropout = heads, d_model // heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x, cos, sin, mask, cache=None, start=0):
        """``x`` ``[B, L, d]`` at positions ``start..start+L-1``.

        ``mask`` None means plain causal attention (only valid with ``start == 0`` or ``L == 1``);
        otherwise a bool ``[B, 1, L, start+L]`` (True = may attend). With ``cache`` (k, v buffers
        ``[B, H, capacity, hd]``) the new keys are written in place: no reallocation per step.
        """
        B, L, _ = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            ck, cv = cache
            ck[:, :, start : start + L] = k
            cv[:, :, start : start + L] = v
            k, v = ck[:, :, : start + L], cv[:, :, : start + L]
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and L > 1, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(B, L, -1))


class CrossAttention(nn.Module):
    """Attention from the token sequence to the conditioning memory; keys/values computed once."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim, self.dropout = heads, d_model // heads, dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, M, _ = memory.shape
        k, v = self.kv(memory).view(B, M, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(self, x, kv, mask):
        B, L, _ = x.shape
        q = self.q(x).view(B, L, self.heads, self.head_dim).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(B, L, -1))


class Block(nn.Module):
    """Pre-norm block: self-attention, (cross-attention), GELU MLP, each residual."""

    def __init__(self, config: TransformerConfig, cross: bool):
        super().__init__()
        d = config.d_model
        self.norm1 = nn.LayerNorm(d)
        self.attn = SelfAttention(d, config.heads, config.dropout)
        self.norm_cross = nn.LayerNorm(d) if cross else None
        self.cross = CrossAttention(d, config.heads, config.dropout) if cross else None
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(
            nn.Linear(d, config.ff_mult * d), nn.GELU(), nn.Linear(config.ff_mult * d, d), nn.Dropout(config.dropout)
        )

    def forward(self, x, cos, sin, mask, cache=None, start=0, cross_kv=None, cross_mask=None):
        x = x + self.attn(self.norm1(x), cos, sin, mask, cache, start)
        if self.cross is not None:
            x = x + self.cross(self.norm_cross(x), cross_kv, cross_mask)
        return x + self.mlp(self.norm2(x))


@attrs.define
class DecodeState:
    """KV-cache decode state. ``logits`` ``[B, V]`` predict written token ``written``."""

    logits: torch.Tensor
    cache: list[tuple[torch.Tensor, torch.Tensor]]
    position: int  # next free cache position
    written: int  # written tokens appended so far
    capacity: int
    cos: torch.Tensor
    sin: torch.Tensor
    key_valid: torch.Tensor | None  # [B, capacity] bool, None when every position is real
    cross_kv: list[Any] | None
    cross_mask: torch.Tensor | None
    aligned: list[torch.Tensor] = attrs.field(factory=list)  # see _Context.aligned


@attrs.frozen
class _Context:
    """The encoded prefix + reads + BOS of a batch, shared by the cached and uncached paths."""

    x: torch.Tensor  # [B, C, d]
    aligned: list[torch.Tensor]  # per read slice [B, T_s, d] frame embeddings (aligned_reads), else []
    key_valid: torch.Tensor | None  # [B, C] bool
    memory: torch.Tensor | None  # [B, M, d] (cross mode)
    memory_mask: torch.Tensor | None  # [B, M] bool


class TransformerStage(nn.Module):
    """The stage model (implements :class:`cadenza.core.components.StageModel`)."""

    def __init__(self, config: TransformerConfig, layout: StageLayout):
        super().__init__()
        self.config, self.layout = config, layout
        d, cond, mode = config.d_model, layout.conditioning, layout.conditioning_mode
        if mode != "none" and cond is None:
            raise ValueError(f"conditioning_mode {mode!r} needs layout.conditioning")
        if mode == "prefix" and cond.kind == "sequence":
            raise ValueError("conditioning kind 'sequence' with mode 'prefix' is not supported: use mode 'cross'")
        self.mode = mode if cond is not None else "none"
        self.num_codebooks = layout.writes.num_codebooks
        self.vocab_size = layout.writes.codebook_size

        # One table; slice s codebook c occupies rows [offset_s + c * size_s, ... + size_s).
        self.read_offsets: list[int] = []
        self.read_slots: list[int] = []
        rows, slots = 0, 1  # slot 0: conditioning prefix
        for sl in layout.reads:
            self.read_offsets.append(rows)
            self.read_slots.append(slots)
            rows += sl.num_codebooks * sl.codebook_size
            slots += sl.num_codebooks
        self.bos_slot, self.write_offset, self.write_slot = slots, rows, slots + 1
        # aligned_reads: read frames per written frame, per read slice
        self.read_ratios = [sl.frame_rate / layout.writes.frame_rate for sl in layout.reads]
        rows += self.num_codebooks * self.vocab_size
        slots += 1 + self.num_codebooks
        self.embed = nn.Embedding(rows, d)
        self.slot = nn.Embedding(slots, d)
        self.bos = nn.Parameter(torch.zeros(d))

        self.prefix_len = 0
        if self.mode != "none":
            if cond.kind == "tokens":
                self.cond_embed = nn.Embedding(cond.vocab_size, d)
            elif self.mode == "prefix":  # pooled
                self.cond_proj = nn.Linear(cond.dim, config.prefix_length * d)
            else:
                self.cond_proj = nn.Linear(cond.dim, d)
            if self.mode == "prefix":
                self.prefix_len = cond.length if cond.kind == "tokens" else config.prefix_length
                self.null_prefix = nn.Parameter(torch.zeros(self.prefix_len, d))
            else:
                self.null_memory = nn.Parameter(torch.zeros(1, d))

        self.blocks = nn.ModuleList(Block(config, self.mode == "cross") for _ in range(config.layers))
        self.norm = nn.LayerNorm(d)
        self.head_weight = nn.Parameter(torch.zeros(self.num_codebooks, d, self.vocab_size))
        self.head_bias = nn.Parameter(torch.zeros(self.num_codebooks, self.vocab_size))
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
        for name in ("bos", "head_weight", "null_prefix", "null_memory"):
            if hasattr(self, name):
                nn.init.normal_(getattr(self, name), std=0.02)

    @property
    def device(self) -> torch.device:
        return self.bos.device

    # ---- inputs -> embeddings -------------------------------------------------------------

    def _drop_mask(self, request: StageRequest, batch: int) -> torch.Tensor:
        """Rows using the null condition: requested ones, missing conditioning, training dropout."""
        drop = torch.zeros(batch, dtype=torch.bool, device=self.device)
        if request.drop_conditioning is not None:
            drop = drop | request.drop_conditioning.to(self.device, torch.bool).reshape(batch)
        if request.conditioning is None:
            drop = torch.ones_like(drop)
        if self.training and self.config.cond_dropout > 0:
            drop = drop | (torch.rand(batch, device=self.device) < self.config.cond_dropout)
        return drop

    def _conditioning(self, request: StageRequest, batch: int):
        """``(prefix [B,P,d] | None, prefix_valid [B,P] | None, memory [B,M,d] | None, memory_mask)``."""
        if self.mode == "none":
            return None, None, None, None
        cond, info = request.conditioning, self.layout.conditioning
        drop = self._drop_mask(request, batch)
        mask = None
        if cond is not None:
            if cond.kind != info.kind:
                raise ValueError(f"conditioning is {cond.kind!r}, the stage layout expects {info.kind!r}")
            values = cond.values.to(self.device)
            if cond.kind == "tokens":
                if values.dtype.is_floating_point or (values < 0).any() or (values >= info.vocab_size).any():
                    raise ValueError(f"conditioning tokens must be integers in [0, {info.vocab_size})")
                emb = self.cond_embed(values)  # [B, L, d]
            elif self.mode == "prefix":  # pooled -> prefix_length tokens
                emb = self.cond_proj(values.float()).view(batch, self.prefix_len, -1)
            else:
                emb = self.cond_proj(values.float())
                emb = emb[:, None] if cond.kind == "pooled" else emb
            mask = None if cond.mask is None or cond.kind == "pooled" else cond.mask.to(self.device, torch.bool)

        if self.mode == "prefix":
            null = self.null_prefix.expand(batch, -1, -1)
            if cond is None:
                return null, None, None, None
            if emb.shape[1] != self.prefix_len:
                raise ValueError(f"conditioning has {emb.shape[1]} tokens, the stage layout expects {self.prefix_len}")
            prefix = torch.where(drop[:, None, None], null, emb)
            valid = None if mask is None else mask | drop[:, None]
            return prefix, valid, None, None

        # cross: slot 0 is the null memory token; a row sees either it alone or its real memory.
        null = self.null_memory.expand(batch, 1, -1)
        if cond is None:
            return None, None, null, torch.ones(batch, 1, dtype=torch.bool, device=self.device)
        real = torch.ones(emb.shape[:2], dtype=torch.bool, device=self.device) if mask is None else mask
        use_null = drop | ~real.any(dim=1)  # a row with no real memory would attend to nothing
        memory = torch.cat([null, emb], dim=1)
        memory_mask = torch.cat([use_null[:, None], real & ~use_null[:, None]], dim=1)
        return None, None, memory, memory_mask

    def _reads(self, reads: Sequence[torch.Tensor], batch: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Prefix embeddings of each read slice ``[B, T_s * Q_s, d]`` (frame-major) and, with
        ``aligned_reads``, its per-frame embeddings ``[B, T_s, d]`` (summed over codebooks)."""
        if len(reads) != len(self.layout.reads):
            raise ValueError(f"expected {len(self.layout.reads)} read tensors, got {len(reads)}")
        out, aligned = [], []
        for sl, offset, slot, tokens in zip(self.layout.reads, self.read_offsets, self.read_slots, reads):
            if tokens.dim() != 3 or tokens.shape[0] != batch or tokens.shape[1] != sl.num_codebooks:
                raise ValueError(f"read {sl} must be [{batch}, {sl.num_codebooks}, T], got {list(tokens.shape)}")
            tokens = tokens.to(self.device)
            if (tokens < 0).any() or (tokens >= sl.codebook_size).any():
                raise ValueError(f"read {sl} has tokens outside [0, {sl.codebook_size})")
            flat = tokens.transpose(1, 2).reshape(batch, -1)  # frame-major
            cb = torch.arange(flat.shape[1], device=self.device) % sl.num_codebooks
            embedded = self.embed(offset + cb * sl.codebook_size + flat)
            out.append(embedded + self.slot(slot + cb))
            if self.config.aligned_reads:
                aligned.append(embedded.view(batch, tokens.shape[2], sl.num_codebooks, -1).sum(2))
        return out, aligned

    def _context(self, request: StageRequest) -> _Context:
        batch = request.batch_size
        prefix, prefix_valid, memory, memory_mask = self._conditioning(request, batch)
        bos = (self.bos + self.slot.weight[self.bos_slot]).expand(batch, 1, -1)
        parts = [] if prefix is None else [prefix + self.slot.weight[0]]
        reads, aligned = self._reads(request.reads, batch)
        x = torch.cat(parts + reads + [bos], dim=1)
        key_valid = None
        if prefix_valid is not None:
            rest = torch.ones(batch, x.shape[1] - prefix.shape[1], dtype=torch.bool, device=self.device)
            key_valid = torch.cat([prefix_valid, rest], dim=1)
        return _Context(x, aligned, key_valid, memory, memory_mask)

    def _embed_written(self, written: torch.Tensor, start: int, aligned: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        """Embed written tokens ``[B, n]`` whose first has written index ``start``, plus (with
        ``aligned_reads``) the embeddings of the read frames of their time."""
        Q, V = self.num_codebooks, self.vocab_size
        index = torch.arange(start, start + written.shape[1], device=self.device)
        cb = index % Q
        x = self.embed(self.write_offset + cb * V + written) + self.slot(self.write_slot + cb)
        for frames, r in zip(aligned, self.read_ratios):
            if frames.shape[1]:  # past its end a read stream holds at its last frame
                at = torch.floor((index // Q).double() * r + 1e-6).long().clamp(max=frames.shape[1] - 1)
                x = x + frames[:, at]
        return x

    # ---- transformer ----------------------------------------------------------------------

    @staticmethod
    def _self_mask(key_valid: torch.Tensor | None, length: int) -> torch.Tensor | None:
        """Causal mask with padded prefix keys hidden; None (plain causal) when nothing is padded.

        Each position may always see itself, so a padded prefix row never attends to nothing.
        """
        if key_valid is None:
            return None
        idx = torch.arange(length, device=key_valid.device)
        causal = idx[None, :] <= idx[:, None]
        mask = causal & key_valid[:, None, :length] | torch.eye(length, dtype=torch.bool, device=key_valid.device)
        return mask[:, None]

    def _cross(self, memory, memory_mask):
        if memory is None:
            return None, None
        kv = [blk.cross.memory_kv(memory) for blk in self.blocks]
        return kv, memory_mask[:, None, None, :]

    def _logits(self, h: torch.Tensor, first: int) -> torch.Tensor:
        """Logits ``[B, n, V]`` for hidden states ``[B, n, d]`` predicting written tokens first.."""
        h = self.norm(h)
        Q, n = self.num_codebooks, h.shape[1]
        out = h.new_empty(h.shape[0], n, self.vocab_size)
        for j in range(min(Q, n)):  # position j, j+Q, ... all use codebook (first + j) % Q
            q = (first + j) % Q
            out[:, j::Q] = h[:, j::Q] @ self.head_weight[q] + self.head_bias[q]
        return out

    def forward(self, request: StageRequest, written: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: ``written`` ``[B, N]`` -> logits ``[B, N + 1, V]`` (no cache)."""
        ctx = self._context(request)
        written = written.to(self.device)
        if written.numel() and ((written < 0).any() or (written >= self.vocab_size).any()):
            raise ValueError(f"written tokens must be in [0, {self.vocab_size})")
        x = torch.cat([ctx.x, self._embed_written(written, 0, ctx.aligned)], dim=1)
        length = x.shape[1]
        cos, sin = rope_tables(length, self.config.d_model // self.config.heads, self.config.rope_base, self.device)
        mask = self._self_mask(ctx.key_valid, length)
        cross_kv, cross_mask = self._cross(ctx.memory, ctx.memory_mask)
        for i, blk in enumerate(self.blocks):
            x = blk(x, cos, sin, mask, cross_kv=cross_kv and cross_kv[i], cross_mask=cross_mask)
        return self._logits(x[:, ctx.x.shape[1] - 1 :], 0)

    def loss(self, request: StageRequest, written: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the written tokens ``[B, N]`` under teacher forcing."""
        logits = self.forward(request, written)[:, :-1]
        return F.cross_entropy(logits.reshape(-1, self.vocab_size).float(), written.to(self.device).reshape(-1))

    @torch.inference_mode()
    def prefill(self, request: StageRequest, max_new_tokens: int) -> DecodeState:
        """Encode conditioning, reads and BOS into a KV cache sized for ``max_new_tokens`` more.

        The cache and cross-attention keys/values are allocated here once; :meth:`step` only
        writes into them, so a decode step costs O(length) attention, not a full re-encode.
        """
        ctx = self._context(request)
        B, C, _ = ctx.x.shape
        capacity = C + max(max_new_tokens, 1)
        H, hd = self.config.heads, self.config.d_model // self.config.heads
        cos, sin = rope_tables(capacity, hd, self.config.rope_base, self.device)
        dtype = ctx.x.dtype
        cache = [
            (ctx.x.new_empty(B, H, capacity, hd, dtype=dtype), ctx.x.new_empty(B, H, capacity, hd, dtype=dtype))
            for _ in self.blocks
        ]
        key_valid = None
        if ctx.key_valid is not None:
            key_valid = torch.ones(B, capacity, dtype=torch.bool, device=self.device)
            key_valid[:, :C] = ctx.key_valid
        cross_kv, cross_mask = self._cross(ctx.memory, ctx.memory_mask)
        mask = self._self_mask(ctx.key_valid, C)
        x = ctx.x
        for i, blk in enumerate(self.blocks):
            x = blk(x, cos[:C], sin[:C], mask, cache[i], 0, cross_kv and cross_kv[i], cross_mask)
        logits = self._logits(x[:, -1:], 0)[:, 0]
        return DecodeState(logits, cache, C, 0, capacity, cos, sin, key_valid, cross_kv, cross_mask, ctx.aligned)

    @torch.inference_mode()
    def step(self, state: DecodeState, tokens: torch.Tensor) -> torch.Tensor:
        """Append written tokens ``[B]``; return logits ``[B, V]`` for the next written token."""
        p = state.position
        if p >= state.capacity:
            raise ValueError(f"decode state is full: prefill was sized for {state.capacity} positions")
        x = self._embed_written(tokens.to(self.device).reshape(-1, 1), state.written, state.aligned)
        cos, sin = state.cos[p : p + 1], state.sin[p : p + 1]
        mask = None if state.key_valid is None else state.key_valid[:, None, None, : p + 1]
        for i, blk in enumerate(self.blocks):
            kv = state.cross_kv[i] if state.cross_kv is not None else None
            x = blk(x, cos, sin, mask, state.cache[i], p, kv, state.cross_mask)
        state.position, state.written = p + 1, state.written + 1
        state.logits = self._logits(x, state.written)[:, 0]
        return state.logits

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``config.json`` (config + layout, so a spec can be checked against it) and weights."""
        return save_module(self, folder, COMPONENT, layout=self.layout.to_dict())


def build_transformer(config: TransformerConfig, context: BuildContext) -> TransformerStage:
    """The registered factory: random init (seeded, without disturbing the global RNG) or a checkpoint
    whose saved layout must match the stage's."""
    layout = context.layout
    if layout is None:
        raise ValueError("the transformer stage model needs context.layout (built for a cascade stage)")

    def check_layout(saved: dict, path: Path) -> None:
        if "layout" not in saved:
            raise WeightsError(f"{path}: config.json has no saved stage layout to check against the spec")
        try:
            trained = StageLayout.from_dict(saved["layout"])
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"{path}: unreadable saved layout ({exc})") from None
        diffs = layout.differences(trained)
        if diffs:
            raise WeightsError(f"{path}: weights were trained for another stage layout: {'; '.join(diffs)}")

    return build_module(lambda cfg: TransformerStage(cfg, layout), config, context, COMPONENT, check_saved=check_layout)
