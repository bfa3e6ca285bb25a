"""``cadenza train --stage instrument``: train the instrument-family classifier of the ``instrument`` metric.

The ``instrument`` metric (and ``attributes``) names the lead family of any audio with the small
CNN of :mod:`cadenza.plugins.estimators.instrument`; this command trains it on a corpus that
``cadenza corpus`` rendered, whose manifest labels every clip with its lead ``instrument``:

* Data: ``--data`` is a corpus folder (its ``manifest.jsonl`` is read) or a ``.jsonl``/``.csv``
  manifest with ``audio`` and ``instrument`` fields. Items whose ``split`` is ``valid`` are
  validated on, ``test`` items are never touched (they are the corpus's held-out
  combinations), other items train; without a ``split``, a stable
  :data:`VALID_FRACTION` of files is held out. Items without an instrument and unreadable
  files are skipped and counted; an instrument outside the classifier's families is one line.
  Each example is a random ``--seconds`` crop (default :data:`DEFAULT_SECONDS`), resampled to
  the model's rate and mixed to mono, seeded by ``(seed, epoch, index)`` as in
  :mod:`cadenza.plugins.workflows.train.common`, so a run is reproducible and ``--resume`` continues exactly.
* Optimisation: Hugging Face Accelerate (CPU, one GPU, or several processes; DDP), AdamW (no
  decay on biases and norms), the shared warm-up + cosine schedule
  (:func:`cadenza.plugins.workflows.train.schedule.lr_factor`), gradient clipping, cross-entropy with a little
  label smoothing, an EMA of the weights (exported when enabled).
* Validation: accuracy and loss of the raw and the EMA weights on centre crops of the valid
  clips, every ``--valid-every`` steps and at the end.
* Run folder ``--out``::

      checkpoints/step-0000500/     a checkpoint in the layout of :mod:`cadenza.plugins.workflows.train.run_checkpoints`
      checkpoints/latest            the newest complete checkpoint (moved after it is written)
      log.jsonl                     one JSON object per step and per validation
      export/instrument_classifier.safetensors
                                    the final (EMA) weights, the model config in the metadata:
                                    the ``instrument`` metric's ``weights:``
      summary.json, summary.md      the command, data counts, final validation accuracy per family,
                                    confusions and the training log's summary
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from cadenza.core.errors import InputError
from cadenza.plugins.workflows.train.run_checkpoints import (
    CHECKPOINTS,
    LOG,
    RunLog,
    gather_rng_states,
    latest_checkpoint,
    remove_temp_folders,
    set_rng_state,
    write_checkpoint,
)
from cadenza.plugins.workflows.train.config import InstrumentTrainConfig
from cadenza.plugins.workflows.train.schedule import lr_factor
from cadenza.plugins.workflows.train.common import (
    TRAIN_STREAM,
    GlobalBatches,
    crop_rng,
    load_state,
    param_groups,
    read_crop,
)
from cadenza.plugins.workflows.train.ema import averaged_weights, load_ema, make_ema
from cadenza.plugins.workflows.train.loop import Optimisation, StepResult, Task, make_accelerator, run_steps
from cadenza.plugins.workflows.data_sources import list_items, split_of
from cadenza.plugins.estimators.instrument import ClassifierConfig, build_model
from cadenza.core.engine.checkpoint import load_state_into
from cadenza.core.spec.params import unstructure_config
from cadenza.core.files.atomic import write_text
from cadenza.plugins.estimators.instrument import save_classifier

if TYPE_CHECKING:
    import torch
    from torch.optim.swa_utils import AveragedModel

VALID_FRACTION = 0.05
DEFAULT_SECONDS = 3.0
LABEL_SMOOTHING = 0.05
EXPORT = "export"
EXPORT_FILE = "instrument_classifier.safetensors"
SUMMARY = "summary.json"
SUMMARY_MD = "summary.md"
STATE_FORMAT = 1
# Arguments that change what a run computes: resuming with another value would not continue it exactly.
RESUME_KEYS = ("batch_size", "grad_accum", "lr", "warmup_steps", "weight_decay", "clip_grad", "ema_decay", "seconds",
               "seed", "mixed_precision")
ARG_KEYS = ("data", "out", "steps", "batch_size", "grad_accum", "lr", "warmup_steps", "weight_decay", "clip_grad",
            "ema_decay", "seconds", "valid_every", "checkpoint_every", "mixed_precision", "num_workers", "seed")


# -- data -----------------------------------------------------------------------------------------

@attrs.frozen
class LabelledClip:
    """A usable example: an audio file (length and rate from its header) and its family's index."""

    path: Path
    label: int
    frames: int
    rate: int


