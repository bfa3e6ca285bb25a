"""``cadenza train --stage mulan``: contrastive audio-text training of the spec's ``mulan`` conditioner.

MusicLM's stages are conditioned on MuLan tokens: during stage training they come from the
*audio* embedding of each clip, at inference from the *text* embedding of the prompt. That only
works once MuLan's two towers map a clip and its description to nearby points, which is what
this command trains, on the user's own audio and captions:

* Data: ``--data`` is a ``.jsonl``/``.csv`` manifest of audio paths with captions
  (:mod:`cadenza.plugins.workflows.data_sources`). Items without a caption, and files libsndfile cannot read,
  are skipped and counted. An item's ``split`` field (``train``/``valid``) places it; otherwise
  :func:`~cadenza.plugins.workflows.data_sources.split_of` holds out a stable ``VALID_FRACTION`` of files.
  A ``.jsonl`` line may list other wordings of its caption in ``alt_captions`` (the corpus
  does): each training crop then gets one of all the wordings; validation uses ``caption``.
  Each example is a random crop of the model's ``clip_seconds`` (or ``--seconds``) read from
  the file (only that span is decoded), resampled to the model's rate and mixed to mono. The
  crop is seeded by ``(seed, epoch, index)``, so a run is reproducible and a resumed run reads
  exactly what an uninterrupted one would, however many loader workers there are. Captions are
  tokenised in the loader's collate.
* Global contrastive batch: every process embeds its shard of a micro-batch, the embeddings of
  all processes are gathered *with gradients* (:func:`gather_with_grad`) and each process
  computes the model's symmetric InfoNCE over the whole global batch, so an example has
  ``batch_size x processes - 1`` negatives whatever the number of processes; a two-process run
  with ``--batch-size 4`` takes the same steps as a one-process run with ``--batch-size 8``.
  Gradient accumulation adds micro-batches' gradients, not negatives (each micro-batch's loss
  is over its own global micro-batch).
* Optimisation: Accelerate (CPU when there is no GPU; DDP across processes; mixed precision),
  AdamW (no decay on biases, norms and the temperature), linear warm-up then cosine decay,
  gradient clipping, an optional EMA of the weights (exported when enabled).
* Run folder ``--out``::

      checkpoints/step-0000500/           a checkpoint in the layout of :mod:`cadenza.plugins.workflows.train.run_checkpoints`:
                                          config.json + model.safetensors (the raw weights, a weights
                                          folder), ema.safetensors, optimizer.pt, scheduler.pt,
                                          [scaler.pt], rng.pt (every process's RNG states) and
                                          state.json (step, examples seen, the arguments)
      checkpoints/latest                  name of the newest complete checkpoint (written after it)
      log.jsonl                           one JSON object per step and per validation
      export/                             config.json + model.safetensors: `weights:` for the conditioner
      summary.json                        data counts, final retrieval and token agreement figures

  Checkpoints are written through :func:`cadenza.core.files.atomic.write_folder` and the ``latest``
  pointer only after, so a killed run always leaves a loadable checkpoint; ``--resume`` continues
  from it exactly (same weights as an uninterrupted run).
* After training: the RVQ quantiser is fitted by k-means on the *audio* embeddings of training
  crops (the embeddings the stages will be trained on), then the model is saved to ``export/``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from cadenza.core.errors import CadenzaError, InputError
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
from cadenza.plugins.workflows.train.config import MulanTrainConfig
from cadenza.plugins.workflows.train.schedule import lr_factor
from cadenza.plugins.workflows.train.common import (
    QUANTIZER_STREAM,
    TRAIN_STREAM,
    GlobalBatches,
    crop_rng,
    load_state,
    param_groups,
    read_crop,
)
from cadenza.plugins.workflows.train.common import spread as _spread
from cadenza.plugins.workflows.train.ema import averaged_weights, load_ema, make_ema
from cadenza.plugins.workflows.train.loop import Optimisation, StepResult, Task, make_accelerator, run_steps
from cadenza.plugins.workflows.data_sources import list_items, split_of
from cadenza.core.components import BuildContext
from cadenza.core.spec.validate import load_pipeline
from cadenza.registry import get_registry
from cadenza.core.engine.checkpoint import load_state_into
from cadenza.core.spec.params import unstructure_config
from cadenza.core.files.atomic import write_text

if TYPE_CHECKING:
    import torch
    from torch.optim.swa_utils import AveragedModel

VALID_FRACTION = 0.05  # share of source files held out when the manifest does not say (data_sources.split_of)
MAX_EVAL_ITEMS = 512  # validation / final evaluation use at most this many clips (one similarity matrix)
KMEANS_ITERATIONS = 20
QUANTIZER_POINTS_PER_CODE = 4  # aim for this many embeddings per codebook entry when fitting the RVQ
MAX_QUANTIZER_POINTS = 65536
MAX_CROPS_PER_ITEM = 8
EXPORT = "export"
SUMMARY = "summary.json"
STATE_FORMAT = 2  # 1: everything in one state.pt; 2: the run_checkpoints layout
# Arguments a resumed run should share with the run it continues (others, e.g. --steps, may change).
RESUME_KEYS = ("batch_size", "grad_accum", "lr", "warmup_steps", "weight_decay", "ema_decay", "seconds", "seed")


# -- data -----------------------------------------------------------------------------------------

@attrs.frozen
class Clip:
    """A usable training pair: an audio file (its length and rate from the header) and its caption,
    plus other wordings of the same caption (``alt_captions``) that training draws from too."""

    path: Path
    caption: str
    frames: int
    rate: int
    alternatives: tuple[str, ...] = ()

    def caption_for(self, rng: Any) -> str:
        """The caption a training crop gets: any of the wordings, drawn by the crop's generator."""
        if not self.alternatives:
            return self.caption
        choice = int(rng.integers(len(self.alternatives) + 1))
        return self.caption if choice == 0 else self.alternatives[choice - 1]


