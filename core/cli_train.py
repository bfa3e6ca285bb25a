"""``cadenza train``: train one stage of a spec on a token cache, or (``--stage mulan``) the MuLan conditioner.

Stages are trained by :mod:`cadenza.core.trainer` (Hugging Face Accelerate: the same command
on a CPU, a GPU, or several processes); the conditioner by :mod:`cadenza.core.train_mulan`.
Either is imported only when asked for.
"""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    if args.stage == "mulan":
        from cadenza.core.train_mulan import train_mulan

        return int(train_mulan(args) or 0)
    from cadenza.core.trainer import train

    train(args)
    return 0
