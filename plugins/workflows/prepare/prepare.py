"""``cadenza prepare``: run a spec's tokenizers and conditioner once over a training set.

The result is a token cache (:mod:`cadenza.plugins.workflows.prepare.token_cache`): every clip's codec codes,
semantic ids and conditioning, so stage training never runs a codec. Only the spec's
tokenizer, semantic tokenizer and conditioner are built; no stage model is.

**Clips.** Items come from :func:`cadenza.plugins.workflows.data_sources.list_items` (a folder, sorted, or
a manifest, in its order). Each file is cut, at its own sample rate, into consecutive clips
of ``clip_seconds`` (``round(clip_seconds * rate)`` samples). The piece left over at the end
is kept as a shorter clip when it is at least half a clip long, else dropped. A file shorter
than a whole clip is one short clip when it is at least ``min(1 s, clip_seconds / 2)`` long;
a file shorter than that is skipped as too short. Every clip is then converted on its own
(cut first, then resampled), so a clip's tokens depend on that clip's audio alone.

**Shards.** The plan is made before anything is decoded, from each file's header
(``soundfile.info``: sample rate and length, cheap). Planned clips are numbered in item
order, and shard ``k`` holds planned clips ``[k * shard_size, (k + 1) * shard_size)``; a file
may span two shards. Files whose header cannot be read, or that are empty or too short, are
skipped at planning time. A file that passes planning but fails to decode later loses its
clips (so a shard can hold fewer than ``shard_size``); that is deterministic, so a rerun
plans and fills the same shards. The plan's digest, with the cache header and the settings,
is kept in ``prepare.json``; resuming into a folder prepared differently is refused.

**Resume.** Shards that :meth:`CacheWriter.shard_done` reports finished are skipped and the
files that only they need are not decoded again; the index is written at the end from every
shard's record file. Batches never cross a shard and start at its first clip, so the tokens
of a resumed run are bit-identical to those of an uninterrupted one. The temporary files of
atomic writes a killed run was inside (``.shard-00003.safetensors.XXXX.safetensors.tmp``) are
removed (:func:`remove_temp_files`).

**Parallelism.** A torch ``DataLoader`` over the files to decode (``num_workers=workers``)
decodes, cuts, channel-mixes and resamples in worker processes; the main process runs the
components, ``batch_size`` clips per call (clips of unequal length go in separate calls, so
no padding changes any clip's tokens), under ``torch.inference_mode()``.

**Per clip** (tensor names as in :mod:`cadenza.plugins.workflows.prepare.token_cache`): ``acoustic`` ``[Q, T]``
(int16 when ``codebook_size <= 32767``, else int32), ``semantic`` ``[T]`` (same rule with
``vocab_size``; only with a semantic tokenizer), ``cond_audio`` (only when the conditioner
embeds audio: ``[D]`` float32 pooled, ``[L]`` integer tokens, or ``[L, D]`` float32 with
``cond_audio_mask`` for sequences) and ``cond_text`` (only for items with a caption: the
conditioner's ``embed_text`` of it, same shapes; a sequence is trimmed to its real length
and stored with ``cond_text_mask`` ``[L]`` bool). Each record has ``source``, ``clip``
(planned index), ``start`` and ``seconds`` (of the source file), ``frames`` (acoustic
frames), ``caption``, ``split`` (:func:`split_of` of its file) and ``extras``.

**Header**: ``spec`` (resolved, as plain data), ``components`` (provenance per slot),
``clip_seconds``, ``shard_size``, ``valid_fraction``, ``streams`` (``acoustic``:
sample_rate, channels, frame_rate, num_codebooks, codebook_size, dtype; ``semantic``:
sample_rate, frame_rate, vocab_size, dtype, or absent) and ``conditioning`` (kind, dim,
length, vocab_size, has_audio; or null), plus ``tensors``: the names a clip may hold
(``cond_text`` only where its item has a caption).

Besides the cache format's files the folder holds ``prepare.json`` (the settings check above)
and, for shards during which a file failed to decode, ``skipped-NNNNN.json`` (so the report
still names that file after a resume that does not decode it again).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from cadenza.core.audio.io import load_audio, prepare
from cadenza.plugins.workflows.data_sources import Item, list_items, split_of
from cadenza.core.errors import InputError
from cadenza.plugins.workflows.prepare.token_cache import INDEX, REPORT, CacheWriter, cache_header, code_dtype
from cadenza.core.components import BuildContext
from cadenza.core.files.atomic import write_text
from cadenza.core.spec.validate import check_tree, load_pipeline

MIN_SECONDS = 1.0  # a file shorter than one clip still gives one clip from this long (or half a clip)
SETTINGS = "prepare.json"  # header + plan digest of the run that started the folder (resume check)


def remove_temp_files(out: Path) -> None:
    """What a run killed inside an atomic write of this folder leaves: hidden ``.NAME.XXXX.tmp`` files
    (never read; a shard's files only count once renamed into place)."""
    for pattern in (".shard-*.tmp", ".skipped-*.tmp", f".{SETTINGS}.*.tmp", f".{INDEX}.*.tmp", f".{REPORT}.*.tmp"):
        for leftover in out.glob(pattern):
            leftover.unlink(missing_ok=True)


def skipped_name(shard: int) -> str:
    """Files that failed to decode while a shard was made (written before the shard itself)."""
    return f"skipped-{shard:05d}.json"


# -- the plan --------------------------------------------------------------------------------------

@attrs.frozen
class FilePlan:
    """One readable source file and its clips: ``(planned index, start sample, samples)`` each."""

    item: Item
    rate: int
    frames: int
    clips: tuple[tuple[int, int, int], ...]


def cut(frames: int, rate: int, clip_seconds: float) -> list[tuple[int, int]]:
    """``(start, length)`` in samples of the clips of a file ``frames`` long (module docstring)."""
    clip = max(1, round(clip_seconds * rate))
    whole, rest = divmod(frames, clip)
    out = [(i * clip, clip) for i in range(whole)]
    if rest and (2 * rest >= clip or (whole == 0 and rest >= min(MIN_SECONDS * rate, clip / 2))):
        out.append((whole * clip, rest))
    return out


def _reason(exc: BaseException, path: Path) -> str:
    """The one-line reason of an error about ``path``, without repeating the path."""
    text = " ".join(str(getattr(exc, "error_string", None) or exc).split())  # libsndfile's own words
    return text.removeprefix(f"{path}: ")


def plan_files(items: list[Item], clip_seconds: float) -> tuple[list[FilePlan], list[dict[str, str]]]:
    """Plan every item from its header; returns the plans and the files skipped (with reasons)."""
    import soundfile

    plans: list[FilePlan] = []
    skipped: list[dict[str, str]] = []
    index = 0
    for item in items:
        try:
            if item.path.is_file() and item.path.stat().st_size == 0:
                skipped.append({"source": str(item.path), "reason": "empty file (0 bytes)"})
                continue
            info = soundfile.info(str(item.path))
            rate, frames = int(info.samplerate), int(info.frames)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped, never fatal
            skipped.append({"source": str(item.path), "reason": f"cannot read audio ({_reason(exc, item.path)})"})
            continue
        if frames <= 0 or rate <= 0:
            skipped.append({"source": str(item.path), "reason": "audio file has no samples"})
            continue
        pieces = cut(frames, rate, clip_seconds)
        if not pieces:
            shortest = min(MIN_SECONDS, clip_seconds / 2)
            skipped.append({"source": str(item.path),
                            "reason": f"too short ({frames / rate:.2f} s; clips need at least {shortest:g} s)"})
            continue
        clips = tuple((index + i, start, length) for i, (start, length) in enumerate(pieces))
        index += len(clips)
        plans.append(FilePlan(item, rate, frames, clips))
    return plans, skipped


def plan_digest(plans: list[FilePlan]) -> str:
    digest = hashlib.sha256()
    for plan in plans:
        digest.update(json.dumps([str(plan.item.path), plan.item.caption, plan.rate, plan.frames,
                                  len(plan.clips)]).encode())
    return digest.hexdigest()


# -- components --------------------------------------------------------------------------------------

def build_component(component: Any, device: str) -> Any:
    """Build one resolved component the way :class:`~cadenza.core.engine.cascade.Cascade` does."""
    context = BuildContext(weights=component.weights or BuildContext().weights, device=device)
    return component.entry.build(component.config, context)


# -- decoding (DataLoader workers) -------------------------------------------------------------------

@attrs.frozen
class _Job:
    path: Path
    rate: int
    clips: tuple[tuple[int, int, int], ...]  # only the clips of shards still to make
    min_samples: float  # a clip that decodes shorter than planned is kept from this long


@attrs.frozen
class _Targets:
    tokenizer: tuple[int, int]  # (sample rate, channels)
    semantic: int | None  # sample rate, mono
    original: bool  # the conditioner embeds audio: keep each clip as read


def _as_is(sample: Any) -> Any:
    return sample


def _decode(job: _Job, targets: _Targets) -> dict[str, Any]:
    """One file -> its clips ready for each component (numpy: no shared-memory handles per clip)."""
    import torch

    try:
        audio, rate = load_audio(job.path)
        if rate != job.rate:
            raise InputError(f"sample rate {rate} Hz differs from the header's {job.rate} Hz")
        if not bool(torch.isfinite(audio).all()):
            raise InputError("audio contains NaN or infinite samples")
        clips = []
        for index, start, length in job.clips:
            piece = audio[:, start:start + length]
            if piece.shape[-1] < length and (piece.shape[-1] == 0 or piece.shape[-1] < job.min_samples):
                continue  # the file decodes shorter than its header said: the same every run
            batch = piece[None]
            clip = {"index": index, "start": start / rate, "seconds": piece.shape[-1] / rate,
                    "acoustic": prepare(batch, rate, *targets.tokenizer)[0].numpy()}
            if targets.semantic is not None:
                clip["semantic"] = prepare(batch, rate, targets.semantic, 1)[0].numpy()
            if targets.original:
                clip["original"] = piece.numpy()
                clip["rate"] = rate
            clips.append(clip)
    except Exception as exc:  # noqa: BLE001 - a bad file is skipped, never fatal
        reason = _reason(exc, job.path)
        if not isinstance(exc, InputError):
            reason = f"cannot read audio ({type(exc).__name__}: {reason})"
        return {"error": reason, "clips": []}
    return {"error": None, "clips": clips}


class _Files:
    """The map-style dataset the DataLoader reads: item ``i`` is job ``i`` decoded."""

    def __init__(self, jobs: list[_Job], targets: _Targets):
        self.jobs, self.targets = jobs, targets

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return _decode(self.jobs[i], self.targets)


# -- running the components ------------------------------------------------------------------------

class _Runner:
    """The built components, run on batches of decoded clips."""

    def __init__(self, pipeline: Any, device: str):
        self.pipeline = pipeline
        self.device = device
        self.tokenizer = build_component(pipeline.tokenizer, device)
        self.semantic = build_component(pipeline.semantic_tokenizer, device) if pipeline.semantic_tokenizer else None
        self.conditioner = build_component(pipeline.conditioner, device) if pipeline.conditioner else None
        info = pipeline.conditioner.info if pipeline.conditioner else None
        self.cond_info = info
        self.embeds_audio = bool(info is not None and info.has_audio)
        tok, sem = pipeline.tokenizer.info, pipeline.semantic_tokenizer
        self.targets = _Targets((tok.sample_rate, tok.channels), sem.info.sample_rate if sem else None,
                                self.embeds_audio)
        self.acoustic_dtype = code_dtype(tok.codebook_size)
        self.semantic_dtype = code_dtype(sem.info.vocab_size) if sem else None
        self.cond_dtype = code_dtype(info.vocab_size) if info is not None and info.kind == "tokens" else None

    def run(self, clips: list[dict[str, Any]], captions: list[str | None]) -> list[dict[str, Any]]:
        """Tensors of each clip (names as in the module docstring)."""
        import torch

        out: list[dict[str, Any]] = [{} for _ in clips]
        with torch.inference_mode():
            for rows, batch in _groups(clips, lambda c: c["acoustic"].shape):
                codes = self.tokenizer.encode(batch.to(self.device))
                for row, value in zip(rows, codes, strict=True):
                    out[row]["acoustic"] = value.cpu().to(self.acoustic_dtype)
            if self.semantic is not None:
                for rows, batch in _groups(clips, lambda c: c["semantic"].shape, "semantic"):
                    ids = self.semantic.tokenize(batch.to(self.device))
                    for row, value in zip(rows, ids, strict=True):
                        out[row]["semantic"] = value.cpu().to(self.semantic_dtype)
            if self.embeds_audio:
                for rows, batch in _groups(clips, lambda c: (c["rate"], c["original"].shape), "original"):
                    cond = self.conditioner.embed_audio(batch.to(self.device), clips[rows[0]]["rate"])
                    for i, row in enumerate(rows):
                        out[row].update(self._conditioning(cond, i, "cond_audio"))
            texts = sorted({c for c in captions if c is not None})
            if self.conditioner is not None and texts:
                cond = self.conditioner.embed_text(texts)
                per_text = {text: self._conditioning(cond, i, "cond_text") for i, text in enumerate(texts)}
                for row, caption in enumerate(captions):
                    if caption is not None:
                        out[row].update(per_text[caption])
        # Each clip owns its tensors: safetensors refuses to save tensors that share memory.
        return [{name: value.clone() for name, value in named.items()} for named in out]

    def _conditioning(self, cond: Any, i: int, name: str) -> dict[str, Any]:
        import torch

        values = cond.values[i].detach().cpu()
        if cond.kind == "tokens":
            return {name: values.to(self.cond_dtype)}
        values = values.float()
        if cond.kind != "sequence":
            return {name: values}
        if cond.mask is None:
            mask = torch.ones(values.shape[0], dtype=torch.bool)
        else:
            mask = cond.mask[i].detach().cpu().bool()
        real = mask.nonzero()
        length = int(real[-1]) + 1 if len(real) else 0
        return {name: values[:length], f"{name}_mask": mask[:length]}


def _groups(clips: list[dict[str, Any]], key: Any, field: str = "acoustic") -> Iterable[tuple[list[int], Any]]:
    """Rows of equal-shaped inputs, stacked: no clip is ever padded to another's length."""
    import numpy as np
    import torch

    by_key: dict[Any, list[int]] = {}
    for row, clip in enumerate(clips):
        by_key.setdefault(key(clip), []).append(row)
    for rows in by_key.values():
        yield rows, torch.from_numpy(np.stack([clips[r][field] for r in rows]))


# -- the driver ----------------------------------------------------------------------------------------

def _check(clip_seconds: float, valid_fraction: float, shard_size: int, batch_size: int, workers: int) -> None:
    def number(value: Any) -> bool:
        return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)

    if not number(clip_seconds) or clip_seconds <= 0:
        raise InputError(f"--clip-seconds must be a positive number of seconds, got {clip_seconds!r}")
    if not number(valid_fraction) or not 0 <= valid_fraction <= 1:
        raise InputError(f"--valid-fraction must be between 0 and 1, got {valid_fraction!r}")
    for flag, value, least in (("--shard-size", shard_size, 1), ("--batch-size", batch_size, 1),
                               ("--workers", workers, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InputError(f"{flag} must be an integer >= {least}, got {value!r}")


def _check_folder(out: Path, settings: dict[str, Any]) -> None:
    """Refuse to resume into a folder that was prepared with another spec, data or settings."""
    file = out / SETTINGS
    if file.exists():
        try:
            old = json.loads(file.read_text())
        except (OSError, ValueError):
            old = None
        if old == settings:
            return
        raise InputError(f"{out}: holds a cache prepared with another spec, data or settings; "
                         "use a new --out folder (or delete this one)")
    if any(out.glob("shard-*")):
        raise InputError(f"{out}: holds cache shards but no {SETTINGS}; use a new --out folder (or delete this one)")


def _caption(item: Item) -> str | None:
    return item.caption if item.caption and item.caption.strip() else None


def prepare_cache(pipeline: Any, registry: Any, source: str | Path, out: str | Path, *, clip_seconds: float = 10.0,
                  valid_fraction: float = 0.05, shard_size: int = 256, batch_size: int = 8, workers: int = 2,
                  device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """Write (or finish) the token cache of ``source`` in ``out``; returns a summary.

    ``pipeline`` is a :class:`~cadenza.core.spec.validate.ResolvedPipeline`, or a spec path, preset
    name or spec mapping resolved with ``registry``. Summary keys: ``clips``, ``train``,
    ``valid``, ``shards``, ``shards_resumed``, ``seconds`` (audio in the cache), ``skipped``
    (``[{"source", "reason"}]``), ``elapsed``, ``out``.
    """
    import sys

    import torch
    from tqdm import tqdm

    started = time.perf_counter()
    _check(clip_seconds, valid_fraction, shard_size, batch_size, workers)
    clip_seconds = float(clip_seconds)
    if not hasattr(pipeline, "tokenizer"):
        pipeline = check_tree(pipeline, registry) if isinstance(pipeline, dict) else load_pipeline(pipeline, registry)
    out = Path(out)
    items = list_items(source)
    if not items:
        raise InputError(f"{source}: no audio files found")
    plans, skipped = plan_files(items, clip_seconds)
    if not plans:
        raise InputError(f"{source}: no usable audio: all {len(items)} files were skipped "
                         f"(first: {skipped[0]['source']}: {skipped[0]['reason']})")
    total = plans[-1].clips[-1][0] + 1
    num_shards = -(-total // shard_size)

    header = cache_header(pipeline, clip_seconds, shard_size=shard_size, valid_fraction=valid_fraction)
    settings = {"header": header, "data": str(Path(source)), "plan": plan_digest(plans), "clips": total,
                "shards": num_shards}
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    if out.exists():
        _check_folder(out, settings)
    writer = CacheWriter(out, header)
    remove_temp_files(out)
    write_text(out / SETTINGS, json.dumps(settings, indent=1) + "\n")

    todo = [k for k in range(num_shards) if not writer.shard_done(k)]
    todo_set = set(todo)
    jobs: list[_Job] = []
    owners: list[FilePlan] = []
    last_job: dict[int, int] = {}  # shard -> index of the last job holding one of its clips
    for plan in plans:
        clips = tuple(c for c in plan.clips if c[0] // shard_size in todo_set)
        if clips:
            for shard in {c[0] // shard_size for c in clips}:
                last_job[shard] = len(jobs)
            min_samples = min(MIN_SECONDS * plan.rate, round(clip_seconds * plan.rate) / 2)
            jobs.append(_Job(plan.item.path, plan.rate, clips, min_samples))
            owners.append(plan)

    if jobs:
        runner = _Runner(pipeline, device)
        made: dict[int, list[tuple[dict[str, Any], dict[str, Any]]]] = {k: [] for k in todo}
        failed: dict[int, list[dict[str, str]]] = {k: [] for k in todo}
        pending: list[tuple[dict[str, Any], FilePlan]] = []

        def flush() -> None:
            if not pending:
                return
            clips = [clip for clip, _ in pending]
            captions = [_caption(plan.item) for _, plan in pending]
            tensors = runner.run(clips, captions)
            for (clip, plan), named in zip(pending, tensors, strict=True):
                record = {"source": str(plan.item.path), "clip": clip["index"], "start": clip["start"],
                          "seconds": clip["seconds"], "frames": int(named["acoustic"].shape[-1]),
                          "caption": _caption(plan.item), "split": split_of(plan.item, valid_fraction),
                          "extras": dict(plan.item.extras)}
                made[clip["index"] // shard_size].append((record, named))
            pending.clear()

        loader = torch.utils.data.DataLoader(_Files(jobs, runner.targets), batch_size=None, shuffle=False,
                                             num_workers=workers, collate_fn=_as_is)
        bar = tqdm(total=sum(len(j.clips) for j in jobs), desc="prepare", unit="clip", file=sys.stderr,
                   disable=None if progress else True, dynamic_ncols=True)
        try:
            for number, result in enumerate(loader):
                plan, job = owners[number], jobs[number]
                if result["error"] is not None:
                    for shard in sorted({c[0] // shard_size for c in job.clips}):
                        failed[shard].append({"source": str(plan.item.path), "reason": result["error"]})
                for clip in result["clips"]:
                    shard = clip["index"] // shard_size
                    if pending and (len(pending) >= batch_size or pending[0][0]["index"] // shard_size != shard):
                        flush()
                    pending.append((clip, plan))
                bar.update(len(job.clips))
                for shard in sorted(s for s, j in last_job.items() if j == number):
                    flush()
                    failures, note = failed.pop(shard), out / skipped_name(shard)
                    if failures:
                        write_text(note, json.dumps(failures) + "\n")
                    else:
                        note.unlink(missing_ok=True)
                    writer.write_shard(shard, made.pop(shard))
        finally:
            bar.close()

    for shard in range(num_shards):  # files that failed to decode in this or an earlier run
        file = out / skipped_name(shard)
        if file.exists():
            skipped += json.loads(file.read_text())
    seen: set[str] = set()
    skipped = [s for s in skipped if not (s["source"] in seen or seen.add(s["source"]))]
    clips = [clip for file in sorted(out.glob("shard-*.json")) for clip in json.loads(file.read_text())]
    if not clips:
        raise InputError(f"{source}: no usable audio: all {len(items)} files were skipped "
                         f"(first: {skipped[0]['source']}: {skipped[0]['reason']})")
    report = {"files": len(items), "skipped": skipped}
    index = writer.finish(report)
    train = sum(1 for c in index["clips"] if c["split"] == "train")
    return {"clips": len(index["clips"]), "train": train, "valid": len(index["clips"]) - train,
            "shards": num_shards, "shards_resumed": num_shards - len(todo),
            "seconds": sum(c["seconds"] for c in index["clips"]), "files": len(items), "skipped": skipped,
            "elapsed": time.perf_counter() - started, "out": str(out)}