@attrs.frozen
class DataReport:
    train: tuple[Clip, ...]
    valid: tuple[Clip, ...]
    listed: int
    no_caption: int
    unreadable: tuple[str, ...]

    def describe(self) -> str:
        parts = [f"{self.listed} items listed", f"{len(self.train)} train", f"{len(self.valid)} valid"]
        if self.no_caption:
            parts.append(f"{self.no_caption} skipped without a caption")
        if self.unreadable:
            names = ", ".join(Path(p).name for p in self.unreadable[:3]) + (", ..." if len(self.unreadable) > 3 else "")
            parts.append(f"{len(self.unreadable)} skipped as unreadable or empty ({names})")
        return ", ".join(parts)


def alternative_captions(item: Any) -> tuple[str, ...]:
    """An item's ``alt_captions`` (a list of text in its manifest line; the corpus writes them):
    more wordings of the caption, so the text tower learns the music, not one sentence pattern."""
    alternatives = item.extras.get("alt_captions", [])
    if not isinstance(alternatives, list) or not all(isinstance(a, str) for a in alternatives):
        raise InputError(f"{item.path}: 'alt_captions' must be a list of text, got {alternatives!r}")
    return tuple(a.strip() for a in alternatives if a.strip())


def read_data(source: str | Path, valid_fraction: float = VALID_FRACTION) -> DataReport:
    """The captioned, readable items of ``source``, split into train and valid; counts of the rest.

    No usable item at all is one InputError (a folder of audio has no captions: use a manifest).
    """
    import soundfile

    items = list_items(source)
    train, valid, unreadable, no_caption = [], [], [], 0
    for item in items:
        caption = (item.caption or "").strip()
        if not caption:
            no_caption += 1
            continue
        try:
            info = soundfile.info(str(item.path))
        except (RuntimeError, OSError, soundfile.LibsndfileError):  # type: ignore[attr-defined]
            unreadable.append(str(item.path))
            continue
        if info.frames <= 0 or info.samplerate <= 0:
            unreadable.append(str(item.path))
            continue
        clip = Clip(item.path, caption, int(info.frames), int(info.samplerate), alternative_captions(item))
        split = item.extras.get("split")
        if split not in ("train", "valid"):
            split = split_of(item, valid_fraction)
        (valid if split == "valid" else train).append(clip)
    report = DataReport(tuple(train), tuple(valid), len(items), no_caption, tuple(unreadable))
    if not train:
        hint = (" (mulan training needs captions: a .jsonl/.csv manifest with 'audio' and 'caption')"
                if no_caption == len(items) else "")
        raise InputError(f"{source}: no usable training items: {report.describe()}{hint}")
    return report


