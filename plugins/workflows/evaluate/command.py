"""``cadenza evaluate``: the command line turned into an
:class:`~cadenza.plugins.workflows.evaluate.config.EvaluateConfig`, run by
:func:`cadenza.plugins.workflows.evaluate.evaluation.evaluate`.
"""

from __future__ import annotations

import argparse

from cadenza.plugins.workflows.evaluate.config import config_from_args
from cadenza.plugins.workflows.evaluate.evaluation import evaluate


def run(args: argparse.Namespace) -> int:
    """``cadenza evaluate``: the config the command line asks for, evaluated."""
    return evaluate(config_from_args(args))
