"""The autoregressive decode loop of one cascade stage: sampling and classifier-free guidance.

The loop lives in core, not in each stage model, so every stage-model plugin gets guidance,
every sampler, progress reporting and reproducible seeding for free: a model only provides
``forward`` (teacher forcing) and ``prefill``/``step`` (KV cache) that agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from cadenza.core.components import StageRequest

Sampler = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def _guided(request: StageRequest, guidance_scale: float) -> bool:
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
    return StageRequest(
        batch_size=2 * B,
        reads=tuple(r.repeat(2, *([1] * (r.dim() - 1))) for r in request.reads),
        conditioning=request.conditioning.repeat(2),
        drop_conditioning=drop,
    )


def combine(logits: torch.Tensor, batch: int, guidance_scale: float) -> torch.Tensor:
    """``uncond + scale * (cond - uncond)`` from a doubled batch (conditional rows first), in float32."""
    cond, uncond = logits[:batch].float(), logits[batch:].float()
    return uncond + guidance_scale * (cond - uncond)


def guided_logits(model: Any, request: StageRequest, written: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Teacher-forced logits ``[B, N + 1, V]`` with guidance applied.

    At scale 1 (or without conditioning) this is exactly ``model.forward``: guidance must not
    perturb an unguided run. Used by tests and by anyone scoring sequences under guidance.
    """
    if not _guided(request, guidance_scale):
        return model.forward(request, written).float()
    B = request.batch_size
    return combine(model.forward(doubled_request(request), written.repeat(2, 1)), B, guidance_scale)


def _default_generator(device: torch.device) -> torch.Generator:
    """A generator seeded from the global RNG, so ``torch.manual_seed`` alone reproduces a run."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
    return generator


def decode_stage(
    model: Any,
    request: StageRequest,
    num_frames: int,
    sampler: Sampler,
    *,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    progress: Callable[[int], Any] | None = None,
) -> torch.Tensor:
    """Generate ``num_frames`` frames of the stage's written stream: LongTensor ``[B, Q, num_frames]``.

    Tokens are produced one at a time, frame-major (frame 0 codebooks 0..Q-1, then frame 1, ...),
    which is the order the model was trained in. With ``guidance_scale != 1`` and conditioning,
    the batch is doubled (conditional rows, then null-conditioned rows) and the sampler sees
    ``uncond + scale * (cond - uncond)``; the chosen token is fed to both halves.

    ``sampler(logits [B, V] float32, generator) -> tokens [B]``. ``progress`` is called with 1
    after each token position (all rows advance together), so a tqdm with
    ``total=num_frames * Q`` tracks it. ``use_cache=False`` re-runs ``model.forward`` over the
    whole sequence every step: quadratic, kept as the reference the cache is checked against.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    Q = model.layout.writes.num_codebooks
    total = num_frames * Q
    B = request.batch_size
    guided = _guided(request, guidance_scale)
    run = doubled_request(request) if guided else request
    with torch.inference_mode():
        if use_cache:
            state = model.prefill(run, total)
            logits = state.logits
        else:
            written = torch.zeros(run.batch_size, 0, dtype=torch.long, device=_device(model, request))
            logits = model.forward(run, written)[:, -1]
        out = torch.empty(B, total, dtype=torch.long, device=logits.device)
        if generator is None:
            generator = _default_generator(logits.device)
        for i in range(total):
            step_logits = combine(logits, B, guidance_scale) if guided else logits.float()
            tokens = sampler(step_logits, generator).reshape(B).to(torch.long)
            out[:, i] = tokens
            if progress is not None:
                progress(1)
            if i == total - 1:
                break
            feed = tokens.repeat(2) if guided else tokens
            if use_cache:
                logits = model.step(state, feed)
            else:
                written = torch.cat([written, feed[:, None].to(written.device)], dim=1)
                logits = model.forward(run, written)[:, -1]
    return out.view(B, num_frames, Q).transpose(1, 2).contiguous()


def _device(model: Any, request: StageRequest) -> torch.device:
    """Where written tokens live for the uncached path: the model's parameters, else the reads'."""
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    if request.reads:
        return request.reads[0].device
    return torch.device("cpu")
