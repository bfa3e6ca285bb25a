"""``cadenza prepare``: its parser here (imported by ``cadenza --help``, argparse only); its
handler in :mod:`cadenza.plugins.workflows.prepare.command`, imported when the command runs."""

from __future__ import annotations

import argparse

from cadenza.core.cli.command import Command


def define(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    prep = sub.add_parser("prepare", help="tokenize a training set once into a token cache",
                          description="Run the spec's tokenizers and conditioner over a folder of audio (or a JSONL/CSV "
                          "manifest of audio paths and captions) and write codec codes, semantic ids and conditioning "
                          "to a sharded cache. Resumable: finished shards are kept.")
    prep.add_argument("--pipeline", "-p", required=True, help="spec file or preset whose components tokenize")
    prep.add_argument("--data", required=True, help="folder of audio (recursive) or a .jsonl/.csv manifest")
    prep.add_argument("--out", "-o", required=True, help="cache folder to write")
    prep.add_argument("--clip-seconds", type=float, default=10.0, help="cut audio into clips this long (default: 10)")
    prep.add_argument("--valid-fraction", type=float, default=0.05, help="share of source files held out (default: 0.05)")
    prep.add_argument("--shard-size", type=int, default=256, help="clips per shard file (default: 256)")
    prep.add_argument("--batch-size", type=int, default=8, help="clips per tokenizer call (default: 8)")
    prep.add_argument("--workers", type=int, default=2, help="processes decoding and resampling audio (default: 2)")
    prep.add_argument("--device", default="cpu")
    return prep


COMMAND = Command("prepare", "cadenza.plugins.workflows.prepare.command:run", define)
