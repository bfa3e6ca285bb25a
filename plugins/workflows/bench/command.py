"""``cadenza bench``: measure every combination of a matrix, then write tables and plots."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from cadenza.core.errors import InputError
from cadenza.plugins.workflows.bench.matrix import load_matrix
from cadenza.plugins.workflows.bench.run import parse_shard, run_matrix, shard_device
from cadenza.registry import get_registry
from cadenza.plugins.workflows.bench.report import machine, write_report


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces the run (its measuring options; not --resume/--only/--shard)."""
    parts = ["cadenza", "bench", args.matrix, "--out", args.out]
    if args.workers != 1:
        parts += ["--workers", str(args.workers)]
    if args.device != "cpu":
        parts += ["--device", args.device]
    return " ".join(shlex.quote(p) for p in parts)


def _list(matrix) -> int:
    width = max(len(c.id) for c in matrix.combinations)
    for combo in matrix.combinations:
        state = "ok" if combo.reason is None else f"incompatible: {combo.reason}"
        print(f"{combo.id:<{width}}  {state}")
    return 0


def run(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.matrix, get_registry())
    if getattr(args, "list", False):
        return _list(matrix)
    shard = parse_shard(getattr(args, "shard", None))
    if shard is not None and args.only:
        raise InputError("give --only or --shard, not both")
    device = shard_device(args.device, shard)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")

    def progress(total: int):
        from tqdm import tqdm

        return tqdm(total=total, desc="bench", unit="combination", disable=args.quiet, file=sys.stderr)

    def note(line: str) -> None:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)

    rows = run_matrix(matrix, out, device=device, workers=args.workers, resume=args.resume, only=args.only,
                      shard=shard, progress=progress, note=note)
    counts = {status: sum(r["status"] == status for r in rows) for status in ("ok", "failed", "incompatible")}
    total = len(matrix.combinations)
    summary = (f"{counts['ok']} measured, {counts['failed']} failed, {counts['incompatible']} incompatible "
               f"of {total} combinations")
    if shard is None:
        header = {"name": matrix.name, "command": _command(args), "machine": f"{machine()}; device {device}",
                  "settings": _settings_line(matrix)}
        write_report(rows, out, header)
        print(f"{summary}; results in {out / 'results.md'}")
    else:
        print(f"{summary}; shard {shard.index}/{shard.count} written to {out / shard.filename} (merge: run again "
              "without --shard, with --resume)")
    return 1 if counts["failed"] else 0


def _settings_line(matrix) -> str:
    seconds = f"{matrix.seconds:g} s" if matrix.seconds else "each spec's output.seconds"
    return (f"{len(matrix.prompts)} prompts x {len(matrix.seeds)} seeds of {seconds}, "
            f"{len(matrix.references)} reference clips, metrics: {', '.join(m.name for m in matrix.metrics) or 'none'}"
            f"{', warm-up run first' if matrix.warmup else ''}")
