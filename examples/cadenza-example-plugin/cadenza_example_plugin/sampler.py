"""The min-p sampler itself (imported only when a spec uses it)."""

from __future__ import annotations

import torch


class MinPSampler:
    """Keep tokens with p >= min_p * p_max, renormalise, draw one per row."""

    def __init__(self, config, context=None):
        self.min_p = config.min_p
        self.temperature = config.temperature

    def __call__(self, logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        probs = torch.softmax(logits / self.temperature, dim=-1)
        floor = self.min_p * probs.amax(dim=-1, keepdim=True)
        probs = torch.where(probs >= floor, probs, torch.zeros_like(probs))
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
