"""Residual vector quantisation of embeddings: MusicLM's MuLan tokens, reusable by any plugin.

MusicLM conditions its stages on MuLan embeddings quantised by a residual VQ of 12 codebooks of
1024 entries: stage 1 picks the nearest entry to the embedding, each further stage quantises
what the earlier ones left over, so ``ids [B, Q]`` describe the embedding coarse-to-fine and
``dequantize`` sums the picked entries. Discrete ids are what a token-prefix stage embeds.

The codebooks are buffers, not parameters: they are fitted by k-means (:meth:`ResidualVQ.fit`,
stage by stage on the residuals, with the project's k-means in :mod:`cadenza.core.quantize.kmeans`),
not by gradient descent, and they travel in the owner's state dict (its safetensors file).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cadenza.core.quantize import kmeans
class ResidualVQ(nn.Module):
    """``num_quantizers`` codebooks of ``codebook_size`` entries over ``dim``-wide vectors."""

    def __init__(self, dim: int, num_quantizers: int, codebook_size: int):
        super().__init__()
        self.dim, self.num_quantizers, self.codebook_size = dim, num_quantizers, codebook_size
        # Random init for unit-norm inputs: stage q's entries have norm ~ 2^-q, roughly the size of
        # what is left after q stages. Fitting replaces them; random ones only keep ids meaningful
        # (deterministic, in range) before a fit.
        scale = torch.tensor([2.0 ** -q for q in range(num_quantizers)]).view(-1, 1, 1)
        codebooks = torch.randn(num_quantizers, codebook_size, dim) / math.sqrt(dim) * scale
        self.register_buffer("codebooks", codebooks)

    def _stages(self, num_quantizers: int | None) -> int:
        n = self.num_quantizers if num_quantizers is None else int(num_quantizers)
        if not 1 <= n <= self.num_quantizers:
            raise ValueError(f"num_quantizers must be in 1..{self.num_quantizers}, got {n}")
        return n

    @torch.no_grad()
    def quantize(self, embeddings: torch.Tensor, num_quantizers: int | None = None) -> torch.Tensor:
        """``[B, dim]`` -> ids ``[B, n]`` int64 in ``[0, codebook_size)``; ``n`` defaults to all stages."""
        if embeddings.dim() != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"quantize takes [batch, {self.dim}] embeddings, got {tuple(embeddings.shape)}")
        residual = embeddings.to(self.codebooks)
        ids = []
        for q in range(self._stages(num_quantizers)):
            picked = kmeans.assign(residual, self.codebooks[q])
            residual = residual - self.codebooks[q][picked]
            ids.append(picked)
        return torch.stack(ids, dim=1)

    def dequantize(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, n]`` (the first ``n`` stages) -> the summed codebook entries ``[B, dim]``."""
        if ids.dim() != 2 or not 1 <= ids.shape[1] <= self.num_quantizers:
            raise ValueError(f"dequantize takes ids [batch, 1..{self.num_quantizers}], got {tuple(ids.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.codebook_size):
            raise ValueError(f"ids must be in [0, {self.codebook_size})")
        ids = ids.to(self.codebooks.device)
        out = self.codebooks.new_zeros(ids.shape[0], self.dim)
        for q in range(ids.shape[1]):
            out = out + self.codebooks[q][ids[:, q]]
        return out

    def reconstruct(self, embeddings: torch.Tensor, num_quantizers: int | None = None) -> torch.Tensor:
        """``dequantize(quantize(x, n))``: what the first ``n`` stages keep of ``x``."""
        return self.dequantize(self.quantize(embeddings, num_quantizers))

    @torch.no_grad()
    def fit(self, embeddings: torch.Tensor, iterations: int = 20, seed: int = 0) -> ResidualVQ:
        """k-means initialisation from a batch ``[N, dim]``: stage q is fitted to the residuals
        the fitted stages before it leave. More stages then leave less error (up to the data's
        own limit). Deterministic for a given ``seed``; returns ``self``."""
        if embeddings.dim() != 2 or embeddings.shape[1] != self.dim or len(embeddings) == 0:
            raise ValueError(f"fit takes a non-empty [N, {self.dim}] batch, got {tuple(embeddings.shape)}")
        residual = embeddings.detach().to(self.codebooks).float()
        for q in range(self.num_quantizers):
            centroids = kmeans.fit_kmeans(residual, self.codebook_size, batch_size=len(residual),
                                          epochs=iterations, seed=seed + q)
            self.codebooks[q].copy_(centroids)
            residual = residual - centroids[kmeans.assign(residual, centroids)]
        return self
