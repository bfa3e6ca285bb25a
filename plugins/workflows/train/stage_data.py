"""Training examples for one cascade stage, cut from a token cache.

An example is a random crop of ``seconds`` of one clip, aligned in time across the streams
the stage touches (a 25 Hz semantic frame ``j`` and 50 Hz acoustic frames ``2j, 2j+1`` cover
the same audio), giving:

- ``reads``: one ``[Q, n]`` tensor per slice of ``layout.reads``;
- ``written``: the written slice flattened frame-major (frame 0 codebooks 0..Q-1, then frame
  1, ...), the order the stage model predicts and decodes in;
- the conditioning of the clip: its ``cond_audio`` (the conditioner's embedding of the clip's
  audio: the MuLan trick, train on audio and generate from text) or ``cond_text`` (of its
  caption). A clip without the chosen conditioning (no caption) trains with the null
  condition, like a conditioning-dropout row.

Everything is deterministic: the order of clips is a permutation seeded by ``seed + epoch``
and each crop is seeded by ``(seed, epoch, clip)``, so a resumed run sees exactly the
examples an uninterrupted one would (see :class:`StreamBatches`).

The cache header (``index.json`` minus its clips) is expected to describe its streams and
conditioning the way :func:`cadenza.plugins.workflows.prepare.token_cache.cache_header` writes them; :func:`check_cache` compares it with a
spec's stage and says, in one line, what does not fit.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from cadenza.core.errors import InputError
from cadenza.core.layout import StageLayout, StreamSlice
from cadenza.plugins.workflows.prepare.token_cache import shard_name
from cadenza.core.spec.schema import spec_to_dict
from cadenza.core.types import Conditioning
from cadenza.core.components import StageRequest

if TYPE_CHECKING:
    import torch
    from cadenza.plugins.workflows.prepare.token_cache import TokenCache
    from cadenza.core.spec.validate import ResolvedPipeline

# Validation uses this many clips of the valid split at most (the first ones, in cache order).
MAX_VALID_CLIPS = 512


# ---- the cache header ------------------------------------------------------------------------

def header_stream(header: dict[str, Any], stream: str) -> dict[str, Any] | None:
    """``{"num_codebooks", "codebook_size", "frame_rate"}`` of a stream as the header states it
    (``streams.<stream>``, or a ``tokenizer`` / ``semantic_tokenizer`` info), None when it does not."""
    info = (header.get("streams") or {}).get(stream)
    if info is None:
        info = header.get({"acoustic": "tokenizer", "semantic": "semantic_tokenizer"}[stream])
        if isinstance(info, dict) and isinstance(info.get("info"), dict):
            info = info["info"]
    if not isinstance(info, dict):
        return None
    return {"num_codebooks": info.get("num_codebooks", 1),
            "codebook_size": info.get("codebook_size", info.get("vocab_size")),
            "frame_rate": info.get("frame_rate")}


def header_conditioning(header: dict[str, Any]) -> dict[str, Any] | None:
    """The conditioner's info (``kind``, ``dim``, ``length``, ``vocab_size``) as the header states it."""
    cond = header.get("conditioning", header.get("conditioner"))
    if not isinstance(cond, dict):
        return None
    if "kind" in cond:
        return cond
    if isinstance(cond.get("info"), dict):
        return cond["info"]
    for key in ("audio", "text"):
        if isinstance(cond.get(key), dict) and "kind" in cond[key]:
            return cond[key]
    return None


# ---- what each clip holds, from the shard headers (no tensor is read) -----------------------

@attrs.frozen
class ClipMeta:
    """Frames of each stream (``acoustic_codebooks`` too) and the tensor names of one clip."""

    frames: dict[str, int]
    acoustic_codebooks: int
    keys: frozenset[str]


