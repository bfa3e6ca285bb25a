"""``cadenza fit-kmeans``: fit a k-means codebook (semantic tokenizer) or residual codebooks (codec) on audio.

Semantic tokens are only as good as their centroids, and the right centroids depend on the
music a model will be trained on; this command fits them on the user's own audio with the
tokenizer the spec configures (same model, same layer). It builds only the spec's semantic
tokenizer, extracts its ``features(audio, sample_rate)`` from every audio file under
``--data``, keeps a seeded uniform subsample of at most ``--max-frames`` frames (priority
sampling: each frame draws a random key, the smallest keys stay, so memory is bounded however
much audio there is), fits :func:`cadenza.core.quantize.kmeans.fit_kmeans` and writes the centroids as
a safetensors file (atomically) with what produced them in its metadata.

With ``--component tokenizer`` it fits the acoustic codec's residual-VQ codebooks instead (a
codec with ``features``, ``with_codebooks`` and ``save_pretrained``, e.g. ``spectral-codec``):
codebook ``q`` is fitted by k-means on what codebooks ``0..q-1`` leave of the frames (each
frame minus its nearest codewords so far), and the file written is the codec's weights file.
``--data`` may also be a ``.jsonl``/``.csv`` manifest (e.g. a corpus split), so a held-out
split stays out of the fit.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cadenza.core.errors import CadenzaError, InputError
from cadenza.core.components import BuildContext
from cadenza.core.spec.validate import load_pipeline
from cadenza.registry import get_registry
from cadenza.core.audio.io import load_audio
from cadenza.core.files.atomic import atomic_path
from cadenza.core.engine.weights import Weights
from cadenza.plugins.workflows.data_sources import list_items

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
                        ("--epochs", args.epochs), ("--max-frames", args.max_frames),
                        ("--codebooks", getattr(args, "codebooks", None))):
        if value is not None and value < 1:
            raise InputError(f"{flag} must be >= 1, got {value}")
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")


def _build_tokenizer(args: Any) -> tuple[Any, Any]:
    component = _component(args)
    pipeline = load_pipeline(args.pipeline, get_registry())
    resolved = getattr(pipeline, component)
    if resolved is None:
        raise CadenzaError(f"{args.pipeline}: the spec has no {component} to fit")
    # The codec's codebooks are being replaced: build it with random ones, so that its default
    # (e.g. packaged) weights are neither needed nor read; the spec's params set the analysis.
    weights = resolved.weights
    if component == "tokenizer":
        weights = Weights("random", "random")
    tokenizer = resolved.entry.build(resolved.config, BuildContext(weights=weights, device=args.device))
    what = "semantic tokenizer" if component == "semantic_tokenizer" else "tokenizer"
    needs = ("features",) if component == "semantic_tokenizer" else ("features", "with_codebooks", "save_pretrained")
    missing = [name for name in needs if not callable(getattr(tokenizer, name, None))]
    if missing:
        if component == "semantic_tokenizer":
            raise CadenzaError(f"{what} {resolved.entry.name!r} has no features(audio, sample_rate) method, "
                               "so fit-kmeans cannot fit its codebook")
        raise CadenzaError(f"{what} {resolved.entry.name!r} has no {', '.join(missing)} method"
                           f"{'s' if len(missing) > 1 else ''}, so fit-kmeans cannot fit its codebooks "
                           "(spectral-codec can)")
    return resolved, tokenizer


def _component(args: Any) -> str:
    return getattr(args, "component", None) or "semantic_tokenizer"


def data_files(data: Path) -> list[Path]:
    """The audio files of ``--data``: a folder (recursive) or a ``.jsonl``/``.csv`` manifest."""
    if data.is_dir():
        files = audio_files(data)
        if not files:
            raise InputError(f"{data}: no audio files found (searched recursively for formats soundfile reads)")
        return files
    if data.is_file() and data.suffix.lower() in (".jsonl", ".csv"):
        files = [item.path for item in list_items(data)]
        if not files:
            raise InputError(f"{data}: the manifest lists no audio")
        return files
    raise InputError(f"--data {data}: not a folder or a .jsonl/.csv manifest")


def fit_residual(frames: Any, num_codebooks: int, k: int, *, batch_size: int, epochs: int, seed: int,
                 progress: Any = None) -> Any:
    """Residual-VQ codebooks ``[num_codebooks, k, D]`` for ``frames`` ``[N, D]`` by k-means, one at a time.

    Codebook ``q`` is fitted (seed ``seed + q``) on the residual the codebooks before it leave,
    then every frame's nearest codeword is subtracted: the same greedy encoding the codec uses.
    Each codebook starts from ``k`` frames drawn at random rather than k-means++ seeding: that
    seeding takes ``k`` sequential passes, which for 8 codebooks of 1024 took minutes of CPU and
    dominated the fit, while mini-batch updates and dead-codeword re-seeding do the spreading.
    """
    import torch

    from cadenza.core.quantize.kmeans import assign, fit_kmeans

    residual, books = frames.float().clone(), []
    gen = torch.Generator().manual_seed(seed)
    for q in range(num_codebooks):
        pick = torch.randint(len(residual), (k,), generator=gen) if len(residual) < k else \
            torch.randperm(len(residual), generator=gen)[:k]
        book = fit_kmeans(residual, k, batch_size=batch_size, epochs=epochs, seed=seed + q,
                          init=residual[pick.to(residual.device)], progress=progress)
        residual -= book[assign(residual, book)]
        books.append(book)
    return torch.stack(books)


def fit_codec_codebooks(codec: Any, frames: Any, num_codebooks: int, k: int, *, batch_size: int, epochs: int,
                        seed: int, progress: Any = None) -> Any:
    """Codebooks ``[num_codebooks, k, band_dim]`` for a codec, in the order its ``quantize`` reads them.

    A codec that quantises its frame vectors in bands (``config.groups`` > 1, product quantisation)
    gets one residual fit per band, on that band's part of every frame (band ``g`` seeded
    ``seed + 1000 * g``, so one band's fit does not depend on how many codebooks are asked for and
    the first ``Q`` codebooks of a fit are a fit of ``Q``); the per-band codebooks are then
    interleaved (codebook ``q`` = band ``q % groups``). With one group this is :func:`fit_residual`.
    """
    import torch

    groups = int(getattr(getattr(codec, "config", None), "groups", 1))
    if groups == 1:
        return fit_residual(frames, num_codebooks, k, batch_size=batch_size, epochs=epochs, seed=seed,
                            progress=progress)
    if num_codebooks % groups:
        raise InputError(f"--codebooks {num_codebooks}: the codec quantises {groups} bands, so the number of "
                         f"codebooks must be a multiple of {groups}")
    bands = codec.bands(frames.float())
    books = [fit_residual(bands[:, g].contiguous(), num_codebooks // groups, k, batch_size=batch_size, epochs=epochs,
                          seed=seed + 1000 * g, progress=progress) for g in range(groups)]
    return codec.interleave(torch.stack(books))


def _extract(tokenizer: Any, files: list[Path], reservoir: Reservoir, quiet: bool) -> list[Path]:
    """Feed every file's features to ``reservoir``; returns the files skipped (unreadable, empty, too short)."""
    import torch
    from tqdm import tqdm

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
    files = data_files(data)
    resolved, tokenizer = _build_tokenizer(args)
    quiet = bool(getattr(args, "quiet", False))  # progress bars also stay off when stderr is not a terminal

    from safetensors.torch import save_file

    from cadenza.core.quantize.kmeans import fit_kmeans

    reservoir = Reservoir(args.max_frames, args.seed)
    skipped = _extract(tokenizer, files, reservoir, quiet)
    read = len(files) - len(skipped)
    skip_note = f"{len(skipped)} skipped as unreadable, empty or too short" + (
        " (" + ", ".join(p.name for p in skipped[:3]) + (", ..." if len(skipped) > 3 else "") + ")" if skipped else "")
    if reservoir.seen == 0:
        raise InputError(f"{data}: no usable audio: {read} files read, {skip_note}")
    if _component(args) == "tokenizer":
        return _fit_codec(args, resolved, tokenizer, reservoir, read, skip_note)
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


