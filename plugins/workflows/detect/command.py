"""``cadenza detect FILE...``: the watermark's verdict on each file, one line each."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import attrs

from cadenza.core.audio.io import load_audio
from cadenza.core.engine.limits import check_seconds
from cadenza.core.errors import CadenzaError, InputError
from cadenza.core.spec.params import ParamsError, structure_config
from cadenza.registry import get_registry


@attrs.frozen
class DetectConfig:
    """Which files, which watermark, how much of each file to read."""

    paths: tuple[str, ...]
    watermark: str
    max_seconds: float = 600.0


def files_of(paths: tuple[str, ...]) -> list[Path]:
    """The files named, a folder standing for every file in it (recursively, sorted)."""
    out: list[Path] = []
    for name in paths:
        path = Path(name)
        out += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return out


def detect(config: DetectConfig, registry: Any = None) -> list[dict[str, Any]]:
    """One record per file: ``{"file", "watermark", "marked", "p_value", "score", "payload"}``, or
    ``{"file", "error"}`` for a file that could not be read as audio."""
    check_seconds(config.max_seconds, "--max-seconds")
    registry = registry or get_registry()
    entry = registry.get("watermark", config.watermark)
    try:
        watermark = entry.build(structure_config(entry.config, {}))
    except ParamsError as exc:
        raise InputError(f"watermark {entry.name!r}: {exc}") from None
    records = []
    for path in files_of(config.paths):
        try:
            audio, rate = load_audio(path, config.max_seconds)
        except CadenzaError as exc:
            records.append({"file": str(path), "error": str(exc).removeprefix(f"{path}: ")})
            continue
        found = watermark.detect(audio, rate)
        records.append({"file": str(path), "watermark": entry.name, "marked": bool(found.marked),
                        "p_value": float(found.p_value), "score": float(found.score),
                        "payload": None if found.payload is None else f"0x{found.payload:08x}"})
    return records


def line(record: dict[str, Any]) -> str:
    if "error" in record:
        return f"{record['file']}: cannot read: {record['error']}"
    verdict = "watermarked" if record["marked"] else "not watermarked"
    p = record["p_value"]
    p_text = f"p={p:.2g}" if p > 0 and math.isfinite(p) else "p<1e-300"
    payload = f", payload {record['payload']}" if record["marked"] and record["payload"] else ""
    return f"{record['file']}: {verdict} ({record['watermark']}, {p_text}{payload})"


def run(args: argparse.Namespace) -> int:
    records = detect(DetectConfig(tuple(args.paths), args.watermark, args.max_seconds))
    if not records:
        raise InputError("no files to look at (the folders given are empty)")
    for record in records:
        text = json.dumps(record) if args.json else line(record)
        print(text, file=sys.stderr if "error" in record and not args.json else sys.stdout)
    return 2 if any("error" in r for r in records) else 0