def clip_metadata(cache: TokenCache) -> list[ClipMeta]:
    """Shapes of every clip's tensors, read from the safetensors headers only (cheap)."""
    from safetensors import safe_open

    shapes: dict[int, dict[str, list[int]]] = {}
    for shard in sorted({clip["shard"] for clip in cache.clips}):
        path = cache.folder / f"{shard_name(shard)}.safetensors"
        try:
            with safe_open(str(path), framework="pt") as handle:
                shapes[shard] = {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}
        except Exception as exc:  # noqa: BLE001 - missing or corrupt shard
            raise InputError(f"{path}: unreadable cache shard ({exc})") from None
    out = []
    for clip in cache.clips:
        prefix = f"{clip['row']}/"
        named = {k[len(prefix):]: v for k, v in shapes[clip["shard"]].items() if k.startswith(prefix)}
        frames = {}
        acoustic = named.get("acoustic")
        if acoustic is not None and len(acoustic) == 2:
            frames["acoustic"] = acoustic[1]
        semantic = named.get("semantic")
        if semantic is not None and len(semantic) >= 1:
            frames["semantic"] = semantic[-1]
        out.append(ClipMeta(frames, acoustic[0] if acoustic is not None and len(acoustic) == 2 else 0,
                            frozenset(named)))
    return out


# ---- checking a cache against a stage --------------------------------------------------------

@attrs.frozen
class StagePlan:
    """What a stage trains on: the clips that fit a crop, the crop and the conditioning source."""

    seconds: float
    conditioning: str | None  # "audio" | "text" | None (the stage takes no conditioning)
    train: tuple[int, ...]
    valid: tuple[int, ...]
    skipped: int  # train clips shorter than the crop
    meta: tuple[ClipMeta, ...]
    warnings: tuple[str, ...] = ()


def _close(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-6)
    except (TypeError, ValueError):
        return False


def _stream_problems(header: dict[str, Any], sl: StreamSlice, full_codebooks: int) -> list[str]:
    info = header_stream(header, sl.stream)
    if info is None:
        return [f"the cache has no {sl.stream} stream (its header lists none)"]
    out = []
    if sl.stream == "acoustic" and info["num_codebooks"] != full_codebooks:
        out.append(f"acoustic codebooks: {info['num_codebooks']} in the cache, {full_codebooks} in the spec")
    size_name = "vocab_size" if sl.stream == "semantic" else "codebook_size"
    if info["codebook_size"] != sl.codebook_size:
        out.append(f"{sl.stream} {size_name}: {info['codebook_size']} in the cache, {sl.codebook_size} in the spec")
    if info["frame_rate"] is not None and not _close(info["frame_rate"], sl.frame_rate):
        out.append(f"{sl.stream} frame_rate: {info['frame_rate']:g} Hz in the cache, {sl.frame_rate:g} Hz in the spec")
    return out


def _conditioning_problems(header: dict[str, Any], layout: StageLayout) -> list[str]:
    want = layout.conditioning
    have = header_conditioning(header)
    if have is None:
        return ["the cache holds no conditioning (its header names no conditioner), "
                f"but the stage conditions on it ({layout.conditioning_mode}); give the stage conditioning: none "
                "or prepare the cache with the spec's conditioner"]
    out = []
    if have.get("kind") != want.kind:
        return [f"conditioning kind: {have.get('kind')!r} in the cache, {want.kind!r} in the spec"]
    if want.kind in ("pooled", "sequence") and have.get("dim") != want.dim:
        out.append(f"conditioning dim: {have.get('dim')} in the cache, {want.dim} in the spec")
    if want.kind == "tokens":
        if have.get("length") != want.length:
            out.append(f"conditioning tokens per clip: {have.get('length')} in the cache, {want.length} in the spec")
        if have.get("vocab_size") != want.vocab_size:
            out.append(f"conditioning vocab_size: {have.get('vocab_size')} in the cache, {want.vocab_size} in the spec")
    return out


def _component_warnings(header: dict[str, Any], pipeline: ResolvedPipeline, slots: list[str]) -> list[str]:
    """Components the cache was made with that differ from the spec's (same shapes, other tokens?)."""
    made_with = header.get("spec")
    if not isinstance(made_with, dict):
        return []
    now = spec_to_dict(pipeline.spec)
    out = []
    for slot in slots:
        old, new = made_with.get(slot), now.get(slot)
        if not isinstance(old, dict) or not isinstance(new, dict):
            continue
        changed = [f"{k} {old.get(k, 'default')!r} -> {new.get(k, 'default')!r}"
                   for k in ("name", "params", "weights") if old.get(k) != new.get(k)]
        if changed:
            out.append(f"the spec's {slot} is not the one the cache was prepared with ({'; '.join(changed)}): "
                       "its tokens may not be the ones this spec makes")
    return out


