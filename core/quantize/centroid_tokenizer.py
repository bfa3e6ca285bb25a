"""What every k-means semantic tokenizer shares: swapping in fitted centroids and saving.

A tokenizer mixing this in is an ``nn.Module`` with ``.config`` (an attrs config with a
``vocab_size`` field), a ``centroids`` buffer ``[vocab_size, D]`` and a ``component`` name.
``cadenza fit-kmeans`` uses :meth:`with_centroids` + ``save_pretrained`` to write the result.
"""

from __future__ import annotations

import attrs
import torch

from cadenza.core.engine.checkpoint import save_module
from cadenza.core.errors import WeightsError


class CentroidTokenizer:
    component: str = ""

    def with_centroids(self, centroids: torch.Tensor):
        """A copy using ``centroids`` ``[K, D]`` (``vocab_size`` becomes K), e.g. fitted by
        ``cadenza fit-kmeans``, ready for :meth:`save_pretrained`."""
        width = self.centroids.shape[1]
        if centroids.dim() != 2 or centroids.shape[1] != width:
            raise WeightsError(f"{self.component} centroids must be [K, {width}], got {tuple(centroids.shape)}")
        with torch.random.fork_rng(devices=[]):  # the random init is overwritten; leave the global RNG alone
            model = type(self)(attrs.evolve(self.config, vocab_size=int(centroids.shape[0])))
        model.centroids.copy_(centroids)
        return model.to(self.centroids.device).eval()

    def save_pretrained(self, folder):
        return save_module(self, folder, self.component)
