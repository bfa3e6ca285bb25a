"""Classifier-free guidance, shared by the decode loops: the doubled batch and the combination.

Guidance runs the conditional rows and the same rows with the null condition in one batch,
so it costs one (wider) forward per step instead of two sequential ones; the sampler then sees
``uncond + scale * (cond - uncond)``.
"""

from __future__ import annotations

import attrs
import torch

from cadenza.core.components import StageRequest


def is_guided(request: StageRequest, guidance_scale: float) -> bool:
    return guidance_scale != 1.0 and request.conditioning is not None


def doubled_request(request: StageRequest) -> StageRequest:
    """The batch twice: conditional rows, then the same rows with the null condition.

    Guidance runs both halves in one batch, so it costs one (wider) forward per token instead
    of two sequential ones.
    """
    B = request.batch_size
    ref = request.conditioning.values
    cond_drop = request.drop_conditioning
    if cond_drop is None:
        cond_drop = torch.zeros(B, dtype=torch.bool, device=ref.device)
    drop = torch.cat([cond_drop.to(ref.device, torch.bool).reshape(B), torch.ones(B, dtype=torch.bool, device=ref.device)])
    return attrs.evolve(request, batch_size=2 * B,
                        reads=tuple(r.repeat(2, *([1] * (r.dim() - 1))) for r in request.reads),
                        conditioning=request.conditioning.repeat(2), drop_conditioning=drop)


def combine(logits: torch.Tensor, batch: int, guidance_scale: float) -> torch.Tensor:
    """``uncond + scale * (cond - uncond)`` from a doubled batch (conditional rows first), in float32."""
    cond, uncond = logits[:batch].float(), logits[batch:].float()
    return uncond + guidance_scale * (cond - uncond)


def default_generator(device: torch.device) -> torch.Generator:
    """A generator seeded from the global RNG, so ``torch.manual_seed`` alone reproduces a run."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
    return generator