def check_cache(cache: TokenCache, pipeline: ResolvedPipeline, stage_name: str, *,
                seconds: float | None = None, conditioning: str | None = None) -> StagePlan:
    """Check ``cache`` fits stage ``stage_name`` of ``pipeline`` and plan its examples.

    Raises :class:`InputError` (one line) when codebook counts or sizes, frame rates, the
    semantic vocabulary or the conditioning kind/width differ, when the chosen conditioning
    is missing, or when no training clip is long enough for the crop.
    """
    stage = next(s for s in pipeline.stages if s.spec.name == stage_name)
    layout = stage.layout
    header = cache.header
    full = pipeline.tokenizer.info.num_codebooks
    problems: list[str] = []
    for sl in (*layout.reads, layout.writes):
        for p in _stream_problems(header, sl, full):
            if p not in problems:
                problems.append(p)
    conditioned = layout.conditioning is not None and layout.conditioning_mode != "none"
    if conditioned:
        problems += _conditioning_problems(header, layout)
    where = f"cache {cache.folder} does not fit stage {stage_name!r}"
    if problems:
        raise InputError(f"{where}: {'; '.join(problems)}")

    meta = clip_metadata(cache)
    streams = {sl.stream for sl in (*layout.reads, layout.writes)}
    for i, m in enumerate(meta):
        missing = [s for s in sorted(streams) if s not in m.frames]
        if missing:
            raise InputError(f"{where}: clip {i} has no {' or '.join(missing)} tokens")
        if "acoustic" in streams and m.acoustic_codebooks != full:
            raise InputError(f"{where}: clip {i} has {m.acoustic_codebooks} acoustic codebooks, the spec's tokenizer {full}")

    source = None
    if conditioned:
        has = {"audio": any("cond_audio" in m.keys for m in meta), "text": any("cond_text" in m.keys for m in meta)}
        if conditioning is None:
            source = "audio" if has["audio"] else "text"  # the MuLan trick whenever the cache has it
            if not has[source]:
                raise InputError(f"{where}: the stage conditions on {layout.conditioning.kind} conditioning but the "
                                 "cache holds neither cond_audio nor cond_text (prepare it from a .jsonl/.csv manifest "
                                 "with captions, or with a conditioner that embeds audio such as mulan; or give the "
                                 "stage conditioning: none)")
        else:
            source = conditioning
            if not has[source]:
                other = "text" if source == "audio" else "audio"
                hint = f" (it has cond_{other}: use --conditioning {other})" if has[other] else ""
                raise InputError(f"{where}: --conditioning {source} but no clip holds cond_{source}{hint}")

    if seconds is None:
        seconds = header.get("clip_seconds")
        if not isinstance(seconds, (int, float)) or seconds <= 0:
            durations = sorted(m.frames[layout.writes.stream] / layout.writes.frame_rate
                               for m in meta if layout.writes.stream in m.frames)
            seconds = durations[len(durations) // 2] if durations else 1.0
    seconds = float(seconds)
    slices = (*layout.reads, layout.writes)

    def fits(m: ClipMeta) -> bool:
        return all(sl.num_frames(seconds) <= m.frames[sl.stream] for sl in slices)

    train_all = cache.split("train")
    train = tuple(i for i in train_all if fits(meta[i]))
    valid = tuple(i for i in cache.split("valid") if fits(meta[i]))[:MAX_VALID_CLIPS]
    if not train:
        longest = max((min(m.frames[sl.stream] / sl.frame_rate for sl in slices) for m in meta), default=0.0)
        raise InputError(f"{where}: no training clip is {seconds:g} s long (the longest is {longest:.3g} s); "
                         "pass a shorter --seconds" if train_all else f"{where}: the cache has no training clips")
    slots = (["tokenizer"] if "acoustic" in streams else []) + (["semantic_tokenizer"] if "semantic" in streams else [])
    slots += ["conditioner"] if conditioned else []
    return StagePlan(seconds, source, train, valid, len(train_all) - len(train), tuple(meta),
                     tuple(_component_warnings(header, pipeline, slots)))


# ---- examples --------------------------------------------------------------------------------

def crop_rng(seed: int, epoch: int, clip: int) -> random.Random:
    """The generator of one crop (string seeding hashes with SHA-512: the same in every process)."""
    return random.Random(f"crop:{seed}:{epoch}:{clip}")


class StageDataset:
    """A map-style dataset whose keys are ``(epoch, clip)`` pairs (see :class:`StreamBatches`)."""

    def __init__(self, cache: TokenCache, layout: StageLayout, plan: StagePlan, seed: int):
        self.cache, self.layout, self.plan, self.seed = cache, layout, plan, seed
        self.seconds = plan.seconds
        slices = (*layout.reads, layout.writes)
        self.frames = {sl.stream: sl.num_frames(plan.seconds) for sl in slices}
        self.rates = {sl.stream: sl.frame_rate for sl in slices}
        # Crop starts are drawn on the coarsest stream's frame grid, so every stream starts
        # on a whole frame of it (25 Hz semantic frame j <-> 50 Hz acoustic frame 2j).
        self.base = min(self.rates, key=lambda s: (self.rates[s], s))
        self.conditioned = layout.conditioning is not None and layout.conditioning_mode != "none"

    @property
    def written_tokens(self) -> int:
        """Written tokens per example: what the loss predicts (and tokens/s counts)."""
        return self.frames[self.layout.writes.stream] * self.layout.writes.num_codebooks

    def starts(self, clip: int, epoch: int) -> dict[str, int]:
        """Start frame of each stream for the crop of ``clip`` in ``epoch``."""
        meta = self.plan.meta[clip]
        spare = min((meta.frames[s] - n) / self.rates[s] for s, n in self.frames.items())
        base_rate = self.rates[self.base]
        j = crop_rng(self.seed, epoch, clip).randint(0, max(0, math.floor(spare * base_rate + 1e-6)))
        t = j / base_rate
        return {s: min(round(t * self.rates[s]), meta.frames[s] - n) for s, n in self.frames.items()}

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:

        epoch, clip = key
        tensors = self.cache.load(clip)
        starts = self.starts(clip, epoch)

        def take(sl: StreamSlice) -> torch.Tensor:
            full = tensors[sl.stream]
            full = full.reshape(1, -1) if sl.stream == "semantic" else full
            s, n = starts[sl.stream], self.frames[sl.stream]
            part = full[sl.start:sl.stop, s:s + n].long()
            if part.numel() and (int(part.min()) < 0 or int(part.max()) >= sl.codebook_size):
                raise InputError(f"{self.cache.folder}: clip {clip} has {sl} tokens outside [0, {sl.codebook_size})")
            return part

        item: dict[str, Any] = {"reads": [take(sl) for sl in self.layout.reads],
                                "written": take(self.layout.writes).transpose(0, 1).reshape(-1),  # frame-major
                                "cond": None, "cond_mask": None}
        if self.conditioned:
            name = f"cond_{self.plan.conditioning}"
            value = tensors.get(name)
            if value is not None:
                item["cond"] = value
                item["cond_mask"] = tensors.get(f"{name}_mask")
        return item


def collate(items: Sequence[dict[str, Any]], layout: StageLayout) -> dict[str, Any]:
    """Stack examples into a batch: ``reads`` (tuple of ``[B, Q, n]``), ``written`` ``[B, N]``,
    ``conditioning`` (a :class:`Conditioning` of the layout's kind, or None) and ``drop``
    (``[B]`` bool, True for rows without conditioning; None when every row has it)."""
    import torch

    reads = tuple(torch.stack([item["reads"][i] for item in items]) for i in range(len(layout.reads)))
    written = torch.stack([item["written"] for item in items])
    batch: dict[str, Any] = {"reads": reads, "written": written, "conditioning": None, "drop": None}
    if layout.conditioning is None or layout.conditioning_mode == "none":
        return batch
    info = layout.conditioning
    present = [item["cond"] is not None for item in items]
    if not any(present):
        batch["drop"] = torch.ones(len(items), dtype=torch.bool)
        filler = _filler(info)
        batch["conditioning"] = _stack(info.kind, [filler] * len(items), [None] * len(items))
        return batch
    example = next(item["cond"] for item in items if item["cond"] is not None)
    values, masks = [], []
    for item in items:
        if item["cond"] is None:
            shape = (1, example.shape[-1]) if info.kind == "sequence" else tuple(example.shape)
            values.append(torch.zeros(shape, dtype=example.dtype))
            masks.append(torch.zeros(shape[0], dtype=torch.bool) if info.kind == "sequence" else None)
        else:
            values.append(item["cond"])
            masks.append(item["cond_mask"])
    batch["conditioning"] = _stack(info.kind, values, masks)
    if not all(present):
        batch["drop"] = ~torch.tensor(present)
    return batch


def _filler(info: Any) -> torch.Tensor:
    import torch

    if info.kind == "tokens":
        return torch.zeros(info.length, dtype=torch.long)
    if info.kind == "sequence":
        return torch.zeros(1, info.dim)
    return torch.zeros(info.dim)


def _stack(kind: str, values: list[torch.Tensor], masks: list[Any]) -> Any:
    import torch

    if kind == "tokens":
        return Conditioning("tokens", torch.stack([v.long().reshape(-1) for v in values]))
    if kind == "pooled":
        return Conditioning("pooled", torch.stack([v.float().reshape(-1) for v in values]))
    # sequence: [L_i, D] padded to the longest, masked
    length = max(v.shape[0] for v in values)
    dim = values[0].shape[-1]
    out = torch.zeros(len(values), length, dim)
    mask = torch.zeros(len(values), length, dtype=torch.bool)
    for row, (v, m) in enumerate(zip(values, masks)):
        out[row, : v.shape[0]] = v.float()
        mask[row, : v.shape[0]] = True if m is None else m.to(torch.bool).reshape(-1)
    return Conditioning("sequence", out, mask)


def to_request(batch: dict[str, Any], device: Any) -> tuple[Any, torch.Tensor]:
    """``(StageRequest, written)`` on ``device`` from a collated batch."""
    cond = batch["conditioning"]
    if cond is not None:
        cond = Conditioning(cond.kind, cond.values.to(device),
                            None if cond.mask is None else cond.mask.to(device))
    drop = None if batch["drop"] is None else batch["drop"].to(device)
    written = batch["written"].to(device)
    request = StageRequest(int(written.shape[0]), tuple(r.to(device) for r in batch["reads"]), cond, drop)
    return request, written


# ---- order -----------------------------------------------------------------------------------

def epoch_order(clips: Sequence[int], seed: int, epoch: int) -> list[int]:
    """The clips of one epoch, in the order seeded by ``seed + epoch``."""
    import torch

    perm = torch.randperm(len(clips), generator=torch.Generator().manual_seed(seed + epoch))
    return [clips[i] for i in perm.tolist()]


class StreamBatches:
    """An endless batch sampler over the epochs, seen as one stream of examples.

    Global micro-batch ``k`` is examples ``[k*G, (k+1)*G)`` of the concatenated epoch orders
    (``G = batch_size * num_processes``); process ``rank`` takes its ``batch_size`` slice of it.
    So the same micro-batch holds the same examples whatever the number of processes, a
    dataset smaller than a batch still works, and resuming needs only ``k``.
    """

    def __init__(self, clips: Sequence[int], batch_size: int, num_processes: int, rank: int, seed: int, start: int = 0):
        self.clips, self.batch, self.procs, self.rank, self.seed = list(clips), batch_size, num_processes, rank, seed
        self.start = start
        self._epoch, self._order = -1, []

    def position(self, micro_batches: int) -> dict[str, int]:
        """The data position after ``micro_batches`` global micro-batches (saved in checkpoints)."""
        examples = micro_batches * self.batch * self.procs
        return {"micro_batches": micro_batches, "examples": examples,
                "epoch": examples // len(self.clips), "examples_in_epoch": examples % len(self.clips)}

    def _at(self, position: int) -> tuple[int, int]:
        epoch, offset = divmod(position, len(self.clips))
        if epoch != self._epoch:
            self._epoch, self._order = epoch, epoch_order(self.clips, self.seed, epoch)
        return epoch, self._order[offset]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        k = self.start
        global_batch = self.batch * self.procs
        while True:
            first = k * global_batch + self.rank * self.batch
            yield [self._at(p) for p in range(first, first + self.batch)]
            k += 1


def valid_batches(clips: Sequence[int], batch_size: int, num_processes: int, rank: int) -> list[list[tuple[int, int]]]:
    """This process's share of the validation clips, in batches; crops use epoch -1 (fixed)."""
    mine = list(clips)[rank::num_processes]
    return [[(-1, c) for c in mine[i:i + batch_size]] for i in range(0, len(mine), batch_size)]


def cache_fingerprint(folder: str | Path) -> str:
    """SHA-1 of the cache's ``index.json``: a resumed run checks it trains on the same cache."""
    import hashlib

    return hashlib.sha1((Path(folder) / "index.json").read_bytes()).hexdigest()
