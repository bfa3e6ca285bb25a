"""A stage model whose logits get a bias that depends on the written position.

Steering a stage at decode time without retraining it comes down to adding something to its
logits: a melody's token at each frame (:mod:`cadenza.core.steering.melody`), a penalty on the tokens a
long piece has not used (:mod:`cadenza.core.steering.piece_memory`). :class:`BiasedModel` wraps a stage
model's ``prefill``/``step``/``forward`` (the protocol :func:`cadenza.core.engine.decode.decode_stage`
drives) and adds ``bias(position)`` to the logits of written position ``position``, counting a
prefix's tokens. Wrappers stack, so both kinds of steering can apply at once.

A model that predicts every codebook per step with delays (``codebook_delays``, MusicGen) is
steered the same way: at step ``s`` codebook ``k`` writes frame ``s - delays[k]``, which is
written position ``frame * Q + k`` of the frame-major stream, so each bias applies unchanged.

Under classifier-free guidance the batch is doubled (conditional rows, then null-conditioned
rows) and both halves get the bias: ``u + b + s (c + b - u - b) = u + s (c - u) + b``, so the
guided logits carry it exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from cadenza.core.errors import InputError


def check_scale(value: float | None, name: str, meaning: str) -> float | None:
    """A steering option's logit scale: None or 0 (off) -> None, a finite number > 0 -> float;
    anything else is a one-line error naming ``name`` (``"hold must be a number >= 0 (MEANING;
    0 is off), got ..."``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InputError(f"{name} must be a number >= 0 ({meaning}; 0 is off), got {value!r}")
    return float(value) or None


class BiasedModel:
    """``model`` with ``bias(position) -> [B, V] | None`` added to its logits (None: no bias there)."""

    def __init__(self, model: Any, bias: Callable[[int], torch.Tensor | None]):
        self.model = model
        self.layout = model.layout
        self.bias = bias
        self.position = 0
        self.codebook_delays = getattr(model, "codebook_delays", None)  # the decode loop to use passes through

    def _add(self, logits: torch.Tensor, position: int) -> torch.Tensor:
        if self.codebook_delays is not None:
            return self._add_delayed(logits, position)
        bias = self.bias(position)
        if bias is None:
            return logits
        bias = bias.to(logits)
        return logits + bias.repeat(logits.shape[0] // bias.shape[0], 1)

    def _add_delayed(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        """``[B, Q, V]`` logits of ``step``: codebook ``k`` gets the bias of its frame's position."""
        Q = logits.shape[1]
        out = logits
        for k, delay in enumerate(self.codebook_delays):
            frame = step - delay
            bias = self.bias(frame * Q + k) if frame >= 0 else None
            if bias is not None:
                bias = bias.to(logits)
                out = out.clone() if out is logits else out
                out[:, k] += bias.repeat(logits.shape[0] // bias.shape[0], 1)
        return out

    def prefill(self, request: Any, max_new_tokens: int) -> Any:
        inner = self.model.prefill(request, max_new_tokens)
        self.position = 0
        return _State(inner, self._add(inner.logits, 0))

    def step(self, state: Any, tokens: torch.Tensor) -> torch.Tensor:
        self.position += 1
        state.logits = self._add(self.model.step(state.inner, tokens), self.position)
        return state.logits

    def forward(self, request: Any, written: torch.Tensor) -> torch.Tensor:
        logits = self.model.forward(request, written)
        return torch.stack([self._add(logits[:, p], p) for p in range(logits.shape[1])], 1)

    def parameters(self):
        return self.model.parameters()


class _State:
    """The wrapped model's decode state plus the biased logits (the model's own state is left as it is)."""

    def __init__(self, inner: Any, logits: torch.Tensor):
        self.inner = inner
        self.logits = logits
