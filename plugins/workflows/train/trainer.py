"""The stage trainer: one cascade stage, trained on a token cache with Hugging Face Accelerate.

The same command runs on a CPU, one GPU, or several processes: ``accelerate launch
--num_processes N -m cadenza.core.cli.main train ...`` on GPUs; on CPUs (gloo) ``torchrun
--nproc_per_node N -m cadenza.core.cli.main train ...`` or ``accelerate launch --multi_gpu
--num_processes N ...`` (accelerate's ``--cpu`` flag alone starts a single process unless MPI
is set up). ``--batch-size`` is per process and per micro-batch, so one optimizer step sees
``batch_size * processes * grad_accum`` examples; only the main process writes the run folder.

Optimisation: AdamW, linear warm-up then cosine decay to 0 (a ``LambdaLR`` counted in
optimizer steps), gradient-norm clipping, and an EMA of the weights
(:mod:`cadenza.plugins.workflows.train.ema`, torch's ``AveragedModel`` at a fixed decay;
``--ema-decay 0`` turns it off). Conditioning
dropout (what classifier-free guidance contrasts against) is the stage model's own
``cond_dropout``, set in the spec's ``params:`` like its other hyper-parameters.

A run folder holds::

    RUN/run.json                      what is trained: spec, stage, layout, args, cache
    RUN/log.jsonl                     one JSON object per line: train steps, validation, checkpoints
    RUN/checkpoints/step-0000500/     a complete checkpoint (written to a temp folder, then renamed)
        config.json, model.safetensors    the raw weights (a weights folder a spec can name)
        ema.safetensors                   the EMA (AveragedModel state: n_averaged + module.*)
        optimizer.pt, scheduler.pt        state dicts (torch.load(weights_only=True) reads them)
        scaler.pt                         fp16 gradient scaler, when there is one
        rng.pt                            per-process RNG states: torch/CUDA tensors, python/numpy as lists
        state.json                        step, data position, spec, layout, args, cache fingerprint
    RUN/checkpoints/latest            the name of the newest complete checkpoint (moved last)
    RUN/export/                       the final EMA (or raw) weights: config.json + model.safetensors

Checkpoints are written, found and read by :mod:`cadenza.plugins.workflows.train.run_checkpoints` (shared with
the MuLan trainer).

``--resume`` continues from ``latest`` exactly: same step, schedule, data order (see
:mod:`cadenza.plugins.workflows.train.stage_data`) and RNG, so it ends with the weights of an uninterrupted run.
A killed run never leaves a checkpoint that fails to load: a folder only appears, by rename,
once complete, and ``latest`` moves after it; temp folders are removed on resume. Resuming
with another stage, layout, model params, cache or a setting in :data:`STRICT_ARGS` is one
line, and so is resuming a finished (exported) run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from cadenza.core.files.atomic import write_text
from cadenza.core.errors import InputError
from cadenza.plugins.workflows.train.run_checkpoints import (
    CHECKPOINTS,
    LOG,
    STATE_FILE,
    RunLog,
    checkpoint_name,
    gather_rng_states,
    latest_checkpoint,
    read_checkpoint,
    read_state,
    remove_temp_folders,
    set_rng_state,
    write_checkpoint,
)
from cadenza.plugins.workflows.train.run_checkpoints import LATEST as LATEST  # re-exported for callers
from cadenza.plugins.workflows.train.schedule import lr_factor
from cadenza.plugins.workflows.train.config import TrainConfig
from cadenza.plugins.workflows.train.ema import load_ema, make_ema
from cadenza.plugins.workflows.train.loop import Optimisation, StepResult, Task, make_accelerator, run_steps
from cadenza.core.spec.schema import spec_to_dict
from cadenza.plugins.workflows.train.stage_data import check_cache
from cadenza.plugins.workflows.prepare.token_cache import TokenCache
from cadenza.core.spec.validate import load_pipeline
from cadenza.registry import get_registry
from cadenza.core.components import BuildContext
from cadenza.core.spec.params import unstructure_config
from cadenza.core.engine.checkpoint import load_state_into, save_checkpoint
from cadenza.plugins.workflows.train.stage_data import StageDataset, StreamBatches, cache_fingerprint, to_request, valid_batches
from cadenza.core.layout import StageLayout
from cadenza.plugins.workflows.train.stage_data import collate

EXPORT = "export"
RUN_FILE = "run.json"

# Arguments a resumed run must share with its checkpoint (they change the result).
STRICT_ARGS = ("steps", "batch_size", "grad_accum", "lr", "warmup_steps", "weight_decay", "clip_grad",
               "ema_decay", "seconds", "conditioning", "mixed_precision", "seed", "num_processes")
ARG_NAMES = ("pipeline", "stage", "cache", "out", "steps", "batch_size", "grad_accum", "lr", "warmup_steps",
             "weight_decay", "clip_grad", "ema_decay", "seconds", "conditioning", "valid_every",
             "checkpoint_every", "mixed_precision", "num_workers", "seed")

StepHook = Callable[[int, dict[str, Any]], None]


# ---- arguments and what they select ----------------------------------------------------------

@attrs.frozen
class Setup:
    """Everything decided before a model is built (and every one-line check made)."""

    pipeline: Any
    stage: Any  # ResolvedStage
    cache: Any  # TokenCache
    plan: Any  # StagePlan
    spec: dict[str, Any]


def setup(config: TrainConfig) -> Setup:
    """Load the spec and check the stage and its cache (the config checked its own values when made)."""
    pipeline = load_pipeline(config.pipeline, get_registry())
    names = [s.spec.name for s in pipeline.stages]
    if config.stage not in names:
        raise InputError(f"{config.pipeline}: no stage {config.stage!r}; its stages are {', '.join(names)} "
                         "(or 'mulan' to train the conditioner)")
    stage = pipeline.stages[names.index(config.stage)]
    cache = TokenCache(config.cache)
    plan = check_cache(cache, pipeline, config.stage, seconds=config.seconds, conditioning=config.conditioning)
    return Setup(pipeline, stage, cache, plan, spec_to_dict(pipeline.spec))


def build_stage(stage: Any) -> Any:
    """The stage model through its registry entry: random init or the stage's ``weights:`` (fine-tuning)."""
    context = BuildContext(weights=stage.model.weights or BuildContext().weights, device="cpu", layout=stage.layout)
    return stage.model.entry.build(stage.model.config, context).train()