class ClipDataset:
    """``dataset[(epoch, index)] -> (wave [samples], caption)``; ``epoch`` < 0 means a centre crop."""

    def __init__(self, clips: tuple[Clip, ...], rate: int, samples: int, seed: int, stream: int = TRAIN_STREAM):
        self.clips, self.rate, self.samples, self.seed, self.stream = clips, rate, samples, seed, stream

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: tuple[int, int]) -> tuple["torch.Tensor", str]:
        epoch, index = key
        clip = self.clips[index]
        if epoch < 0:  # evaluation: the centre and the main caption
            return read_crop(clip, self.rate, self.samples), clip.caption
        rng = crop_rng(self.seed, self.stream, epoch, index)
        return read_crop(clip, self.rate, self.samples, rng), clip.caption_for(rng)


class Collate:
    """Stacks waves and tokenises captions (in the loader's workers when there are any)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def __call__(self, rows: list[tuple["torch.Tensor", str]]) -> dict[str, Any]:
        import torch

        from cadenza.plugins.mulan.model import encode_texts

        captions = [caption for _, caption in rows]
        ids, mask = encode_texts(self.tokenizer, captions, "cpu")
        return {"wave": torch.stack([wave for wave, _ in rows]), "ids": ids, "mask": mask, "captions": captions}


# -- the global contrastive batch -----------------------------------------------------------------

def _gather_function():
    import torch
    import torch.distributed as dist

    class GatherWithGrad(torch.autograd.Function):
        """All-gather ``[B, D]`` from every process into ``[world x B, D]``, keeping the gradient path.

        Forward: ``dist.all_gather``. Backward: every process computed the same global loss, so the
        gradient of this process's rows is the sum over processes of their gradients for those rows
        (an all-reduce, then this process's slice). DDP then averages parameter gradients over the
        processes, which turns the ``world x`` sum back into the gradient of the one global loss.

        Why not ``accelerator.gather``: it is a plain collective, its output is detached, so
        nothing would flow back to the local tower. Why not ``torch.distributed.nn.functional.
        all_gather`` (which does carry gradients): its backward uses ``all_to_all`` on every backend
        but NCCL, and gloo -- the CPU backend -- has no ``all_to_all``; the all-reduce here works on
        every backend and costs nothing next to the towers (the tensors are a few rows of ``dim``).
        """

        @staticmethod
        def forward(ctx, x):
            x = x.contiguous()
            parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, x)
            ctx.rows, ctx.rank = x.shape[0], dist.get_rank()
            return torch.cat(parts)

        @staticmethod
        def backward(ctx, grad):
            grad = grad.contiguous().clone()
            dist.all_reduce(grad)
            return grad[ctx.rank * ctx.rows: (ctx.rank + 1) * ctx.rows]

    return GatherWithGrad


_GATHER = None


def gather_with_grad(x: "torch.Tensor", world: int) -> "torch.Tensor":
    """``[B, D]`` of this process -> ``[world x B, D]`` of all, rows of process 0 first (see above)."""
    global _GATHER
    if world == 1:
        return x
    if _GATHER is None:
        _GATHER = _gather_function()
    return _GATHER.apply(x)


def _towers(mulan: Any) -> "torch.nn.Module":
    """The module Accelerate wraps (DDP needs the towers to run inside one ``forward``)."""
    import torch

    class Towers(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.mulan = model

        def forward(self, wave, ids, mask):
            return self.mulan.audio(wave), self.mulan.text_embedding_from_ids(ids, mask)

    return Towers(mulan)


# -- metrics --------------------------------------------------------------------------------------

def retrieval_top1(audio_emb: "torch.Tensor", text_emb: "torch.Tensor", captions: list[str]) -> tuple[float, float]:
    """Text -> audio retrieval: ``(top-1 accuracy, chance)``.

    Each caption queries all clips; the hit counts when the best clip has that same caption (so
    clips sharing a caption are interchangeable answers). Chance is the mean share of clips with
    the query's caption.
    """
    best = (text_emb @ audio_emb.T).argmax(dim=1).tolist()
    hits = sum(captions[j] == captions[i] for i, j in enumerate(best))
    counts = {c: captions.count(c) for c in set(captions)}
    chance = sum(counts[c] for c in captions) / len(captions) ** 2
    return hits / len(captions), chance


def token_agreement(mulan: Any, audio_emb: "torch.Tensor", text_emb: "torch.Tensor") -> dict[str, float]:
    """How often the quantiser gives a clip and its caption the same tokens.

    ``first``: share of pairs whose first-codebook ids agree; ``chance_first``: the same for
    independent picks with the observed id frequencies; ``mean``: agreement averaged over every
    codebook; ``all``: pairs whose whole token sequences agree.
    """
    import torch

    a, t = mulan.quantizer.quantize(audio_emb), mulan.quantizer.quantize(text_emb)
    same = (a == t).float()
    k = mulan.quantizer.codebook_size
    pa = torch.bincount(a[:, 0], minlength=k).float() / len(a)
    pt = torch.bincount(t[:, 0], minlength=k).float() / len(t)
    return {"first": float(same[:, 0].mean()), "chance_first": float((pa * pt).sum()),
            "mean": float(same.mean()), "all": float(same.all(dim=1).float().mean())}


def embed_clips(mulan: Any, dataset: ClipDataset, keys: list[tuple[int, int]], batch_size: int,
                device: Any) -> tuple["torch.Tensor", "torch.Tensor", list[str]]:
    """Audio and caption embeddings ``[N, dim]`` (no gradients) of ``dataset[key]`` for each key."""
    import torch

    audio, text, captions = [], [], []
    with torch.no_grad():
        for lo in range(0, len(keys), batch_size):
            rows = [dataset[key] for key in keys[lo: lo + batch_size]]
            waves = torch.stack([w for w, _ in rows]).to(device)
            names = [c for _, c in rows]
            audio.append(mulan.audio(waves).float().cpu())
            text.append(mulan.text_embedding(names).float().cpu())
            captions += names
    return torch.cat(audio), torch.cat(text), captions


def evaluate(mulan: Any, dataset: ClipDataset, batch_size: int, device: Any) -> dict[str, float]:
    """Contrastive loss over (up to ``MAX_EVAL_ITEMS``) centre crops as one batch, retrieval, and
    the ``embeddings`` (audio, text) they came from."""
    import torch

    was_training = mulan.training
    mulan.eval()
    try:
        keys = [(-1, i) for i in _spread(len(dataset), MAX_EVAL_ITEMS)]
        audio, text, captions = embed_clips(mulan, dataset, keys, batch_size, device)
        with torch.no_grad():
            loss = float(mulan.contrastive_loss(audio.to(device), text.to(device)))
    finally:
        mulan.train(was_training)
    top1, chance = retrieval_top1(audio, text, captions)
    return {"loss": loss, "top1": top1, "chance": chance, "items": len(keys), "embeddings": (audio, text)}


# -- optimisation ---------------------------------------------------------------------------------

# -- checkpoints ----------------------------------------------------------------------------------

# -- the command ----------------------------------------------------------------------------------

def build_mulan(pipeline_source: str, registry: Any = None) -> tuple[Any, Any]:
    """``(resolved conditioner, model)`` of a spec whose conditioner is ``mulan`` (random init or its weights)."""
    pipeline = load_pipeline(pipeline_source, registry or get_registry())
    resolved = pipeline.conditioner
    if resolved is None or resolved.entry.name != "mulan":
        found = "has no conditioner" if resolved is None else f"has conditioner {resolved.entry.name!r}"
        raise CadenzaError(f"{pipeline_source}: --stage mulan trains a `mulan` conditioner, but the spec {found}")
    model = resolved.entry.build(resolved.config, BuildContext(weights=resolved.weights, device="cpu"))
    return resolved, model


def _run_args(config: MulanTrainConfig) -> dict[str, Any]:
    keys = ("pipeline", "data", "steps", "batch_size", "grad_accum", "lr", "warmup_steps", "weight_decay",
            "clip_grad", "ema_decay", "seconds", "valid_every", "checkpoint_every", "mixed_precision",
            "num_workers", "seed")
    return {k: getattr(config, k, None) for k in keys}


class _Log(RunLog):
    """``log.jsonl`` (main process only) plus the occasional line on stdout."""

    def __init__(self, path: Path, main: bool, resume_step: int | None):
        super().__init__(path, main)
        if resume_step is not None:
            self.rewind(resume_step)  # steps logged after the checkpoint by the interrupted run are redone
        else:
            self.reset()

    def record(self, **values: Any) -> None:
        self.write(values)

    def say(self, text: str) -> None:
        if self.enabled:
            print(text, flush=True)


def train_mulan(config: MulanTrainConfig) -> int:
    """Train the spec's ``mulan`` conditioner contrastively, fit its quantiser, export it (module doc)."""
    run = Path(config.out)
    report = read_data(config.data, config.valid_fraction or VALID_FRACTION)

    import torch
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader

    accelerator = make_accelerator(config.mixed_precision, config.grad_accum)
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    device = accelerator.device

    checkpoint = None
    if config.resume:
        found = latest_checkpoint(run)
        if found is None:
            raise InputError(f"--resume: no checkpoint in {run / CHECKPOINTS}")
        checkpoint = load_state(found)
    elif latest_checkpoint(run) is not None:
        raise InputError(f"{run} already holds a training run ({run / CHECKPOINTS}); pass --resume to continue it, "
                         "or choose another --out")

    resolved, mulan = build_mulan(config.pipeline)
    model_config = mulan.config
    params = json.loads(json.dumps(unstructure_config(model_config)))  # as config.json holds them
    if checkpoint is not None and checkpoint["config"] != params:
        raise InputError(f"--resume: the spec's mulan params differ from those of the run in {run}")
    rate = model_config.sample_rate
    samples = max(1, round(config.seconds * rate)) if config.seconds else model_config.clip_samples
    global_batch = config.batch_size * world
    if global_batch < 2:
        raise InputError("contrastive training needs at least 2 examples per global batch (--batch-size x processes)")
    if len(report.train) < global_batch:
        raise InputError(f"{config.data}: {len(report.train)} training items, fewer than one global batch of "
                         f"{global_batch} (--batch-size {config.batch_size} x {world} processes)")

    log = _Log(run / LOG, main, None if checkpoint is None else int(checkpoint["step"]))
    if main:
        remove_temp_folders(run)
    log.say(f"mulan: {report.describe()}; global batch {global_batch} ({config.batch_size} x {world} "
            f"process{'es' if world > 1 else ''}), {config.grad_accum} micro-batch(es) per step, "
            f"crops of {samples / rate:g} s at {rate} Hz")
    if not report.valid:
        log.say("mulan: no valid items (give manifest items \"split\": \"valid\" to hold some out): validation skipped")

    # -- model, optimiser, schedule -----------------------------------------------------------
    set_seed(config.seed, device_specific=True)  # dropout (MiniLM tower) differs per process, as DDP expects
    step, consumed = 0, 0
    if checkpoint is not None:
        load_state_into(mulan, checkpoint["model"], f"{run / CHECKPOINTS}")
        step = int(checkpoint["step"])
        saved_args = checkpoint.get("args", {})
        changed = [k for k in RESUME_KEYS if saved_args.get(k) != getattr(config, k, None)]
        if changed:
            log.say(f"mulan: warning: resuming with different {', '.join('--' + k.replace('_', '-') for k in changed)}: "
                    "the run will not match an uninterrupted one")
        # Data position in examples, so a different global batch still goes on from about the same place.
        consumed = int(checkpoint["examples"]) // global_batch
    mulan.train()
    towers = _towers(mulan)
    optimizer = torch.optim.AdamW(param_groups(towers, config.weight_decay), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor(config.warmup_steps, config.steps))
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
    # The scheduler is stepped by hand once per optimizer step (a prepared one steps once per process).
    towers, optimizer = accelerator.prepare(towers, optimizer)
    unwrapped = accelerator.unwrap_model(towers).mulan
    ema = make_ema(unwrapped, config.ema_decay, "ramp") if config.ema_decay > 0 else None
    if ema is not None and checkpoint is not None and checkpoint.get("ema") is not None:
        load_ema(ema, checkpoint["ema"], int(checkpoint.get("ema_updates", step)))

    if checkpoint is not None and accelerator.scaler is not None and checkpoint.get("scaler") is not None:
        accelerator.scaler.load_state_dict(checkpoint["scaler"])  # fp16 loss scale

    # -- data ---------------------------------------------------------------------------------
    if config.num_workers > 0:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizer is used in forked workers
    train_set = ClipDataset(report.train, rate, samples, config.seed)
    sampler = GlobalBatches(len(train_set), config.batch_size, world, rank, config.seed, start=consumed)
    loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=Collate(mulan.text.tokenizer),
                        num_workers=config.num_workers, generator=torch.Generator().manual_seed(config.seed))
    batches = iter(loader)  # before the RNG restore below: creating it must not shift the restored state
    if checkpoint is not None:
        states = checkpoint.get("rng") or []
        if len(states) == world:
            set_rng_state(states[rank], device)
        else:
            log.say(f"mulan: warning: the checkpoint has RNG states of {len(states)} processes, this run has {world}")
    valid_set = ClipDataset(report.valid, rate, samples, config.seed) if report.valid else None

    start, start_consumed = step, consumed

    def checkpoint_now(step: int) -> None:
        consumed = start_consumed + (step - start) * config.grad_accum  # micro-batches of every step so far
        rngs = gather_rng_states(accelerator)  # every process's, in rank order
        if main:
            folder = write_checkpoint(
                run, step, config={"component": resolved.entry.name, "config": params},
                model=unwrapped.state_dict(), ema=None if ema is None else ema.state_dict(),
                optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                scaler=None if accelerator.scaler is None else accelerator.scaler.state_dict(), rngs=rngs,
                state={"format": STATE_FORMAT, "examples": consumed * global_batch, "global_batch": global_batch,
                       "epoch": consumed // sampler.per_epoch, "processes": world,
                       "args": _run_args(config)})
            log.say(f"mulan: step {step}: checkpoint {folder}")
        accelerator.wait_for_everyone()

    # -- training -----------------------------------------------------------------------------
    log_every = max(1, min(50, config.steps // 20))
    started = time.monotonic()

    def loss_of(batch: dict[str, Any]) -> tuple["torch.Tensor", dict[str, Any]]:
        audio, text = towers(batch["wave"].to(device), batch["ids"].to(device), batch["mask"].to(device))
        audio_all = gather_with_grad(audio.float(), world)
        text_all = gather_with_grad(text.float(), world)
        return unwrapped.contrastive_loss(audio_all, text_all), {"global_batch": len(audio_all)}  # the global micro-batch

    def record(result: StepResult) -> None:
        step, loss_value, lr, batch = result.step, result.loss, result.lr, result.stats[-1]["global_batch"]
        scale = float(unwrapped.logit_scale.detach().exp())
        log.record(step=step, loss=loss_value, lr=lr, grad_norm=result.grad_norm,
                   inverse_temperature=scale, global_batch=batch, processes=world,
                   seconds=round(time.monotonic() - started, 3))
        if step % log_every == 0 or step == config.steps:
            log.say(f"mulan: step {step}/{config.steps}  loss {loss_value:.4f} (chance {math.log(batch):.3f}, "
                    f"global batch {batch})  lr {lr:.2e}  1/T {scale:.1f}")

    def validate(step: int) -> None:
        if valid_set is None:
            return
        if main:
            metrics = evaluate(unwrapped, valid_set, config.batch_size, device)
            metrics.pop("embeddings")
            log.record(step=step, **{f"valid_{k}": v for k, v in metrics.items()})
            log.say(f"mulan: step {step}: valid loss {metrics['loss']:.4f}, text->audio top-1 "
                    f"{metrics['top1']:.3f} (chance {metrics['chance']:.3f}, {metrics['items']} clips)")
        accelerator.wait_for_everyone()

    task = Task(model=towers, batches=batches, loss=loss_of, record=record, validate=validate,
                checkpoint=checkpoint_now, valid_every=config.valid_every, checkpoint_every=config.checkpoint_every)
    step = run_steps(task, Optimisation(accelerator, optimizer, scheduler, config.grad_accum, config.clip_grad,
                                        ema, unwrapped), start, config.steps)
    del task
    del batches  # stops the loader's workers

    # -- quantiser and export (main process) -----------------------------------------------------
    if main:
        _finish(unwrapped, ema, report, train_set, valid_set, config, run, device, log, step)
    accelerator.wait_for_everyone()
    if world > 1:
        accelerator.end_training()
    return 0


def _finish(mulan: Any, ema: "AveragedModel | None", report: DataReport, train_set: ClipDataset, valid_set: ClipDataset | None,
            config: MulanTrainConfig, run: Path, device: Any, log: _Log, step: int) -> None:
    """Load the EMA weights, fit the RVQ on audio embeddings of training crops, export, summarise."""
    if ema is not None:
        mulan.load_state_dict(averaged_weights(ema))
    mulan.eval()
    k = mulan.quantizer.codebook_size
    n = len(train_set)
    crops = max(1, min(MAX_CROPS_PER_ITEM, math.ceil(QUANTIZER_POINTS_PER_CODE * k / n)))
    items = _spread(n, max(1, MAX_QUANTIZER_POINTS // crops))
    fit_set = ClipDataset(train_set.clips, train_set.rate, train_set.samples, config.seed, stream=QUANTIZER_STREAM)
    keys = [(c, i) for i in items for c in range(crops)]
    log.say(f"mulan: fitting the quantiser ({mulan.quantizer.num_quantizers} x {k}) on the audio embeddings of "
            f"{len(keys)} training crops")
    audio, _, _ = embed_clips(mulan, fit_set, keys, max(config.batch_size, 32), device)
    mulan.fit_quantizer(audio.to(device), iterations=KMEANS_ITERATIONS)
    if len(audio) < k:
        log.say(f"mulan: note: {len(audio)} audio embeddings for {k} codebook entries: some entries are duplicates")

    train_metrics = evaluate(mulan, train_set, max(config.batch_size, 32), device)
    a, t = train_metrics.pop("embeddings")
    agreement = token_agreement(mulan, a.to(device), t.to(device))
    valid_metrics = None
    if valid_set is not None:
        valid_metrics = evaluate(mulan, valid_set, max(config.batch_size, 32), device)
        valid_metrics.pop("embeddings")

    export = mulan.save_pretrained(run / EXPORT)
    summary = {"steps": step, "data": {"listed": report.listed, "train": len(report.train),
                                             "valid": len(report.valid), "no_caption": report.no_caption,
                                             "unreadable": len(report.unreadable)},
               "weights": "ema" if ema is not None else "final", "train": train_metrics, "valid": valid_metrics,
               "quantizer": {"embeddings": len(audio), "crops_per_item": crops, "token_agreement": agreement},
               "export": str(export)}
    write_text(run / SUMMARY, json.dumps(summary, indent=2) + "\n")
    log.say(f"mulan: training clips: text->audio top-1 {train_metrics['top1']:.3f} (chance {train_metrics['chance']:.3f})"
            + (f"; valid {valid_metrics['top1']:.3f} (chance {valid_metrics['chance']:.3f})" if valid_metrics else ""))
    log.say(f"mulan: quantiser fitted on {len(audio)} audio embeddings; clip/caption first-token agreement "
            f"{agreement['first']:.3f} (chance {agreement['chance_first']:.3f})")
    log.say(f"mulan: exported {export}: set the spec's conditioner `weights: {export.resolve()}` "
            f"(or `cadenza export --run mulan={run}`)")
    sys.stdout.flush()
