"""A third-party codec that needs no weights, registered with ``needs_weights=False``.

Tests use it where a component with nothing learned or fitted must be told from an untrained
one: ``Cascade.random_components``, the note ``cadenza generate`` prints, and ``cadenza bench``.
(No built-in cascade component is weightless: every built-in codec, semantic tokenizer and
conditioner has learned or k-means-fitted weights.)

``mu-law``: every sample (mono) is one frame, companded by mu-law and quantised to
``codebook_size`` levels; each further codebook quantises, the same way, what the ones before
left over. Nothing is fitted, so the round trip is as good at ``weights: random`` (the only
weights it takes) as it will ever be: about 8 bits of mu-law per codebook.
"""

from __future__ import annotations

import math

import attrs
import torch

from cadenza.core.errors import WeightsError
from cadenza.core.hookspecs import hookimpl
from cadenza.core.spec.validators import at_least
from cadenza.core.types import TokenizerInfo

NAME = "mu-law"


@attrs.frozen
class MuLawConfig:
    """One frame per sample at ``sample_rate``; ``num_codebooks`` residual mu-law quantisers."""

    sample_rate: int = attrs.field(default=2000, validator=at_least(1))
    num_codebooks: int = attrs.field(default=1, validator=at_least(1))
    codebook_size: int = attrs.field(default=256, validator=at_least(2))
    mu: float = 255.0

    def describe(self, weights) -> TokenizerInfo:
        return TokenizerInfo(self.sample_rate, float(self.sample_rate), self.num_codebooks, self.codebook_size, 1)


class MuLawCodec:
    """The tokenizer: ``[B, C, S]`` -> ``[B, num_codebooks, S]`` -> ``[B, 1, S]``."""

    def __init__(self, config: MuLawConfig, device: str):
        self.config = config
        self.info = config.describe(None)
        self.device = device

    def _level(self, x):
        mu, top = self.config.mu, self.config.codebook_size - 1
        companded = torch.sign(x) * torch.log1p(mu * x.abs().clamp(max=1.0)) / math.log1p(mu)
        return torch.round((companded + 1) / 2 * top).long().clamp(0, top)

    def _value(self, level):
        mu, top = self.config.mu, self.config.codebook_size - 1
        companded = level.float() / top * 2 - 1
        return torch.sign(companded) * torch.expm1(companded.abs() * math.log1p(mu)) / mu

    def encode(self, audio):
        residual = audio.to(self.device, torch.float32).mean(dim=1).clamp(-1, 1)
        codes = []
        for _ in range(self.config.num_codebooks):
            codes.append(self._level(residual))
            residual = residual - self._value(codes[-1])
        return torch.stack(codes, dim=1)

    def decode(self, codes):
        return self._value(codes.to(self.device)).sum(dim=1, keepdim=True)


def build(config: MuLawConfig, context) -> MuLawCodec:
    if not context.weights.is_random:
        raise WeightsError(f"{NAME} has no weights to load (got {context.weights.source!r})")
    return MuLawCodec(config, context.device)


@hookimpl
def register_tokenizers(register):
    register(NAME, build, config=MuLawConfig, needs_weights=False,
             description="per-sample residual mu-law codec: signal processing, no weights")
