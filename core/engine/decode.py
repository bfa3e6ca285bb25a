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
from cadenza.core.engine.delayed_decode import decode_delayed
from cadenza.core.engine.guidance import combine, default_generator, doubled_request, is_guided

Sampler = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def guided_logits(model: Any, request: StageRequest, written: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Teacher-forced logits ``[B, N + 1, V]`` with guidance applied.

    At scale 1 (or without conditioning) this is exactly ``model.forward``: guidance must not
    perturb an unguided run. Used by tests and by anyone scoring sequences under guidance.
    """
    if not is_guided(request, guidance_scale):
        return model.forward(request, written).float()
    B = request.batch_size
    return combine(model.forward(doubled_request(request), written.repeat(2, 1)), B, guidance_scale)


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
    prefix: torch.Tensor | None = None,
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

    ``prefix`` ``[B, Q, Tp]``: written tokens that are already there (the codes of a
    continuation's prime, or the tail of the previous long-form window). They are fed to the
    model as if it had written them (after ``prefill``, one ``step`` each; teacher-forced
    without the cache, to both halves under guidance) and the ``num_frames`` new frames follow
    them. Only the new frames are returned; the prefix costs no sampling and no progress.

    ``generator`` may also be a sequence of ``B`` generators, one per row: each row is then
    sampled with its own generator (``sampler(logits[i:i+1], generator[i])``), so a row's
    tokens do not depend on which other rows share its batch.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if getattr(model, "codebook_delays", None) is not None:  # all codebooks per step, each delayed (MusicGen)
        return decode_delayed(model, request, num_frames, sampler, guidance_scale=guidance_scale,
                              generator=generator, progress=progress, prefix=prefix)
    Q = model.layout.writes.num_codebooks
    total = num_frames * Q
    B = request.batch_size
    guided = is_guided(request, guidance_scale)
    run = doubled_request(request) if guided else request
    known = _flat_prefix(model, prefix, B)
    with torch.inference_mode():
        if use_cache:
            state = model.prefill(run, known.shape[1] + total)
            logits = state.logits
            for j in range(known.shape[1]):
                logits = model.step(state, known[:, j].repeat(2) if guided else known[:, j])
        else:
            written = known.to(_device(model, request))
            written = written.repeat(2, 1) if guided else written
            logits = model.forward(run, written)[:, -1]
        out = torch.empty(B, total, dtype=torch.long, device=logits.device)
        if generator is None:
            generator = default_generator(logits.device)
        per_row = isinstance(generator, (list, tuple))
        if per_row and len(generator) != B:
            raise ValueError(f"got {len(generator)} generators for a batch of {B}")
        for i in range(total):
            step_logits = combine(logits, B, guidance_scale) if guided else logits.float()
            if per_row:
                tokens = torch.cat([sampler(step_logits[r : r + 1], g).reshape(1) for r, g in enumerate(generator)])
                tokens = tokens.to(torch.long)
            else:
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


def _flat_prefix(model: Any, prefix: torch.Tensor | None, batch: int) -> torch.Tensor:
    """``prefix`` ``[B, Q, Tp]`` (or None) checked and flattened frame-major to ``[B, Tp * Q]``."""
    writes = model.layout.writes
    if prefix is None:
        return torch.zeros(batch, 0, dtype=torch.long)
    if prefix.dim() != 3 or prefix.shape[0] != batch or prefix.shape[1] != writes.num_codebooks:
        raise ValueError(f"prefix must be [{batch}, {writes.num_codebooks}, T] written tokens, got {list(prefix.shape)}")
    if prefix.dtype.is_floating_point or (prefix.numel() and (int(prefix.min()) < 0 or int(prefix.max()) >= writes.codebook_size)):
        raise ValueError(f"prefix tokens must be integers in [0, {writes.codebook_size})")
    return prefix.long().transpose(1, 2).reshape(batch, -1)


def _device(model: Any, request: StageRequest) -> torch.device:
    """Where written tokens live for the uncached path: the model's parameters, else the reads'."""
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    if request.reads:
        return request.reads[0].device
    return torch.device("cpu")