def model_config(stage: Any, module: Any) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint: loadable by the component's factory (``build_module``)."""
    config = getattr(module, "config", stage.model.config)
    return {"component": stage.model.entry.name, "config": unstructure_config(config), "layout": stage.layout.to_dict()}


def _loss_module():
    import torch.nn.functional as F
    from torch import nn

    class StageLoss(nn.Module):
        """The stage model with ``forward`` = its training loss, so DDP sees the whole pass."""

        def __init__(self, stage: nn.Module):
            super().__init__()
            self.stage = stage

        def forward(self, request: Any, written: Any) -> Any:
            loss = getattr(self.stage, "loss", None)
            if loss is not None:
                return loss(request, written)
            logits = self.stage(request, written)[:, :-1]
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), written.reshape(-1))

    return StageLoss


# ---- the accelerator -------------------------------------------------------------------------

# ---- the loop --------------------------------------------------------------------------------

def train(config: TrainConfig, on_step: StepHook | None = None) -> dict[str, Any]:
    """Train ``config.stage`` (see the module docstring); returns a summary. ``on_step(step, record)``
    runs on every process after each optimizer step (and its checkpoint)."""
    import torch
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader

    s = setup(config)
    run = Path(config.out)
    accelerator = make_accelerator(config.mixed_precision, config.grad_accum)
    main, rank, procs = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    device = accelerator.device
    layout, plan = s.stage.layout, s.plan
    global_batch = config.batch_size * procs
    train_args = {k: getattr(config, k, None) for k in ARG_NAMES}
    train_args.update(seconds=plan.seconds, conditioning=plan.conditioning, num_processes=procs,
                      global_batch=global_batch)
    fingerprint = cache_fingerprint(s.cache.folder)

    # -- where to start --------------------------------------------------------------------
    resume_from = latest_checkpoint(run) if config.resume else None
    state: dict[str, Any] = {}
    if resume_from is not None:
        state = read_state(resume_from)
        _check_resumable(state, s, train_args, fingerprint, resume_from)
    elif not config.resume and latest_checkpoint(run) is not None:
        raise InputError(f"{run} already holds checkpoints: pass --resume to continue it, or choose another --out")
    start = int(state.get("step", 0))
    if start >= config.steps and (run / EXPORT / "config.json").exists():
        raise InputError(f"{run} already finished ({start} of {config.steps} steps, exported to {run / EXPORT}); "
                         "train more in a new --out with the spec's weights: pointing at the export")

    set_seed(config.seed, device_specific=True)
    stage_module = build_stage(s.stage)
    config_json = model_config(s.stage, stage_module)
    saved = read_checkpoint(resume_from) if resume_from is not None else None
    if saved is not None:
        load_state_into(stage_module, saved.model, str(resume_from))
    wrapper = _loss_module()(stage_module)
    optimizer = torch.optim.AdamW(wrapper.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config.warmup_steps, config.steps))
    wrapper, optimizer = accelerator.prepare(wrapper, optimizer)  # the scheduler counts optimizer steps itself
    stage_module = accelerator.unwrap_model(wrapper).stage
    ema = None
    if config.ema_decay > 0:
        ema = make_ema(stage_module, config.ema_decay, "fixed")
    if saved is not None:
        optimizer.load_state_dict(saved.optimizer)
        scheduler.load_state_dict(saved.scheduler)
        if ema is not None:
            if saved.ema is None:
                raise InputError(f"{resume_from}: no ema.safetensors (the run was trained with --ema-decay 0)")
            load_ema(ema, saved.ema)  # copied onto its device
        if accelerator.scaler is not None and saved.scaler is not None:
            accelerator.scaler.load_state_dict(saved.scaler)

    dataset = StageDataset(s.cache, layout, plan, config.seed)
    micro = start * config.grad_accum
    sampler = StreamBatches(plan.train, config.batch_size, procs, rank, config.seed, start=micro)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=config.num_workers,
                        collate_fn=_Collate(layout), generator=torch.Generator().manual_seed(config.seed))
    valid = valid_batches(plan.valid, config.batch_size, procs, rank)

    log = RunLog(run / LOG, main)
    if main:
        run.mkdir(parents=True, exist_ok=True)
        (run / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        remove_temp_folders(run)
        if resume_from is not None:
            log.rewind(start)
        else:
            log.reset()
        write_text(run / RUN_FILE, json.dumps({
            "stage": s.stage.spec.name, "spec": s.spec, "layout": layout.to_dict(), "model": config_json,
            "args": train_args, "cache": {"folder": str(s.cache.folder), "fingerprint": fingerprint},
            "finished": False}, indent=2) + "\n")
    tokens_per_step = dataset.written_tokens * global_batch * config.grad_accum
    params = sum(p.numel() for p in stage_module.parameters())
    say = _Say(main)
    say(f"training stage {s.stage.spec.name!r} ({s.stage.model.entry.name}, {params:,} parameters) on "
        f"{len(plan.train)} clips ({len(plan.valid)} valid{', ' + str(plan.skipped) + ' too short' if plan.skipped else ''}), "
        f"{plan.seconds:g} s crops, conditioning {plan.conditioning or 'none'}, global batch {global_batch}"
        f" x {config.grad_accum} accumulation, {procs} process(es) on {device}"
        + (f"; resuming at step {start} from {resume_from.name}" if resume_from is not None else ""))
    for warning in plan.warnings:
        say(f"warning: {warning}")
    if not plan.valid:
        say("no validation clips in the cache (valid split empty): training without validation loss")

    def evaluate(module: Any) -> float | None:
        if not plan.valid:
            return None
        was_training = module.training
        module.eval()
        total = torch.zeros(2, device=device, dtype=torch.float64)
        devices = [device] if getattr(device, "type", "") == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices), accelerator.autocast():
            for keys in valid:
                request, written = to_request(_Collate(layout)([dataset[k] for k in keys]), device)
                loss = _loss_of(module, request, written)
                total += torch.stack([loss.double() * written.numel(), torch.tensor(float(written.numel()),
                                                                                     device=device, dtype=torch.float64)])
        module.train(was_training)
        total = accelerator.reduce(total, "sum")
        return float(total[0] / total[1]) if total[1] > 0 else None

    def checkpoint(step: int) -> None:
        rngs = gather_rng_states(accelerator)
        position = sampler.position(step * config.grad_accum)
        if main:
            write_checkpoint(
                run, step, config=config_json, model=stage_module.state_dict(),
                ema=None if ema is None else ema.state_dict(), optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                scaler=None if accelerator.scaler is None else accelerator.scaler.state_dict(), rngs=rngs,
                state={"data": position, "stage": s.stage.spec.name, "spec": s.spec, "layout": layout.to_dict(),
                       "model": config_json, "args": train_args,
                       "cache": {"folder": str(s.cache.folder), "fingerprint": fingerprint},
                       "versions": _versions()})
            log.write({"step": step, "checkpoint": f"{CHECKPOINTS}/{checkpoint_name(step)}"})
        accelerator.wait_for_everyone()

    if saved is not None:
        set_rng_state(saved.rngs[rank], device)

    from tqdm import tqdm

    bar = tqdm(total=config.steps, initial=start, desc=f"train {s.stage.spec.name}", unit="step", file=sys.stderr,
               dynamic_ncols=True, disable=None if main else True)
    say.bar = None if bar.disable else bar
    iterator = iter(loader)
    last = {"loss": None, "valid_loss": None, "valid_loss_ema": None}
    speed, step_record = None, {}

    def loss_of(batch: Any) -> tuple[Any, dict[str, Any]]:
        request, written = to_request(batch, device)
        return wrapper(request, written), {}

    def record(result: StepResult) -> None:
        nonlocal speed, step_record
        loss_value = float(accelerator.reduce(torch.stack(result.losses).mean(), "mean"))
        rate = tokens_per_step / max(result.seconds, 1e-9)
        speed = rate if speed is None else 0.9 * speed + 0.1 * rate
        step_record = {"step": result.step, "loss": round(loss_value, 6), "lr": result.lr,
                       "tokens_per_s": round(rate, 1), "seconds": round(result.seconds, 4),
                       **sampler.position(result.step * config.grad_accum)}
        if result.grad_norm is not None:
            step_record["grad_norm"] = round(result.grad_norm, 6)
        last["loss"] = loss_value
        log.write(step_record)

    def validate(step: int) -> None:
        v = evaluate(stage_module)
        if v is None:
            return
        v_ema = evaluate(ema.module) if ema is not None else None
        last.update(valid_loss=v, valid_loss_ema=v_ema)
        entry = {"step": step, "valid_loss": round(v, 6)}
        if v_ema is not None:
            entry["valid_loss_ema"] = round(v_ema, 6)
        log.write(entry)
        say(f"step {step}/{config.steps}: loss {last['loss']:.4f}, valid {v:.4f}"
            + (f" (EMA {v_ema:.4f})" if v_ema is not None else ""), quiet_with_bar=True)

    def checkpoint_and_say(step: int) -> None:
        checkpoint(step)
        say(f"step {step}/{config.steps}: loss {last['loss']:.4f}, {speed:,.0f} tokens/s; "
            f"checkpoint {checkpoint_name(step)}", quiet_with_bar=True)

    def after(step: int) -> None:
        postfix = {"loss": f"{last['loss']:.4f}", "lr": f"{step_record['lr']:.2e}", "tok_s": f"{speed:,.0f}"}
        if last["valid_loss"] is not None:
            postfix["valid"] = f"{last['valid_loss']:.4f}"
        bar.set_postfix(postfix, refresh=False)
        bar.update(1)
        if on_step is not None:
            on_step(step, step_record)

    task = Task(model=wrapper, batches=iterator, loss=loss_of, record=record, validate=validate,
                checkpoint=checkpoint_and_say, valid_every=config.valid_every,
                checkpoint_every=config.checkpoint_every, validate_last=True, after=after)
    step = start
    wrapper.train()
    try:
        step = run_steps(task, Optimisation(accelerator, optimizer, scheduler, config.grad_accum, config.clip_grad,
                                            ema, stage_module), start, config.steps)
    finally:
        bar.close()
        del task, iterator

    export = run / EXPORT
    if main:
        target = ema.module if ema is not None else stage_module
        if hasattr(target, "save_pretrained"):
            target.save_pretrained(export)
        else:
            save_checkpoint(export, target.state_dict(), config_json)
        summary = {"stage": s.stage.spec.name, "steps": step, "global_batch": global_batch,
                   "grad_accum": config.grad_accum, "num_processes": procs, "loss": last["loss"],
                   "valid_loss": last["valid_loss"], "valid_loss_ema": last["valid_loss_ema"],
                   "export": str(export)}
        info = json.loads((run / RUN_FILE).read_text())
        write_text(run / RUN_FILE, json.dumps({**info, "finished": True, "summary": summary}, indent=2) + "\n")
        log.write({"step": step, "export": EXPORT})
        say(f"done: {step} steps, loss {last['loss']:.4f}" if last["loss"] is not None else f"done: {step} steps")
        say(f"exported {'EMA' if ema is not None else 'final'} weights to {export}")
    accelerator.wait_for_everyone()
    return {"steps": step, "global_batch": global_batch, "num_processes": procs, "loss": last["loss"],
            "valid_loss": last["valid_loss"], "valid_loss_ema": last["valid_loss_ema"], "export": str(export)}


