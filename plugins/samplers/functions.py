"""Sampler implementations (imported only when a spec builds one; see :mod:`.samplers`).

A sampler is ``sampler(logits [B, V], generator) -> LongTensor [B]``. All randomness goes
through ``torch.multinomial(..., generator=generator)``, so the same generator seed gives
the same tokens: the cascade owns the generator and makes whole generations reproducible.
Filtering is done by setting logits to ``-inf`` before one shared softmax+multinomial step,
so every sampler draws exactly one random number stream per call in the same way.
"""

from __future__ import annotations

import torch


def _draw(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row from ``softmax(logits / temperature)``."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _check(logits: torch.Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"a sampler takes logits [B, V], got shape {tuple(logits.shape)}")


class Greedy:
    """The most likely token; the generator is accepted for the common signature and unused."""

    def __call__(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check(logits)
        return logits.argmax(dim=-1)


class Temperature:
    def __init__(self, temperature: float = 1.0):
        self.temperature = temperature

    def __call__(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check(logits)
        return _draw(logits, self.temperature, generator)


class TopK:
    def __init__(self, k: int, temperature: float = 1.0):
        self.k, self.temperature = k, temperature

    def __call__(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check(logits)
        k = min(self.k, logits.shape[-1])
        top, index = logits.float().topk(k, dim=-1)
        # Sample among the k kept logits, then map back to vocabulary ids.
        return index.gather(-1, _draw(top, self.temperature, generator).unsqueeze(-1)).squeeze(-1)


class TopP:
    def __init__(self, p: float, temperature: float = 1.0):
        self.p, self.temperature = p, temperature

    def __call__(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check(logits)
        sorted_logits, index = (logits.float() / self.temperature).sort(dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # A token is kept when the mass of the tokens before it is still below p: this is
        # the smallest prefix that reaches p, and always includes the most likely token.
        before = probs.cumsum(dim=-1) - probs
        keep = before < self.p
        keep[..., 0] = True
        sorted_logits = sorted_logits.masked_fill(~keep, float("-inf"))
        choice = _draw(sorted_logits, 1.0, generator)
        return index.gather(-1, choice.unsqueeze(-1)).squeeze(-1)


def build_greedy(config, context) -> Greedy:
    return Greedy()


def build_temperature(config, context) -> Temperature:
    return Temperature(config.temperature)


def build_top_k(config, context) -> TopK:
    return TopK(config.k, config.temperature)


def build_top_p(config, context) -> TopP:
    return TopP(config.p, config.temperature)
