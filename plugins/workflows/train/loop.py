"""The optimizer-step loop the audio trainers share, and the accelerator it runs on.

A trainer describes what it trains as a :class:`Task` (its prepared model, its batches, the loss
of one micro-batch, and what to do to log, validate and checkpoint a step) and hands it to
:func:`run_steps` with its :class:`Optimisation`. The loop owns what must be the same
everywhere for a resumed run to match an uninterrupted one: gradient accumulation through
Accelerate, gradient-norm clipping on the step that syncs, one scheduler step per optimizer step
(none when an fp16 overflow skipped the step), the EMA update after it, and the order of
record, validation and checkpoint. Used by the stage trainer, the MuLan trainer and the instrument
classifier's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from cadenza.core.errors import InputError


def make_accelerator(mixed_precision: str, grad_accum: int) -> Any:
    """An Accelerator on the GPU when there is one, else the CPU; one line for fp16 on a CPU."""
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        # One process may train several times (tests, notebooks): start from a fresh state.
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    cpu = not torch.cuda.is_available()
    if cpu and mixed_precision == "fp16":
        raise InputError("--mixed-precision fp16 needs a GPU; on a CPU use bf16 or no")
    return Accelerator(gradient_accumulation_steps=grad_accum, mixed_precision=mixed_precision, cpu=cpu)


@attrs.frozen
class StepResult:
    """One optimizer step as the loop saw it: what a trainer logs."""

    step: int
    lr: float  # the rate the step was taken with
    losses: list[Any]  # one detached loss tensor per micro-batch
    stats: list[dict[str, Any]]  # what ``Task.loss`` returned beside each loss
    grad_norm: float | None  # before clipping; None when clipping is off
    seconds: float  # wall time of the step

    @property
    def loss(self) -> float:
        """This process's mean micro-batch loss."""
        return sum(float(x) for x in self.losses) / len(self.losses)


@attrs.frozen
class Task:
    """What one trainer trains, in the terms :func:`run_steps` needs."""

    model: Any  # the prepared module: accumulation and clipping act on it
    batches: Iterator[Any]  # endless micro-batches, already at the run's data position
    loss: Callable[[Any], tuple[Any, dict[str, Any]]]  # micro-batch -> (loss tensor, stats)
    record: Callable[[StepResult], None]  # log one step
    validate: Callable[[int], None]  # validate after step n (every process calls it)
    checkpoint: Callable[[int], None]  # checkpoint after step n (every process calls it)
    valid_every: int  # 0: never
    checkpoint_every: int  # 0: only at the last step
    validate_last: bool = False  # also validate after the last step
    after: Callable[[int], None] | None = None  # last of all for step n (progress bars, hooks)


@attrs.frozen
class Optimisation:
    """The optimizer side of a run; ``ema`` (an AveragedModel or None) follows ``averaged``."""

    accelerator: Any
    optimizer: Any
    scheduler: Any
    grad_accum: int
    clip_grad: float  # 0 turns clipping off
    ema: Any = None
    averaged: Any = None  # the unwrapped module the EMA averages


def run_steps(task: Task, optimisation: Optimisation, start: int, steps: int) -> int:
    """Optimizer steps ``start + 1 .. steps`` of ``task``; returns the last step taken."""
    o = optimisation
    accelerator = o.accelerator
    step = start
    while step < steps:
        tick = time.perf_counter()
        losses, stats, grad_norm, lr = [], [], None, o.scheduler.get_last_lr()[0]
        for _ in range(o.grad_accum):
            batch = next(task.batches)
            with accelerator.accumulate(task.model):
                loss, extra = task.loss(batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and o.clip_grad > 0:
                    grad_norm = float(accelerator.clip_grad_norm_(task.model.parameters(), o.clip_grad))
                o.optimizer.step()
                o.optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
            stats.append(extra)
        if not accelerator.optimizer_step_was_skipped:
            o.scheduler.step()
        step += 1
        if o.ema is not None:
            o.ema.update_parameters(o.averaged)
        task.record(StepResult(step, lr, losses, stats, grad_norm, time.perf_counter() - tick))
        last = step == steps
        if (task.valid_every and step % task.valid_every == 0) or (task.validate_last and last):
            task.validate(step)
        if (task.checkpoint_every and step % task.checkpoint_every == 0) or last:
            task.checkpoint(step)
        if task.after is not None:
            task.after(step)
    return step
