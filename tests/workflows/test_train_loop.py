"""The trainers' shared step loop (``plugins/workflows/train/loop.py``) on a tiny regression: what it
calls when, gradient accumulation, clipping, the schedule and the EMA.

Resuming each real trainer through it exactly is pinned by their own tests (test_trainer.py,
test_train_mulan.py, tests/plugins/test_instrument_classifier.py)."""

from __future__ import annotations

import itertools

import pytest
import torch

from cadenza.core.errors import InputError
from cadenza.plugins.workflows.train.ema import make_ema
from cadenza.plugins.workflows.train.loop import Optimisation, Task, make_accelerator, run_steps


def setup(grad_accum: int, clip_grad: float, ema: bool = False):
    torch.manual_seed(0)
    accelerator = make_accelerator("no", grad_accum)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    model, optimizer = accelerator.prepare(model, optimizer)
    average = make_ema(model, 0.5, "ramp") if ema else None
    return accelerator, model, optimizer, scheduler, Optimisation(accelerator, optimizer, scheduler, grad_accum,
                                                                   clip_grad, average, model)


def batches():
    generator = torch.Generator().manual_seed(1)
    for _ in itertools.count():
        x = torch.randn(4, 3, generator=generator)
        yield x, x.sum(dim=1, keepdim=True) * 3


def task(model, calls: list, **schedule) -> Task:
    def loss(batch):
        x, y = batch
        return torch.nn.functional.mse_loss(model(x), y), {"rows": len(x)}

    return Task(model=model, batches=batches(), loss=loss,
                record=lambda r: calls.append(("record", r.step, len(r.losses), r.lr, r.grad_norm)),
                validate=lambda step: calls.append(("validate", step)),
                checkpoint=lambda step: calls.append(("checkpoint", step)),
                after=lambda step: calls.append(("after", step)), **schedule)


def test_each_step_records_then_validates_then_checkpoints_and_the_last_step_always_checkpoints():
    _, model, _, _, optimisation = setup(grad_accum=2, clip_grad=0)
    calls: list = []
    assert run_steps(task(model, calls, valid_every=2, checkpoint_every=3, validate_last=True),
                     optimisation, 0, 5) == 5
    kinds = [(c[0], c[1]) for c in calls]
    assert kinds == [("record", 1), ("after", 1), ("record", 2), ("validate", 2), ("after", 2),
                     ("record", 3), ("checkpoint", 3), ("after", 3), ("record", 4), ("validate", 4), ("after", 4),
                     ("record", 5), ("validate", 5), ("checkpoint", 5), ("after", 5)]
    records = [c for c in calls if c[0] == "record"]
    assert all(r[2] == 2 for r in records)  # one loss per micro-batch
    assert [r[3] for r in records] == pytest.approx([0.1 / (1 + s) for s in range(5)])  # the rate each step used
    assert all(r[4] is None for r in records)  # clipping off: no norm


def test_accumulated_micro_batches_make_one_optimizer_step_and_clipping_bounds_it():
    _, model, optimizer, scheduler, optimisation = setup(grad_accum=3, clip_grad=1e-3)
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    calls: list = []
    run_steps(task(model, calls, valid_every=0, checkpoint_every=0), optimisation, 0, 1)
    assert calls == [("record", 1, 3, pytest.approx(0.1), calls[0][4]), ("checkpoint", 1), ("after", 1)]
    assert calls[0][4] > 1e-3  # the norm before clipping
    moved = (torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm()
    assert float(moved) == pytest.approx(0.1 * 1e-3, rel=1e-4)  # SGD moved by lr x the clipped norm
    assert scheduler.last_epoch == 1 and optimizer.state_dict()["state"] == {}  # SGD without momentum: no state


def test_the_ema_follows_every_optimizer_step_and_starting_later_takes_only_the_rest():
    _, model, _, _, optimisation = setup(grad_accum=1, clip_grad=0, ema=True)
    calls: list = []
    assert run_steps(task(model, calls, valid_every=0, checkpoint_every=0), optimisation, 4, 7) == 7
    assert [c[1] for c in calls if c[0] == "record"] == [5, 6, 7]
    assert int(optimisation.ema.n_averaged) == 4  # the initial weights and three updates
    assert not torch.equal(optimisation.ema.module.weight, model.weight)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU takes fp16")
def test_fp16_on_a_cpu_is_one_line():
    with pytest.raises(InputError, match="fp16 needs a GPU"):
        make_accelerator("fp16", 1)