def _fit_codec(args: Any, resolved: Any, codec: Any, reservoir: Reservoir, read: int, skip_note: str) -> int:
    """Fit the codec's residual codebooks on the sampled frames and write its weights file."""
    out = Path(args.out)
    # The spec's params (built with random codebooks), not the sizes of the weights it names.
    k = args.clusters or codec.info.codebook_size
    q = getattr(args, "codebooks", None) or codec.info.num_codebooks
    frames = reservoir.rows.to(args.device)
    with tqdm_bar(q * args.epochs * len(frames), "k-means", bool(getattr(args, "quiet", False))) as bar:
        books = fit_codec_codebooks(codec, frames, q, k, batch_size=args.batch_size, epochs=args.epochs,
                                    seed=args.seed, progress=bar.update).cpu().contiguous()
    metadata = {"frames": str(len(frames)), "frames_seen": str(reservoir.seen), "files": str(read),
                "seed": str(args.seed), "epochs": str(args.epochs)}
    codec.with_codebooks(books).save_pretrained(out, **metadata)
    print(f"fit-kmeans: {read} files read, {skip_note}; {reservoir.seen} frames, {len(frames)} used; "
          f"{q} residual codebooks of {k} x {books.shape[2]} -> {out}")
    if len(frames) < k:
        print(f"note: fewer frames ({len(frames)}) than clusters ({k}): some codewords are duplicates", file=sys.stderr)
    print(f"use it: in the tokenizer ({resolved.entry.name}) of {args.pipeline}, set weights: {out.resolve()}")
    return 0


def tqdm_bar(total: int, desc: str, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", file=sys.stderr, disable=True if quiet else None,
                leave=False, unit_scale=True)