class _Collate:
    """``collate`` bound to a layout (a picklable callable for DataLoader workers)."""

    def __init__(self, layout: Any):
        self.layout = layout

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return collate(items, self.layout)


class _Say:
    """Status lines on the main process (through tqdm when a bar is showing)."""

    def __init__(self, main: bool):
        self.main, self.bar = main, None

    def __call__(self, message: str, quiet_with_bar: bool = False) -> None:
        if not self.main:
            return
        if self.bar is not None:
            if not quiet_with_bar:
                self.bar.write(message, file=sys.stderr)
            return
        print(message, file=sys.stderr, flush=True)


def _loss_of(module: Any, request: Any, written: Any) -> Any:
    import torch.nn.functional as F

    loss = getattr(module, "loss", None)
    if loss is not None:
        return loss(request, written)
    logits = module(request, written)[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), written.reshape(-1))


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("cadenza", "torch", "accelerate"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def _check_resumable(state: dict[str, Any], s: Setup, train_args: dict[str, Any], fingerprint: str,
                     folder: Path) -> None:
    """One line when the checkpoint was made for another stage, spec, cache or settings."""
    where = f"cannot resume from {folder}"
    if state.get("stage") != s.stage.spec.name:
        raise InputError(f"{where}: it trains stage {state.get('stage')!r}, not {s.stage.spec.name!r}")

    try:
        saved = StageLayout.from_dict(state["layout"])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{where}: unreadable layout in {STATE_FILE}") from None
    diffs = s.stage.layout.differences(saved)
    if diffs:
        raise InputError(f"{where}: the spec's stage layout changed: {'; '.join(diffs)}".replace("in the weights", "in the checkpoint"))
    saved_stage = next((x for x in state.get("spec", {}).get("stages", []) if x.get("name") == s.stage.spec.name), {})
    current = next(x for x in s.spec["stages"] if x["name"] == s.stage.spec.name)
    for key in ("model", "params", "weights"):
        if saved_stage.get(key) != current.get(key):
            raise InputError(f"{where}: the stage's {key} changed in the spec "
                             f"({saved_stage.get(key)!r} in the checkpoint, {current.get(key)!r} now)")
    if state.get("cache", {}).get("fingerprint") != fingerprint:
        raise InputError(f"{where}: the token cache differs from the one it was trained on "
                         f"({state.get('cache', {}).get('folder')})")
    saved_args = state.get("args", {})
    changed = [f"{k} {saved_args.get(k)!r} -> {train_args.get(k)!r}" for k in STRICT_ARGS
               if saved_args.get(k) != train_args.get(k)]
    if changed:
        raise InputError(f"{where}: settings differ from the checkpoint's ({', '.join(changed)}); "
                         "resume with the same ones, or start a new --out")
