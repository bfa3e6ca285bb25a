"""``cadenza new-plugin``: its parser here (imported by ``cadenza --help``, argparse only); its
handler in :mod:`cadenza.plugins.workflows.new_plugin.command`, imported when the command runs."""

from __future__ import annotations

import argparse

from cadenza.core.cli.command import Command

# The kinds a package can provide (package.HOOKS, which a test holds equal to this list).
KINDS = ["tokenizer", "conditioner", "stage_model", "sampler", "metric", "pipeline"]


def define(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    new = sub.add_parser("new-plugin", help="write a ready-to-install plugin package",
                         description="Write a plugin package (pyproject with the entry point, a working skeleton "
                         "per kind, passing tests, a README) into a new folder. Repeat --kind for one package "
                         "providing several kinds; pipeline is a preset shipped as package data.")
    new.add_argument("name", help="package name, e.g. cadenza-snac")
    new.add_argument("--kind", required=True, action="append", choices=KINDS,
                     help="what the package provides; repeat it for several (each once)")
    new.add_argument("--out", "-o", default=".", help="folder to create the package folder in (default: .)")
    return new


COMMAND = Command("new-plugin", "cadenza.plugins.workflows.new_plugin.command:run", define)
