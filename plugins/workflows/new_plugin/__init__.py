"""``cadenza new-plugin``: its parser here (imported by ``cadenza --help``, argparse only); its
handler in :mod:`cadenza.plugins.workflows.new_plugin.command`, imported when the command runs."""

from __future__ import annotations

import argparse

from cadenza.core.cli.command import Command


def define(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    new = sub.add_parser("new-plugin", help="write a ready-to-install plugin package",
                         description="Write a plugin package (pyproject with the entry point, a working component "
                         "skeleton, a passing test, a README) into a new folder.")
    new.add_argument("name", help="package name, e.g. cadenza-snac")
    new.add_argument("--kind", required=True, choices=["tokenizer", "conditioner", "stage_model", "sampler", "metric"])
    new.add_argument("--out", "-o", default=".", help="folder to create the package folder in (default: .)")
    return new


COMMAND = Command("new-plugin", "cadenza.plugins.workflows.new_plugin.command:run", define)
