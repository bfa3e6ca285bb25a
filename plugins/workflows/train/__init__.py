"""``cadenza train``: its parser here (imported by ``cadenza --help``, argparse only); its
handler in :mod:`cadenza.plugins.workflows.train.command`, imported when the command runs."""

from __future__ import annotations

import argparse

from cadenza.core.cli.command import Command


def define(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    tr = sub.add_parser("train", help="train one stage of a pipeline (or the MuLan conditioner)",
                        description="Train a stage on a token cache with Hugging Face Accelerate: the same command runs "
                        "on a CPU, one GPU, or many through `accelerate launch`.")
    tr.add_argument("--pipeline", "-p", help="spec file or preset (required for stages and mulan)")
    tr.add_argument("--stage", required=True, help="a stage name from the spec, 'mulan' for the conditioner, or "
                    "'instrument' for the instrument-family classifier of the `instrument` metric")
    tr.add_argument("--cache", help="token cache from `cadenza prepare` (stages)")
    tr.add_argument("--data", help="folder or manifest of audio + captions (mulan), or a `cadenza corpus` folder "
                    "or manifest (instrument)")
    tr.add_argument("--out", "-o", required=True, help="run folder: checkpoints, logs, exported weights")
    tr.add_argument("--steps", type=int, default=1000, help="optimizer steps (default: 1000)")
    tr.add_argument("--batch-size", type=int, default=8, help="examples per process per micro-batch (default: 8)")
    tr.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default: 1)")
    tr.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (default: 3e-4)")
    tr.add_argument("--warmup-steps", type=int, default=100, help="linear warm-up, then cosine decay (default: 100)")
    tr.add_argument("--weight-decay", type=float, default=0.01)
    tr.add_argument("--clip-grad", type=float, default=1.0, help="gradient-norm clipping (default: 1.0)")
    tr.add_argument("--ema-decay", type=float, default=0.999, help="EMA of the weights; 0 turns it off (default: 0.999)")
    tr.add_argument("--seconds", type=float, default=None, help="crop length of each example (default: the cache's clips)")
    tr.add_argument("--conditioning", choices=["audio", "text"], default=None,
                    help="train on the conditioner's audio embedding of each clip (MuLan trick) or on its caption "
                    "(default: audio when the conditioner embeds audio)")
    tr.add_argument("--valid-every", type=int, default=200, help="validation loss every N steps (default: 200)")
    tr.add_argument("--checkpoint-every", type=int, default=500, help="checkpoint every N steps (default: 500)")
    tr.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    tr.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no")
    tr.add_argument("--num-workers", type=int, default=0, help="data-loading processes (default: 0)")
    tr.add_argument("--seed", type=int, default=0)
    return tr


COMMAND = Command("train", "cadenza.plugins.workflows.train.command:run", define)
