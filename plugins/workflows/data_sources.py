"""Training data as users have it: a folder of audio files, or a manifest with captions.

A source is a folder (searched recursively for files libsndfile can read) or a manifest:
``.jsonl`` (one object per line with ``audio`` and optionally ``caption`` plus any other
fields) or ``.csv`` (a header row with an ``audio`` column, optionally ``caption``). Relative
audio paths are resolved beside the manifest. Items come back sorted and deterministic, so
shards, splits and resumption are reproducible.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path
from typing import Any

import attrs

from cadenza.core.errors import InputError
from cadenza.core.files.json_lines import read_objects
from cadenza.core.files.user_text import MiB, read_user_text

MAX_MANIFEST_BYTES = 256 * MiB  # about two million files; a bigger corpus is several manifests


@attrs.frozen
class Item:
    """One source file and what is known about it."""

    path: Path
    caption: str | None = None
    extras: dict[str, Any] = attrs.Factory(dict)


def audio_suffixes() -> set[str]:
    """File suffixes libsndfile reads here (``.wav``, ``.flac``, ``.ogg``, ``.mp3`` ...)."""
    import soundfile

    return {f".{fmt.lower()}" for fmt in soundfile.available_formats()} | {".oga", ".aif"}


def list_items(source: str | Path) -> list[Item]:
    """Every item of a folder or manifest; a malformed manifest line is one InputError (FILE:LINE)."""
    source = Path(source)
    if source.is_dir():
        suffixes = audio_suffixes()
        return [Item(p) for p in sorted(source.rglob("*")) if p.is_file() and p.suffix.lower() in suffixes]
    if not source.exists():
        raise InputError(f"{source}: no such folder or manifest")
    if source.suffix == ".jsonl":
        return _jsonl(source)
    if source.suffix == ".csv":
        return _csv(source)
    raise InputError(f"{source}: expected a folder of audio, a .jsonl or a .csv manifest")


def _item(row: dict[str, Any], base: Path, where: str) -> Item:
    audio = row.get("audio")
    if not isinstance(audio, str) or not audio.strip():
        raise InputError(f"{where}: missing 'audio' (the path of an audio file)")
    caption = row.get("caption")
    if caption is not None and not isinstance(caption, str):
        raise InputError(f"{where}: 'caption' must be text, got {caption!r}")
    path = Path(audio).expanduser()
    extras = {k: v for k, v in row.items() if k not in ("audio", "caption")}
    return Item(path if path.is_absolute() else base / path, caption or None, extras)


def _jsonl(path: Path) -> list[Item]:
    return [_item(row, path.parent, f"{path}:{number}") for number, row in read_objects(path, "manifest", MAX_MANIFEST_BYTES)]


def _csv(path: Path) -> list[Item]:
    reader = csv.DictReader(io.StringIO(read_user_text(path, "manifest", MAX_MANIFEST_BYTES), newline=""))
    if reader.fieldnames is None or "audio" not in reader.fieldnames:
        raise InputError(f"{path}:1: the header needs an 'audio' column")
    return [_item(row, path.parent, f"{path}:{number}") for number, row in enumerate(reader, start=2)]


def split_of(item: Item, valid_fraction: float) -> str:
    """``"valid"`` for a stable ``valid_fraction`` of source files, else ``"train"``.

    Decided per source file (by a hash of its name), so clips of one recording never land
    on both sides, and adding files never moves existing ones between splits.
    """
    digest = int(hashlib.sha1(str(item.path.name).encode() + str(item.path.parent.name).encode()).hexdigest()[:8], 16)
    return "valid" if digest / 0xFFFFFFFF < valid_fraction else "train"
