"""``cadenza fit-kmeans``: fit a semantic tokenizer's k-means codebook on a folder of audio.

Semantic tokens are only as good as their centroids, and the right centroids depend on the
music a model will be trained on; this command fits them on the user's own audio with the
tokenizer the spec configures (same model, same layer). It builds only the spec's semantic
tokenizer, extracts its ``features(audio, sample_rate)`` from every audio file under
``--data``, keeps a seeded uniform subsample of at most ``--max-frames`` frames (priority
sampling: each frame draws a random key, the smallest keys stay, so memory is bounded however
much audio there is), fits :func:`cadenza.core.kmeans.fit_kmeans` and writes the centroids as
a safetensors file (atomically) with what produced them in its metadata.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cadenza.core.errors import CadenzaError, InputError

CHUNK_SECONDS = 30.0  # long files are encoded in pieces: attention cost grows with length squared
EXTRA_EXTENSIONS = {"aif", "oga", "opus"}  # read by libsndfile under another format's name


def audio_files(folder: Path) -> list[Path]:
    """Files under ``folder`` (recursively, sorted) whose extension libsndfile reads."""
    import soundfile

    extensions = {ext.lower() for ext in soundfile.available_formats()} | EXTRA_EXTENSIONS
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix[1:].lower() in extensions)


class Reservoir:
    """A seeded uniform sample of at most ``capacity`` rows from a stream of ``[n, D]`` blocks.

    Every row gets a uniform random key; the ``capacity`` smallest keys seen so far are kept.
    That is a uniform sample without replacement, whatever the block sizes, in O(capacity) memory.
    """

    def __init__(self, capacity: int, seed: int):
        import torch

        self.capacity = capacity
        self.generator = torch.Generator().manual_seed(seed)
        self.keys = torch.zeros(0)
        self.rows: Any = None
        self.seen = 0

    def add(self, rows: Any) -> None:
        import torch

        if len(rows) == 0:
            return
        keys = torch.rand(len(rows), generator=self.generator)
        self.seen += len(rows)
        if self.rows is None:
            self.rows = rows[:0]
        room = self.capacity - len(self.keys)
        if room > 0:
            self.keys = torch.cat([self.keys, keys[:room]])
            self.rows = torch.cat([self.rows, rows[:room]])
            keys, rows = keys[room:], rows[room:]
        if len(keys) == 0:
            return
        # Full: the new rows whose keys beat the largest kept keys replace those rows.
        order = torch.cat([self.keys, keys]).argsort()[: self.capacity]
        incoming = order[order >= self.capacity] - self.capacity
        if len(incoming) == 0:
            return
        kept = torch.zeros(self.capacity, dtype=torch.bool)
        kept[order[order < self.capacity]] = True
        evicted = (~kept).nonzero().flatten()
        self.keys[evicted] = keys[incoming]
        self.rows[evicted] = rows[incoming]


def _check_args(args: Any) -> None:
    for flag, value in (("--clusters", args.clusters), ("--batch-size", args.batch_size),
                        ("--epochs", args.epochs), ("--max-frames", args.max_frames)):
        if value is not None and value < 1:
            raise InputError(f"{flag} must be >= 1, got {value}")
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")


def _build_tokenizer(args: Any) -> tuple[Any, Any]:
    from cadenza.core.components import BuildContext
    from cadenza.core.validate import load_pipeline
    from cadenza.registry import get_registry

    pipeline = load_pipeline(args.pipeline, get_registry())
    resolved = pipeline.semantic_tokenizer
    if resolved is None:
        raise CadenzaError(f"{args.pipeline}: the spec has no semantic_tokenizer to fit")
    tokenizer = resolved.entry.build(resolved.config, BuildContext(weights=resolved.weights, device=args.device))
    if not callable(getattr(tokenizer, "features", None)):
        raise CadenzaError(f"semantic tokenizer {resolved.entry.name!r} has no features(audio, sample_rate) method, "
                           "so fit-kmeans cannot fit its codebook")
    return resolved, tokenizer


def _extract(tokenizer: Any, files: list[Path], reservoir: Reservoir, quiet: bool) -> list[Path]:
    """Feed every file's features to ``reservoir``; returns the files skipped (unreadable, empty, too short)."""
    import torch
    from tqdm import tqdm

    from cadenza.core.audio import load_audio

    skipped = []
    for path in tqdm(files, desc="features", unit="file", file=sys.stderr, disable=True if quiet else None, leave=False):
        try:
            audio, rate = load_audio(path)
        except InputError:
            skipped.append(path)
            continue
        frames = 0
        # Near-equal pieces of CHUNK_SECONDS to twice that: no short tail piece with edge effects.
        pieces = max(1, audio.shape[-1] // max(1, int(CHUNK_SECONDS * rate)))
        with torch.no_grad():  # not inference_mode: the reservoir updates its rows in place later
            for chunk in audio.tensor_split(pieces, dim=-1):
                feats = tokenizer.features(chunk[None], rate)[0]
                reservoir.add(feats.detach().float().cpu())
                frames += len(feats)
        if frames == 0:
            skipped.append(path)
    return skipped


def _usage(resolved: Any, tokenizer: Any, centroids: Any, out: Path, spec: str) -> str:
    """How to use the result: the ``kmeans`` param, or a weights folder for tokenizers without one."""
    import attrs

    name, k = resolved.entry.name, int(centroids.shape[0])
    fields = {f.name for f in attrs.fields(type(resolved.config))} if attrs.has(type(resolved.config)) else set()
    if "kmeans" in fields:
        return (f"use it: in the semantic_tokenizer ({name}) of {spec}, set params "
                f"kmeans: {out.resolve()} and vocab_size: {k}")
    if callable(getattr(tokenizer, "with_centroids", None)) and callable(getattr(tokenizer, "save_pretrained", None)):
        folder = out.with_suffix("") if out.suffix else out.with_name(out.name + "-weights")
        tokenizer.with_centroids(centroids).save_pretrained(folder)
        return (f"wrote weights {folder}; use it: in the semantic_tokenizer ({name}) of {spec}, "
                f"set weights: {folder.resolve()}")
    return f"{name} takes no `kmeans` param: load `centroids` from {out} in your own code"


def run(args: Any) -> int:
    _check_args(args)
    data, out = Path(args.data), Path(args.out)
    if not data.is_dir():
        raise InputError(f"--data {data}: not a folder")
    files = audio_files(data)
    if not files:
        raise InputError(f"{data}: no audio files found (searched recursively for formats soundfile reads)")
    resolved, tokenizer = _build_tokenizer(args)
    quiet = bool(getattr(args, "quiet", False))  # progress bars also stay off when stderr is not a terminal

    from safetensors.torch import save_file

    from cadenza.core.atomic import atomic_path
    from cadenza.core.kmeans import fit_kmeans

    reservoir = Reservoir(args.max_frames, args.seed)
    skipped = _extract(tokenizer, files, reservoir, quiet)
    read = len(files) - len(skipped)
    skip_note = f"{len(skipped)} skipped as unreadable, empty or too short" + (
        " (" + ", ".join(p.name for p in skipped[:3]) + (", ..." if len(skipped) > 3 else "") + ")" if skipped else "")
    if reservoir.seen == 0:
        raise InputError(f"{data}: no usable audio: {read} files read, {skip_note}")
    k = args.clusters or resolved.info.vocab_size
    frames = reservoir.rows.to(args.device)
    with tqdm_bar(args.epochs * len(frames), "k-means", quiet) as bar:
        centroids = fit_kmeans(frames, k, batch_size=args.batch_size, epochs=args.epochs, seed=args.seed,
                               progress=bar.update).cpu().contiguous()
    layer = getattr(tokenizer, "layer", None)
    metadata = {"tokenizer": resolved.entry.name, "layer": "" if layer is None else str(layer),
                "feature_dim": str(centroids.shape[1]), "clusters": str(k), "frames": str(len(frames)),
                "frames_seen": str(reservoir.seen), "files": str(read), "seed": str(args.seed),
                "weights": resolved.weights.source if resolved.weights is not None else ""}
    with atomic_path(out) as tmp:
        save_file({"centroids": centroids}, str(tmp), metadata=metadata)
    print(f"fit-kmeans: {read} files read, {skip_note}; {reservoir.seen} frames, {len(frames)} used; "
          f"{k} centroids of dim {centroids.shape[1]} -> {out}")
    if len(frames) < k:
        print(f"note: fewer frames ({len(frames)}) than clusters ({k}): some centroids are duplicates", file=sys.stderr)
    print(_usage(resolved, tokenizer, centroids, out, args.pipeline))
    return 0


def tqdm_bar(total: int, desc: str, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", file=sys.stderr, disable=True if quiet else None,
                leave=False, unit_scale=True)
