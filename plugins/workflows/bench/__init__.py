"""``cadenza bench``: its parser here (imported by ``cadenza --help``, argparse only); its
handler in :mod:`cadenza.plugins.workflows.bench.command`, imported when the command runs."""

from __future__ import annotations

import argparse

from cadenza.core.cli.command import Command


def define(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    bench = sub.add_parser("bench", help="benchmark a matrix of component combinations",
                           description="Expand a matrix spec (a base pipeline and per-slot alternatives) into "
                           "combinations, skip incompatible ones with the validator's reason, and measure each: speed "
                           "and memory per stage, codec fidelity, prompt adherence, text-audio similarity, FAD. Each "
                           "finished combination is appended to OUT/results.jsonl at once; then a Markdown and CSV "
                           "table and PNG plots are written.")
    bench.add_argument("matrix", help="matrix spec (YAML)")
    bench.add_argument("--out", "-o", required=True, metavar="DIR", help="folder for results, tables and plots")
    bench.add_argument("--resume", action="store_true", help="keep finished combinations in OUT/results.jsonl")
    bench.add_argument("--workers", type=int, default=1, metavar="N",
                       help="combinations measured in parallel worker processes (default: 1)")
    bench.add_argument("--only", action="append", metavar="ID", default=None,
                       help="run only this combination id (repeatable), e.g. one rank's share on another machine")
    bench.add_argument("--shard", metavar="K/N", default=None,
                       help="run every N-th combination from the K-th (0-based) into OUT/results-K-of-N.jsonl; 'env' "
                       "takes K and N from RANK and WORLD_SIZE (torchrun). Merge: run again without --shard, --resume")
    bench.add_argument("--list", action="store_true",
                       help="print each combination's id and whether it is compatible, run nothing")
    bench.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    bench.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return bench


COMMAND = Command("bench", "cadenza.plugins.workflows.bench.command:run", define)