@attrs.frozen
class CorpusData:
    train: tuple[LabelledClip, ...]
    valid: tuple[LabelledClip, ...]
    listed: int
    test: int
    unlabelled: int
    unreadable: tuple[str, ...]
    corpora: list[dict[str, Any]]  # the corpus.json summaries of the corpus folders the clips come from

    def describe(self) -> str:
        parts = [f"{self.listed} items listed", f"{len(self.train)} train", f"{len(self.valid)} valid"]
        if self.test:
            parts.append(f"{self.test} test (not used)")
        if self.unlabelled:
            parts.append(f"{self.unlabelled} skipped without an instrument")
        if self.unreadable:
            parts.append(f"{len(self.unreadable)} skipped as unreadable or empty")
        return ", ".join(parts)

    def fingerprint(self) -> str:
        """Which files train, with which labels: a resumed run must see the same ones."""
        text = "\n".join(f"{c.path.name}\t{c.label}" for c in self.train)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def corpus_info(folder: Path) -> dict[str, Any] | None:
    """How a ``cadenza corpus`` folder was made (its ``corpus.json``): seed, seconds, clips, SoundFont."""
    try:
        meta = json.loads((folder / "corpus.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != "cadenza-corpus":
        return None
    return {k: meta[k] for k in ("clips", "seconds", "seed", "sample_rate", "soundfont") if k in meta}


def manifest_of(source: str | Path) -> Path:
    """A corpus folder's ``manifest.jsonl``, or ``source`` itself when it is a manifest file."""
    source = Path(source)
    if source.is_dir():
        manifest = source / "manifest.jsonl"
        if not manifest.is_file():
            raise InputError(f"{source}: no manifest.jsonl (--data is a `cadenza corpus` folder or a manifest with "
                             "'audio' and 'instrument' fields)")
        return manifest
    return source


def read_corpus(source: str | Path, labels: tuple[str, ...]) -> CorpusData:
    """The labelled, readable items of ``source``, split into train and valid (test items set aside)."""
    import soundfile

    manifest = manifest_of(source)
    items = list_items(manifest)
    index = {name: i for i, name in enumerate(labels)}
    train, valid, unreadable, unlabelled, test = [], [], [], 0, 0
    for item in items:
        family = item.extras.get("instrument")
        if family is None or family == "":
            unlabelled += 1
            continue
        if family not in index:
            raise InputError(f"{manifest}: {item.path.name} has instrument {family!r}, not one of the classifier's "
                             f"{len(labels)} families ({', '.join(labels)})")
        split = item.extras.get("split")
        if split == "test":
            test += 1
            continue
        try:
            info = soundfile.info(str(item.path))
        except (RuntimeError, OSError, soundfile.LibsndfileError):  # type: ignore[attr-defined]
            unreadable.append(str(item.path))
            continue
        if info.frames <= 0 or info.samplerate <= 0:
            unreadable.append(str(item.path))
            continue
        clip = LabelledClip(item.path, index[family], int(info.frames), int(info.samplerate))
        if split not in ("train", "valid"):
            split = split_of(item, VALID_FRACTION)
        (valid if split == "valid" else train).append(clip)
    folders = dict.fromkeys(clip.path.parent.parent for clip in (*train, *valid))
    corpora = [info for folder in folders if (info := corpus_info(folder))]
    data = CorpusData(tuple(train), tuple(valid), len(items), test, unlabelled, tuple(unreadable), corpora)
    if not train:
        raise InputError(f"{source}: no usable training items: {data.describe()}")
    return data


class CropDataset:
    """``dataset[(epoch, index)] -> (wave [samples], label)``; ``epoch`` < 0 means the centre crop."""

    def __init__(self, clips: tuple[LabelledClip, ...], rate: int, samples: int, seed: int):
        self.clips, self.rate, self.samples, self.seed = clips, rate, samples, seed

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: tuple[int, int]) -> tuple["torch.Tensor", int]:
        epoch, index = key
        clip = self.clips[index]
        rng = crop_rng(self.seed, TRAIN_STREAM, epoch, index) if epoch >= 0 else None
        return read_crop(clip, self.rate, self.samples, rng), clip.label


def collate(rows: list[tuple["torch.Tensor", int]]) -> dict[str, "torch.Tensor"]:
    import torch

    return {"wave": torch.stack([w for w, _ in rows]), "label": torch.tensor([y for _, y in rows])}


# -- evaluation -----------------------------------------------------------------------------------

def evaluate(model: Any, dataset: CropDataset, batch_size: int, device: Any) -> dict[str, Any]:
    """Loss, accuracy and ``predictions`` (true, predicted) over the centre crops of every clip."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    pairs, total = [], 0.0
    try:
        with torch.no_grad():
            for lo in range(0, len(dataset), batch_size):
                batch = collate([dataset[(-1, i)] for i in range(lo, min(len(dataset), lo + batch_size))])
                logits = model(batch["wave"].to(device)).float()
                total += float(F.cross_entropy(logits, batch["label"].to(device), reduction="sum"))
                pairs += list(zip(batch["label"].tolist(), logits.argmax(dim=-1).cpu().tolist(), strict=True))
    finally:
        model.train(was_training)
    right = sum(t == p for t, p in pairs)
    return {"loss": total / max(1, len(pairs)), "accuracy": right / max(1, len(pairs)), "clips": len(pairs),
            "predictions": pairs}


def per_family(pairs: list[tuple[int, int]], labels: tuple[str, ...]) -> tuple[dict[str, float], dict[str, int]]:
    """Accuracy of each family present, and the confusions ``"true -> predicted": count``."""
    seen, right, wrong = Counter(), Counter(), Counter()
    for t, p in pairs:
        seen[t] += 1
        if t == p:
            right[t] += 1
        else:
            wrong[f"{labels[t]} -> {labels[p]}"] += 1
    accuracy = {labels[i]: round(right[i] / seen[i], 4) for i in range(len(labels)) if seen[i]}
    return accuracy, dict(wrong.most_common())


# -- the command ----------------------------------------------------------------------------------

def run_args(config: InstrumentTrainConfig) -> dict[str, Any]:
    values = {k: getattr(config, k, None) for k in ARG_KEYS}
    values["seconds"] = config.seconds or DEFAULT_SECONDS
    return values


def command_line(config: InstrumentTrainConfig) -> str:
    """The ``cadenza train`` command that reproduces this run (paths as they were given)."""
    values = run_args(config)
    parts = ["cadenza", "train", "--stage", "instrument", "--data", str(values.pop("data")),
             "--out", str(values.pop("out"))]
    for key, value in values.items():
        if value is not None:
            parts += [f"--{key.replace('_', '-')}", str(value)]
    return shlex.join(parts)


class _Log(RunLog):
    def say(self, text: str) -> None:
        if self.enabled:
            print(text, flush=True)


def train_instrument(config: InstrumentTrainConfig) -> int:
    """Train the instrument-family classifier and export its (EMA) weights (module doc)."""
    model_config = ClassifierConfig(seed=config.seed)  # the default architecture; the seed initialises it
    run = Path(config.out)
    data = read_corpus(config.data, model_config.labels)

    import torch
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader

    accelerator = make_accelerator(config.mixed_precision, config.grad_accum)
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    device = accelerator.device
    params = json.loads(json.dumps(unstructure_config(model_config)))
    saved_args = run_args(config)

    checkpoint = None
    if config.resume:
        found = latest_checkpoint(run)
        if found is None:
            raise InputError(f"--resume: no checkpoint in {run / CHECKPOINTS}")
        checkpoint = load_state(found)
        if checkpoint.get("config") != params:
            raise InputError(f"--resume: {found} holds a classifier with other params than this version builds")
        changed = [k for k in RESUME_KEYS if checkpoint.get("args", {}).get(k) != saved_args.get(k)]
        if changed:
            raise InputError(f"--resume: {found} was trained with other "
                             f"{', '.join('--' + k.replace('_', '-') for k in changed)}; resume with the same ones")
        if checkpoint.get("data") != data.fingerprint():
            raise InputError(f"--resume: the training items of {config.data} differ from those of the run in {run}")
        if int(checkpoint["step"]) >= config.steps and (run / EXPORT / EXPORT_FILE).exists():
            raise InputError(f"{run} already finished ({checkpoint['step']} of {config.steps} steps); "
                             "pass a larger --steps to train on")
    elif latest_checkpoint(run) is not None:
        raise InputError(f"{run} already holds a training run ({run / CHECKPOINTS}); pass --resume to continue it, "
                         "or choose another --out")

    rate = model_config.sample_rate
    seconds = saved_args["seconds"]
    samples = max(1, round(seconds * rate))
    global_batch = config.batch_size * world
    if len(data.train) < global_batch:
        raise InputError(f"{config.data}: {len(data.train)} training items, fewer than one global batch of "
                         f"{global_batch} (--batch-size {config.batch_size} x {world} processes)")

    log = _Log(run / LOG, main)
    if main:
        (run / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        remove_temp_folders(run)
        if checkpoint is not None:
            log.rewind(int(checkpoint["step"]))  # what the interrupted run logged after its checkpoint is redone
        else:
            log.reset()

    set_seed(config.seed, device_specific=True)
    model = build_model(model_config).train()
    n_params = sum(p.numel() for p in model.parameters())
    step, consumed = 0, 0
    if checkpoint is not None:
        load_state_into(model, checkpoint["model"], str(run / CHECKPOINTS))
        step = int(checkpoint["step"])
        consumed = int(checkpoint["examples"]) // global_batch
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config.warmup_steps, config.steps))
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
    # The scheduler is stepped by hand once per optimizer step.
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    ema = make_ema(unwrapped, config.ema_decay, "ramp") if config.ema_decay > 0 else None
    if ema is not None and checkpoint is not None:
        if checkpoint.get("ema") is None:
            raise InputError(f"--resume: the checkpoint in {run} has no EMA weights")
        load_ema(ema, checkpoint["ema"], int(checkpoint.get("ema_updates", step)))
    if checkpoint is not None and accelerator.scaler is not None and checkpoint.get("scaler") is not None:
        accelerator.scaler.load_state_dict(checkpoint["scaler"])

    train_set = CropDataset(data.train, rate, samples, config.seed)
    valid_set = CropDataset(data.valid, rate, samples, config.seed) if data.valid else None
    sampler = GlobalBatches(len(train_set), config.batch_size, world, rank, config.seed, start=consumed)
    loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=collate, num_workers=config.num_workers,
                        generator=torch.Generator().manual_seed(config.seed))
    batches = iter(loader)  # before the RNG restore: creating it must not shift the restored state
    if checkpoint is not None:
        states = checkpoint.get("rng") or []
        if len(states) != world:
            raise InputError(f"--resume: the checkpoint has the RNG states of {len(states)} processes, this run has "
                             f"{world}; resume with as many")
        set_rng_state(states[rank], device)
    ema_model = None
    if ema is not None and main and valid_set is not None:
        ema_model = build_model(model_config).to(device)

    log.say(f"instrument: {data.describe()}; {n_params:,} parameters, {len(model_config.labels)} families, global batch "
            f"{global_batch} ({config.batch_size} x {world} process{'es' if world > 1 else ''}) x {config.grad_accum} "
            f"micro-batch(es), crops of {seconds:g} s at {rate} Hz"
            + (f"; resuming at step {step}" if checkpoint is not None else ""))
    if valid_set is None:
        log.say("instrument: no valid items: validation skipped")

    def validate() -> dict[str, Any]:
        result = {}
        raw = evaluate(unwrapped, valid_set, max(config.batch_size, 32), device)
        result.update(valid_loss=round(raw["loss"], 6), valid_accuracy=round(raw["accuracy"], 4))
        if ema_model is not None:
            ema_model.load_state_dict(averaged_weights(ema))
            averaged = evaluate(ema_model, valid_set, max(config.batch_size, 32), device)
            result.update(valid_loss_ema=round(averaged["loss"], 6), valid_accuracy_ema=round(averaged["accuracy"], 4))
        return result

    start, start_consumed = step, consumed

    def checkpoint_now(step: int) -> None:
        consumed = start_consumed + (step - start) * config.grad_accum  # micro-batches of every step so far
        rngs = gather_rng_states(accelerator)
        if main:
            write_checkpoint(
                run, step, config={"component": "instrument-classifier", "config": params},
                model=unwrapped.state_dict(), ema=None if ema is None else ema.state_dict(),
                optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                scaler=None if accelerator.scaler is None else accelerator.scaler.state_dict(), rngs=rngs,
                state={"format": STATE_FORMAT, "examples": consumed * global_batch, "global_batch": global_batch,
                       "processes": world, "args": saved_args,
                       "data": data.fingerprint()})
        accelerator.wait_for_everyone()

    import torch.nn.functional as F

    log_every = max(1, min(50, config.steps // 20))
    started = time.monotonic()

    def loss_of(batch: dict[str, Any]) -> tuple["torch.Tensor", dict[str, Any]]:
        with accelerator.autocast():
            logits = model(batch["wave"].to(device)).float()
        labels = batch["label"].to(device)
        hits = int((logits.detach().argmax(dim=-1) == labels).sum())
        return F.cross_entropy(logits, labels, label_smoothing=LABEL_SMOOTHING), {"hits": hits, "seen": len(labels)}

    def record(result: StepResult) -> None:
        step, loss_value, lr = result.step, result.loss, result.lr
        accuracy = sum(s["hits"] for s in result.stats) / sum(s["seen"] for s in result.stats)
        entry = {"step": step, "loss": round(loss_value, 6), "accuracy": round(accuracy, 4), "lr": lr,
                 "seconds": round(time.monotonic() - started, 3)}
        if result.grad_norm is not None:
            entry["grad_norm"] = round(result.grad_norm, 6)
        log.write(entry)
        if step % log_every == 0 or step == config.steps:
            log.say(f"instrument: step {step}/{config.steps}  loss {loss_value:.4f}  batch accuracy {accuracy:.3f}  "
                    f"lr {lr:.2e}")

    def validate_now(step: int) -> None:
        if valid_set is None:
            return
        if main:
            result = validate()
            log.write({"step": step, **result})
            log.say(f"instrument: step {step}: valid accuracy {result['valid_accuracy']:.3f}"
                    + (f" (EMA {result['valid_accuracy_ema']:.3f})" if "valid_accuracy_ema" in result else "")
                    + f", loss {result['valid_loss']:.4f}")
        accelerator.wait_for_everyone()

    model.train()
    task = Task(model=model, batches=batches, loss=loss_of, record=record, validate=validate_now,
                checkpoint=checkpoint_now, valid_every=config.valid_every, checkpoint_every=config.checkpoint_every,
                validate_last=True)
    step = run_steps(task, Optimisation(accelerator, optimizer, scheduler, config.grad_accum, config.clip_grad,
                                        ema, unwrapped), start, config.steps)
    del task
    del batches  # stops the loader's workers

    if main:
        _finish(unwrapped, ema, data, valid_set, config, run, device, log, step, time.monotonic() - started)
    accelerator.wait_for_everyone()
    if world > 1:
        accelerator.end_training()
    return 0


def _finish(model: Any, ema: "AveragedModel | None", data: CorpusData, valid_set: CropDataset | None, config: InstrumentTrainConfig, run: Path,
            device: Any, log: _Log, step: int, elapsed: float) -> None:
    """Load the EMA weights, validate them, export the weights file and write the summaries."""
    if ema is not None:
        model.load_state_dict(averaged_weights(ema))
    model.eval()
    labels = model.config.labels
    valid = None
    if valid_set is not None:
        result = evaluate(model, valid_set, max(config.batch_size, 32), device)
        families, confusions = per_family(result.pop("predictions"), labels)
        valid = {"accuracy": round(result["accuracy"], 4), "loss": round(result["loss"], 4), "clips": result["clips"],
                 "per_family": families, "confusions": confusions}
    records = [json.loads(line) for line in (run / LOG).read_text().splitlines() if line.strip()]
    steps = [r for r in records if "loss" in r]
    tail = steps[-max(1, len(steps) // 10):]
    curve = [{k: r[k] for k in r if k.startswith("valid_") or k == "step"} for r in records if "valid_accuracy" in r]
    summary = {
        "command": command_line(config), "steps": step, "weights": "ema" if ema is not None else "final",
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": json.loads(json.dumps(unstructure_config(model.config))),
        "data": {"listed": data.listed, "train": len(data.train), "valid": len(data.valid), "test_unused": data.test,
                 "unlabelled": data.unlabelled, "unreadable": len(data.unreadable), "corpora": data.corpora},
        "train_last_tenth": {"steps": len(tail), "loss": round(sum(r["loss"] for r in tail) / len(tail), 4),
                             "batch_accuracy": round(sum(r["accuracy"] for r in tail) / len(tail), 4)},
        "train_seconds": round(elapsed, 1), "validation_curve": curve, "valid": valid,
        "export": f"{EXPORT}/{EXPORT_FILE}",
    }
    export = save_classifier(model, run / EXPORT / EXPORT_FILE, steps=step, command=summary["command"],
                             data=summary["data"], valid_accuracy=None if valid is None else valid["accuracy"])
    summary["export_bytes"] = export.stat().st_size
    write_text(run / SUMMARY, json.dumps(summary, indent=2) + "\n")
    write_text(run / SUMMARY_MD, summary_markdown(summary))
    if valid is not None:
        log.say(f"instrument: final {summary['weights']} weights: valid accuracy {valid['accuracy']:.3f} on "
                f"{valid['clips']} clips (chance {1 / len(labels):.3f})")
    log.say(f"instrument: exported {export}: the `instrument` metric's `weights: {export.resolve()}`")
    sys.stdout.flush()


def summary_markdown(summary: dict[str, Any]) -> str:
    """``summary.md``: the run as a page (docs/benchmarks/instrument_classifier.md is a copy)."""
    data, valid, cfg = summary["data"], summary["valid"], summary["config"]
    lines = ["# Instrument-family classifier", "",
             "The `instrument` metric's model (`cadenza.plugins.estimators.instrument`), trained with:", "",
             f"    {summary['command']}", ""]
    corpora = [c for c in data.get("corpora") or [] if {"clips", "seconds", "seed"} <= set(c)]
    if corpora:
        made = "; ".join(f"`cadenza corpus --n {c['clips']} --seconds {c['seconds']:g} --seed {c['seed']}` with "
                         f"SoundFont {c.get('soundfont', '?')}" for c in corpora)
        lines += [f"on clips rendered by {made}:"]
    lines += [f"{data['train']} train clips, {data['valid']} valid, {data['test_unused']} test clips left unused "
              f"({data['listed']} listed).", ""]
    lines += [f"Model: {summary['parameters']:,} parameters ({summary['export_bytes'] / 1024:.0f} kB safetensors), "
              f"log-mel {cfg['n_mels']} bands at {cfg['sample_rate']} Hz, conv channels "
              f"{', '.join(map(str, cfg['channels']))}; exported weights: {summary['weights']}.", "",
              f"Training: {summary['steps']} steps in {summary['train_seconds'] / 60:.1f} min; over the last "
              f"{summary['train_last_tenth']['steps']} steps loss {summary['train_last_tenth']['loss']:.3f} "
              f"(label smoothing {LABEL_SMOOTHING}), batch accuracy "
              f"{summary['train_last_tenth']['batch_accuracy']:.1%}.",
              ""]
    if summary["validation_curve"]:
        lines += ["| step | valid accuracy | EMA valid accuracy | valid loss |", "|---:|---:|---:|---:|"]
        for r in summary["validation_curve"]:
            ema = f"{r['valid_accuracy_ema']:.1%}" if "valid_accuracy_ema" in r else "-"
            lines.append(f"| {r['step']} | {r['valid_accuracy']:.1%} | {ema} | {r['valid_loss']:.3f} |")
        lines.append("")
    if valid:
        lines += [f"**Final validation accuracy ({summary['weights']} weights): {valid['accuracy']:.1%}** on "
                  f"{valid['clips']} clips (chance {1 / len(cfg['labels']):.1%}).", "",
                  "| family | valid accuracy |", "|---|---:|"]
        lines += [f"| {name} | {acc:.0%} |" for name, acc in valid["per_family"].items()]
        confusions = ", ".join(f"{k} {v}" for k, v in valid["confusions"].items()) or "none"
        lines += ["", f"Confusions (true -> predicted): {confusions}.", ""]
    lines += ["Accuracy on freshly rendered clips of another seed, next to the other estimators: "
              "[estimator accuracy](estimator_accuracy.md).", ""]
    return "\n".join(lines)
