"""``cadenza export``: its parser here (imported by ``cadenza --help``, argparse only); its
handler in :mod:`cadenza.plugins.workflows.export.command`, imported when the command runs."""

from __future__ import annotations

import argparse

from cadenza.core.cli.command import Command


def define(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    ex = sub.add_parser("export", help="write a pipeline spec that uses trained weights",
                        description="Copy a spec, pointing each trained stage (and conditioner) at the exported "
                        "weights of its run, so `cadenza generate --pipeline OUT/pipeline.yaml` uses them.")
    ex.add_argument("--pipeline", "-p", required=True, help="the spec the runs were trained with")
    ex.add_argument("--run", action="append", required=True, metavar="STAGE=RUN",
                    help="a trained run folder for a stage (repeatable), e.g. --run coarse=runs/coarse")
    ex.add_argument("--out", "-o", required=True, help="folder to write pipeline.yaml and the weights into")
    return ex


COMMAND = Command("export", "cadenza.plugins.workflows.export.command:run", define)
