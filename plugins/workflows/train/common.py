"""Pieces every audio trainer shares: reproducible random crops, the global batch order, the
optimiser's parameter groups, and reading a checkpoint back (the EMA of the weights every
trainer keeps is :mod:`cadenza.plugins.workflows.train.ema`).

Used by :mod:`cadenza.plugins.workflows.train.mulan` (the MuLan conditioner) and
:mod:`cadenza.plugins.workflows.train.instrument` (the instrument-family classifier), so both read their
data and resume the same way. Everything random here is a pure
function of ``(seed, stream, epoch, index)``: a resumed run, or one with a different number of
loader workers, sees exactly the crops and batches an uninterrupted one would.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cadenza.core.errors import InputError
from cadenza.plugins.workflows.train.run_checkpoints import read_checkpoint
from cadenza.core.audio.io import prepare

if TYPE_CHECKING:
    import torch


# -- data -----------------------------------------------------------------------------------------

def check_schedule_args(args: Any, every_low: int = 1) -> None:
    """One line for the first ``cadenza train`` schedule argument out of range (every trainer's).

    ``every_low``: the least ``--valid-every`` / ``--checkpoint-every`` the trainer accepts (MuLan
    takes 0 for "never").
    """
    checks = [
        (args.steps >= 1, f"--steps must be >= 1, got {args.steps}"),
        (args.batch_size >= 1, f"--batch-size must be >= 1, got {args.batch_size}"),
        (args.grad_accum >= 1, f"--grad-accum must be >= 1, got {args.grad_accum}"),
        (args.lr > 0 and math.isfinite(args.lr), f"--lr must be a positive number, got {args.lr}"),
        (args.warmup_steps >= 0, f"--warmup-steps must be >= 0, got {args.warmup_steps}"),
        (args.weight_decay >= 0, f"--weight-decay must be >= 0, got {args.weight_decay}"),
        (args.clip_grad >= 0, f"--clip-grad must be >= 0 (0 turns clipping off), got {args.clip_grad}"),
        (0 <= args.ema_decay < 1, f"--ema-decay must be in [0, 1) (0 turns the EMA off), got {args.ema_decay}"),
        (args.seconds is None or (args.seconds > 0 and math.isfinite(args.seconds)),
         f"--seconds must be positive, got {args.seconds}"),
        (args.valid_every >= every_low, f"--valid-every must be >= {every_low}, got {args.valid_every}"),
        (args.checkpoint_every >= every_low, f"--checkpoint-every must be >= {every_low}, got {args.checkpoint_every}"),
        (args.num_workers >= 0, f"--num-workers must be >= 0, got {args.num_workers}"),
        (args.seed >= 0, f"--seed must be >= 0, got {args.seed}"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)


def read_crop(clip: Any, rate: int, samples: int, rng: Any = None) -> "torch.Tensor":
    """A mono ``[samples]`` crop of ``clip`` (anything with ``path``, ``frames`` and ``rate``, as read
    from the file's header) at ``rate``: random when ``rng`` (a numpy Generator) is given, else the
    centre. Only the span needed is decoded; clips shorter than that are padded with silence at
    the end."""
    import soundfile
    import torch

    span = math.ceil(samples * clip.rate / rate)  # the crop, in the file's own samples
    start = 0
    if clip.frames > span:
        start = int(rng.integers(0, clip.frames - span + 1)) if rng is not None else (clip.frames - span) // 2
    try:
        data, _ = soundfile.read(str(clip.path), start=start, frames=span, dtype="float32", always_2d=True)
    except (RuntimeError, OSError, soundfile.LibsndfileError) as exc:  # type: ignore[attr-defined]
        raise InputError(f"{clip.path}: cannot read audio ({exc})") from None
    wave = prepare(torch.from_numpy(data.T.copy())[None], clip.rate, rate, 1)[0, 0]
    if wave.shape[-1] >= samples:
        return wave[:samples].contiguous()
    return torch.nn.functional.pad(wave, (0, samples - wave.shape[-1]))


def crop_rng(seed: int, stream: int, epoch: int, index: int) -> Any:
    """The numpy generator of one crop: a pure function of its coordinates (no shared state)."""
    import numpy as np

    return np.random.default_rng([seed, stream, epoch, index])


TRAIN_STREAM, QUANTIZER_STREAM, ORDER_STREAM = 0, 1, 2


class GlobalBatches:
    """An endless batch sampler of ``(epoch, index)`` keys for one process.

    Each epoch is a permutation of the training items seeded by ``(seed, epoch)``, cut into
    global batches of ``batch_size x world`` (a tail that fills no whole global batch is
    dropped); process ``rank`` takes slice ``rank`` of each. ``start`` is the number of global
    batches already consumed (the data position a checkpoint stores), so a resumed run goes on
    with exactly the batches an uninterrupted one would have seen next.
    """

    def __init__(self, count: int, batch_size: int, world: int, rank: int, seed: int, start: int = 0):
        self.count, self.batch_size, self.world, self.rank = count, batch_size, world, rank
        self.seed, self.start = seed, start
        self.per_epoch = count // (batch_size * world)
        if self.per_epoch < 1:
            raise ValueError("fewer items than one global batch")

    def order(self, epoch: int) -> list[int]:
        return crop_rng(self.seed, ORDER_STREAM, epoch, 0).permutation(self.count).tolist()

    def __iter__(self):
        position, epoch, order = self.start, None, None
        while True:
            e, b = divmod(position, self.per_epoch)
            if e != epoch:
                epoch, order = e, self.order(e)
            lo = (b * self.world + self.rank) * self.batch_size
            yield [(epoch, i) for i in order[lo: lo + self.batch_size]]
            position += 1


def spread(count: int, limit: int) -> list[int]:
    """``count`` indices, or ``limit`` evenly spread ones when there are more."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


# -- optimisation ---------------------------------------------------------------------------------

def param_groups(module: Any, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only (not biases, norm gains, the temperature)."""
    decay, plain = [], []
    for _, p in module.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else plain).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


# -- checkpoints ----------------------------------------------------------------------------------

def load_state(path: Path) -> dict[str, Any]:
    """A checkpoint of this trainer as one dict: its ``state.json`` values (step, examples, ...) with
    ``config`` (the model's params), ``model``, ``ema``, ``optimizer``, ``scheduler``, ``scaler``
    and ``rng`` (every process's states)."""
    saved = read_checkpoint(path)
    return {**saved.state, "config": saved.config.get("config"), "model": saved.model, "ema": saved.ema,
            "optimizer": saved.optimizer, "scheduler": saved.scheduler, "scaler": saved.scaler, "rng": saved.rngs}
