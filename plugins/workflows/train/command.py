"""``cadenza train``: train one stage of a spec on a token cache, the MuLan conditioner (``--stage mulan``),
or the instrument-family classifier of the ``instrument`` metric (``--stage instrument``).

Stages are trained by :mod:`cadenza.plugins.workflows.train.trainer` (Hugging Face Accelerate: the same command
on a CPU, a GPU, or several processes); the conditioner by :mod:`cadenza.plugins.workflows.train.mulan`;
the classifier by :mod:`cadenza.plugins.workflows.train.instrument`. Each is imported only when asked for,
and takes the typed config :func:`~cadenza.plugins.workflows.train.config.config_from_args` builds from
the command line.
Stages and the conditioner belong to a spec (``--pipeline``); the classifier does not.
"""

from __future__ import annotations

import argparse

from cadenza.core.errors import InputError
from cadenza.plugins.workflows.train.config import config_from_args
from cadenza.plugins.workflows.train.trainer import train
from cadenza.plugins.workflows.train.instrument import train_instrument
from cadenza.plugins.workflows.train.mulan import train_mulan


def run(args: argparse.Namespace) -> int:
    if args.stage == "instrument":
        if args.pipeline:
            raise InputError("--stage instrument trains the `instrument` metric's classifier, which belongs to no "
                             "pipeline: drop --pipeline")

        return int(train_instrument(config_from_args(args)) or 0)
    if not args.pipeline:
        what = "the spec whose mulan conditioner to train" if args.stage == "mulan" else "the spec the stage belongs to"
        raise InputError(f"--stage {args.stage} needs --pipeline: {what} (a spec file or preset)")
    if args.stage == "mulan":
        return int(train_mulan(config_from_args(args)) or 0)

    train(config_from_args(args))
    return 0
