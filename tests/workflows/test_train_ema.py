"""The trainers' one EMA (``plugins/workflows/train/ema.py``): both schedules, the checkpoint layout,
and checkpoints of the ramped trainers' earlier EMA resuming onto the same numbers."""

from __future__ import annotations

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from cadenza.plugins.workflows.train.ema import load_ema, make_ema, ramp_decay


def small_model() -> torch.nn.Module:
    """A float layer, a norm with running statistics and an integer buffer (``num_batches_tracked``)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4))


def train_a_little(model: torch.nn.Module, steps: int, seed: int) -> None:
    """Change every float tensor and the integer buffer, as a training step does."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        model(torch.randn(8, 5, generator=generator))  # running stats, num_batches_tracked
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=generator) * 0.1)


class EarlierEma:
    """The ramped trainers' EMA before they used AveragedModel, step for step (the reference the
    ramp must reproduce, and the writer of the earlier checkpoint layout)."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.state = {k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
                      for k, v in module.state_dict().items()}

    def update(self, module: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for key, value in module.state_dict().items():
                target = self.state[key]
                if target.is_floating_point():
                    target.mul_(d).add_(value.detach().float(), alpha=1 - d)
                else:
                    target.copy_(value)


def assert_same(averaged: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert averaged.keys() == reference.keys()
    for key in reference:
        assert torch.equal(averaged[key], reference[key]), key


def test_the_ramp_starts_low_and_reaches_the_decay():
    assert ramp_decay(0.999, 1) == pytest.approx(2 / 11)
    assert ramp_decay(0.999, 100) == pytest.approx(101 / 110)
    assert ramp_decay(0.9, 1000) == 0.9


def test_the_ramp_reproduces_the_earlier_ema_bit_for_bit():
    model = small_model()
    ema, reference = make_ema(model, 0.95, "ramp"), EarlierEma(model, 0.95)
    assert_same(ema.module.state_dict(), reference.state)  # the initial weights are the first member
    for step in range(30):
        train_a_little(model, 1, seed=step)
        ema.update_parameters(model)
        reference.update(model)
    assert_same(ema.module.state_dict(), reference.state)
    assert int(ema.n_averaged) == reference.updates + 1
    assert not torch.equal(ema.module.state_dict()["0.weight"], model.state_dict()["0.weight"])


def test_the_fixed_schedule_is_torchs_ema_with_its_checkpoint_layout():
    model = small_model()
    ema = make_ema(model, 0.9, "fixed")
    plain = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    assert int(ema.n_averaged) == 0  # the first update copies the weights
    for step in range(5):
        train_a_little(model, 1, seed=step)
        ema.update_parameters(model)
        plain.update_parameters(model)
    state = ema.state_dict()
    assert_same(state, plain.state_dict())
    assert int(state["n_averaged"]) == 5 and all(k == "n_averaged" or k.startswith("module.") for k in state)


def test_a_checkpoint_in_the_earlier_layout_resumes_onto_the_same_average():
    model = small_model()
    reference = EarlierEma(model, 0.95)
    for step in range(7):
        train_a_little(model, 1, seed=step)
        reference.update(model)
    # What the earlier trainers wrote: plain keys in ema.safetensors, the count as ema_updates in state.json.
    saved, updates = {k: v.clone() for k, v in reference.state.items()}, reference.updates

    resumed = make_ema(model, 0.95, "ramp")
    load_ema(resumed, saved, updates)
    assert_same(resumed.module.state_dict(), reference.state)
    for step in range(7, 12):
        train_a_little(model, 1, seed=step)
        resumed.update_parameters(model)
        reference.update(model)
    assert_same(resumed.module.state_dict(), reference.state)

    again = make_ema(model, 0.95, "ramp")  # and the layout written now resumes as it is
    load_ema(again, resumed.state_dict())
    assert_same(again.state_dict(), resumed.state_dict())
    with pytest.raises(ValueError, match="ema_updates"):
        load_ema(make_ema(model, 0.95, "ramp"), saved)
