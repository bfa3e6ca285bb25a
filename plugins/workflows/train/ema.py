"""The one exponential moving average of a model's weights every trainer keeps.

It is torch's :class:`torch.optim.swa_utils.AveragedModel` (a copy of the module whose
``update_parameters`` folds the live weights in, and whose state dict, ``n_averaged`` plus
``module.*``, is what ``ema.safetensors`` holds); only the decay schedule differs between
trainers, and that is this module's parameter:

* ``"fixed"`` (the stage trainer): the first update copies the weights, later ones blend at the
  fixed ``decay`` (torch's own ``get_ema_multi_avg_fn``).
* ``"ramp"`` (MuLan, the instrument classifier): the average starts from the weights it is made
  with, and the ``n``-th update blends at ``min(decay, (1 + n) / (10 + n))``, so the first averages
  are not dominated by the random initialisation. Float tensors blend as ``ema * d + w * (1 - d)``
  (in place, one tensor at a time: the arithmetic of the trainers' earlier EMA, so their averages
  are unchanged); integer buffers are copied.

Checkpoints written before the ramped trainers used this (plain state-dict keys, float32 values,
the update count as ``ema_updates`` in ``state.json``) are converted by :func:`load_ema`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch
    from torch.optim.swa_utils import AveragedModel

Schedule = Literal["fixed", "ramp"]
COUNT_KEY = "n_averaged"  # AveragedModel's count of the weights averaged so far
PREFIX = "module."  # AveragedModel's prefix of the averaged module's keys


def ramp_decay(decay: float, updates: int) -> float:
    """The decay of update number ``updates`` (1 for the first) of the ``"ramp"`` schedule."""
    return min(decay, (1 + updates) / (10 + updates))


class _RampAverage:
    """``multi_avg_fn`` of the ramp: ``num_averaged`` counts the initial weights, so update ``n``
    of the average is called with ``n`` weights already in it."""

    def __init__(self, decay: float):
        self.decay = decay

    def __call__(self, averaged: list["torch.Tensor"], current: list["torch.Tensor"], num_averaged: "torch.Tensor") -> None:
        d = ramp_decay(self.decay, int(num_averaged))
        for target, value in zip(averaged, current, strict=True):
            if target.is_floating_point():
                target.mul_(d).add_(value, alpha=1 - d)
            else:
                target.copy_(value)


def make_ema(module: Any, decay: float, schedule: Schedule) -> "AveragedModel":
    """An average of ``module`` (on its device) under ``schedule`` (see the module docstring).

    Make it from the unwrapped model, after ``accelerator.prepare``, so it lives where the weights do.
    """
    import torch
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    if schedule == "fixed":
        return AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    if schedule != "ramp":
        raise ValueError(f"unknown EMA schedule {schedule!r}")
    ema = AveragedModel(module, multi_avg_fn=_RampAverage(decay), use_buffers=True)
    with torch.no_grad():
        ema.update_parameters(module)  # the initial weights are the average's first member
    return ema


def is_old_layout(saved: dict[str, Any]) -> bool:
    """Whether ``saved`` (an ``ema.safetensors`` state dict) is the ramped trainers' earlier layout."""
    return COUNT_KEY not in saved


def from_old_layout(saved: dict[str, Any], updates: int) -> dict[str, Any]:
    """The AveragedModel state of an earlier ramped-EMA checkpoint: its plain keys under ``module.``,
    and ``updates`` (its ``ema_updates``) plus the initial weights as the count."""
    import torch

    return {COUNT_KEY: torch.tensor(updates + 1, dtype=torch.long), **{PREFIX + k: v for k, v in saved.items()}}


def load_ema(ema: "AveragedModel", saved: dict[str, Any], old_updates: int | None = None) -> None:
    """Restore ``ema`` from a checkpoint's ``ema.safetensors`` (copied onto the average's device and
    dtype). An earlier ramped-EMA checkpoint is converted first; ``old_updates`` is its
    ``ema_updates`` (needed only then)."""
    if is_old_layout(saved):
        if old_updates is None:
            raise ValueError("an EMA checkpoint without n_averaged needs its ema_updates")
        saved = from_old_layout(saved, old_updates)
    ema.load_state_dict(saved)


def averaged_weights(ema: "AveragedModel") -> dict[str, "torch.Tensor"]:
    """The averaged module's state dict (plain keys): what an export or a validation model loads."""
    return ema.module.state_dict()
