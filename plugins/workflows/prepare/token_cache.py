"""The token cache: codec codes, semantic ids and conditioning of a training set, computed once.

``cadenza prepare`` runs the tokenizers and the conditioner over the user's audio a single
time and writes the results here, so stage training never re-runs a codec. Layout of a cache
folder::

    index.json                 what is in it: header (spec, streams, conditioning) + every clip
    shard-00000.safetensors    tensors of up to ``shard_size`` clips, keys "<row>/<name>"
    shard-00000.json           the clip records of that shard (written with it, atomically)
    report.json                files skipped at prepare time, and why

Each shard and its record file are written atomically and the index only at the end, so an
interrupted ``prepare`` keeps every finished shard and resumes by skipping them.

Per-clip tensors: ``acoustic`` [Q, T] codec codes, ``semantic`` [T] semantic ids,
``cond_audio`` (the conditioner's embedding of the clip's audio: [D] pooled or [L] tokens)
and ``cond_text`` (of its caption, when there is one).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cadenza.core.files.atomic import write_text
from cadenza.core.errors import InputError
from cadenza.core.spec.schema import spec_to_dict
from cadenza.core.files.atomic import atomic_path

if TYPE_CHECKING:
    import torch

CACHE_VERSION = 1
INDEX = "index.json"
REPORT = "report.json"


def code_dtype(size: int) -> Any:
    """The smallest integer dtype safetensors stores ids below ``size`` in."""
    import torch

    return torch.int16 if size <= 32767 else torch.int32


def cache_header(pipeline: Any, clip_seconds: float | None = None, **extra: Any) -> dict[str, Any]:
    """The header of a cache made for ``pipeline``: everything a trainer checks against a spec.

    ``extra`` (e.g. prepare's shard_size and valid_fraction) is stored beside it.
    """
    tok = pipeline.tokenizer.info
    streams: dict[str, Any] = {"acoustic": {
        "sample_rate": tok.sample_rate, "channels": tok.channels, "frame_rate": tok.frame_rate,
        "num_codebooks": tok.num_codebooks, "codebook_size": tok.codebook_size,
        "dtype": str(code_dtype(tok.codebook_size)).removeprefix("torch.")}}
    tensors = ["acoustic"]
    if pipeline.semantic_tokenizer is not None:
        sem = pipeline.semantic_tokenizer.info
        streams["semantic"] = {"sample_rate": sem.sample_rate, "frame_rate": sem.frame_rate,
                               "vocab_size": sem.vocab_size,
                               "dtype": str(code_dtype(sem.vocab_size)).removeprefix("torch.")}
        tensors.append("semantic")
    conditioning = None
    if pipeline.conditioner is not None:
        info = pipeline.conditioner.info
        conditioning = {"kind": info.kind, "dim": info.dim, "length": info.length,
                        "vocab_size": info.vocab_size, "has_audio": info.has_audio}
        masked = ["_mask"] if info.kind == "sequence" else []
        for name in (["cond_audio"] if info.has_audio else []) + ["cond_text"]:
            tensors += [name] + [name + m for m in masked]
    components = {c.slot: c.provenance() for c in
                  (pipeline.tokenizer, pipeline.semantic_tokenizer, pipeline.conditioner) if c is not None}
    header = {"spec": spec_to_dict(pipeline.spec), "components": components, "streams": streams,
              "conditioning": conditioning, "tensors": tensors, **extra}
    if clip_seconds is not None:
        header["clip_seconds"] = float(clip_seconds)
    return header


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}"


class CacheWriter:
    """Writes a cache shard by shard; ``header`` describes what every clip holds."""

    def __init__(self, folder: str | Path, header: dict[str, Any]):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.header = {"version": CACHE_VERSION, **header}

    def shard_done(self, shard: int) -> bool:
        """True when both files of ``shard`` exist (it was finished by this or an earlier run)."""
        stem = self.folder / shard_name(shard)
        return stem.with_suffix(".safetensors").exists() and stem.with_suffix(".json").exists()

    def write_shard(self, shard: int, clips: list[tuple[dict[str, Any], dict[str, "torch.Tensor"]]]) -> None:
        """Write ``[(record, tensors), ...]``; the tensors file first, the records last (the marker)."""
        from safetensors.torch import save_file

        stem = self.folder / shard_name(shard)
        tensors = {f"{row}/{key}": value.detach().cpu().clone()  # own memory: safetensors refuses shared
                   for row, (_, named) in enumerate(clips) for key, value in named.items()}
        with atomic_path(stem.with_suffix(".safetensors")) as tmp:
            save_file(tensors, str(tmp))
        records = [dict(record, shard=shard, row=row) for row, (record, _) in enumerate(clips)]
        write_text(stem.with_suffix(".json"), json.dumps(records) + "\n")

    def finish(self, report: dict[str, Any]) -> dict[str, Any]:
        """Gather every shard's records into ``index.json`` (and write ``report.json``)."""
        clips: list[dict[str, Any]] = []
        for file in sorted(self.folder.glob("shard-[0-9]*.json")):
            clips += json.loads(file.read_text())
        index = {**self.header, "clips": clips}
        write_text(self.folder / REPORT, json.dumps(report, indent=2) + "\n")
        write_text(self.folder / INDEX, json.dumps(index) + "\n")
        return index


class TokenCache:
    """Read access to a finished cache; shards are opened lazily and a few are kept open."""

    def __init__(self, folder: str | Path, keep_open: int = 4):
        self.folder = Path(folder)
        index_file = self.folder / INDEX
        if not index_file.exists():
            raise InputError(f"{self.folder}: not a token cache (no {INDEX}; run `cadenza prepare` to make one)")
        try:
            index = json.loads(index_file.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{index_file}: unreadable cache index ({exc})") from None
        if index.get("version") != CACHE_VERSION:
            raise InputError(f"{index_file}: cache version {index.get('version')!r}, this Cadenza reads {CACHE_VERSION}")
        self.header = {k: v for k, v in index.items() if k != "clips"}
        self.clips: list[dict[str, Any]] = index["clips"]
        self._open: OrderedDict[int, Any] = OrderedDict()
        self._keep = keep_open

    def __len__(self) -> int:
        return len(self.clips)

    def split(self, name: str) -> list[int]:
        """Indices of the clips in split ``name`` ("train" or "valid")."""
        return [i for i, clip in enumerate(self.clips) if clip.get("split", "train") == name]

    def load(self, index: int) -> dict[str, "torch.Tensor"]:
        """Every tensor of clip ``index`` (names as in the module docstring)."""
        from safetensors import safe_open

        clip = self.clips[index]
        shard = clip["shard"]
        handle = self._open.get(shard)
        if handle is None:
            path = self.folder / f"{shard_name(shard)}.safetensors"
            try:
                handle = safe_open(str(path), framework="pt")
            except Exception as exc:  # noqa: BLE001 - missing or corrupt shard
                raise InputError(f"{path}: unreadable cache shard ({exc})") from None
            self._open[shard] = handle
            if len(self._open) > self._keep:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(shard)
        prefix = f"{clip['row']}/"
        return {key[len(prefix):]: handle.get_tensor(key) for key in handle.keys() if key.startswith(prefix)}

    def __getstate__(self) -> dict[str, Any]:  # picklable for DataLoader workers: handles reopen
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()
        return state
