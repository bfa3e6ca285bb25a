"""The decode loop for stage models that predict every codebook at once, with a delay each.

MusicGen's decoder does not write a stream token by token, frame-major, as Cadenza's own
transformer does: each step takes one token per codebook (their embeddings summed) and
predicts one token per codebook, codebook ``k`` lagging ``delays[k]`` steps behind (the "delay
pattern": codebook 1 of a frame is predicted knowing codebook 0 of that frame, and so on).
Frame-major order cannot express that - at the step that writes codebook 2 of frame ``t`` the
model has already seen codebook 0 of frame ``t + 1`` - so such a model declares its delays and
gets this loop instead; guidance, samplers, per-row generators, progress and prefixes behave
as in :func:`cadenza.core.engine.decode.decode_stage`.

Step ``s`` writes codebook ``k`` of frame ``s - delays[k]``. Where that frame does not exist
(before the codebook starts, after it ends) the model is fed :data:`NO_TOKEN` and maps it to its
own padding id; frames of the prefix are fed as they are, unsampled; the rest are sampled.
The model's side of the protocol:

- ``codebook_delays``: a tuple with one delay per written codebook (``(0, 1, 2, 3)``);
- ``prefill(request, steps)`` -> a state whose ``.logits`` ``[B, Q, V]`` predict step 0;
- ``step(state, tokens [B, Q])`` -> logits ``[B, Q, V]`` for the next step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from cadenza.core.components import StageRequest
from cadenza.core.engine.guidance import combine, default_generator, doubled_request, is_guided

NO_TOKEN = -1  # "no token of this codebook at this step": the model feeds its padding id


def step_frames(delays: tuple[int, ...], step: int) -> list[int]:
    """The frame each codebook writes at ``step`` (negative, or past the end: none)."""
    return [step - delay for delay in delays]


def decode_delayed(
    model: Any,
    request: StageRequest,
    num_frames: int,
    sampler: Callable[[torch.Tensor, Any], torch.Tensor],
    *,
    guidance_scale: float = 1.0,
    generator: Any = None,
    progress: Callable[[int], Any] | None = None,
    prefix: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generate ``num_frames`` new frames after ``prefix`` ``[B, Q, Tp]``: LongTensor ``[B, Q, num_frames]``."""
    delays = tuple(int(d) for d in model.codebook_delays)
    writes = model.layout.writes
    Q, B = writes.num_codebooks, request.batch_size
    if len(delays) != Q or min(delays) < 0:
        raise ValueError(f"codebook_delays must give one delay >= 0 per written codebook ({Q}), got {delays}")
    known = _checked_prefix(prefix, B, Q, writes.codebook_size)
    frames = known.shape[2] + num_frames
    steps = frames + max(delays)
    guided = is_guided(request, guidance_scale)
    run = doubled_request(request) if guided else request
    with torch.inference_mode():
        state = model.prefill(run, steps)
        logits = state.logits
        codes = torch.full((B, Q, frames), NO_TOKEN, dtype=torch.long, device=logits.device)
        codes[:, :, : known.shape[2]] = known.to(logits.device)
        if generator is None:
            generator = default_generator(logits.device)
        per_row = isinstance(generator, (list, tuple))
        if per_row and len(generator) != B:
            raise ValueError(f"got {len(generator)} generators for a batch of {B}")
        for step in range(steps):
            tokens = torch.full((B, Q), NO_TOKEN, dtype=torch.long, device=logits.device)
            new = [k for k, f in enumerate(step_frames(delays, step)) if known.shape[2] <= f < frames]
            if new:
                step_logits = combine(logits, B, guidance_scale) if guided else logits.float()
            for k, frame in enumerate(step_frames(delays, step)):
                if 0 <= frame < known.shape[2]:
                    tokens[:, k] = codes[:, k, frame]
                elif k in new:
                    tokens[:, k] = _sample(sampler, step_logits[:, k], generator, per_row)
                    codes[:, k, frame] = tokens[:, k]
                    if progress is not None:
                        progress(1)
            if step == steps - 1:
                break
            logits = model.step(state, tokens.repeat(2, 1) if guided else tokens)
    return codes[:, :, known.shape[2]:].contiguous()


def _sample(sampler: Callable, logits: torch.Tensor, generator: Any, per_row: bool) -> torch.Tensor:
    if per_row:
        return torch.cat([sampler(logits[r : r + 1], g).reshape(1) for r, g in enumerate(generator)]).long()
    return sampler(logits, generator).reshape(-1).long()


def _checked_prefix(prefix: torch.Tensor | None, batch: int, codebooks: int, vocab: int) -> torch.Tensor:
    if prefix is None:
        return torch.zeros(batch, codebooks, 0, dtype=torch.long)
    if prefix.dim() != 3 or prefix.shape[0] != batch or prefix.shape[1] != codebooks:
        raise ValueError(f"prefix must be [{batch}, {codebooks}, T] written tokens, got {list(prefix.shape)}")
    if prefix.dtype.is_floating_point or (prefix.numel() and (int(prefix.min()) < 0 or int(prefix.max()) >= vocab)):
        raise ValueError(f"prefix tokens must be integers in [0, {vocab})")
    return prefix.long()
