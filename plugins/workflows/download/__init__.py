"""``cadenza download``: its parser here (imported by ``cadenza --help``, argparse only); its
handler in :mod:`cadenza.plugins.workflows.download.command`, imported when the command runs."""

from __future__ import annotations

import argparse

from cadenza.core.cli.command import DEFAULT_PIPELINE, Command


def define(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    dl = sub.add_parser("download", help="fetch every Hugging Face checkpoint a pipeline names into the local cache",
                        description="Download the hub ids a spec or preset names (its components' weights, or their "
                        "defaults) into the Hugging Face cache, so the machine can then generate offline "
                        "(HF_HUB_OFFLINE=1). Interrupted downloads resume; cached ones are not fetched again.")
    dl.add_argument("pipeline", nargs="?", default=DEFAULT_PIPELINE,
                    help=f"spec file or preset name (default: {DEFAULT_PIPELINE})")
    dl.add_argument("--revision", default=None, help="a branch, tag or commit of every repo (default: main)")
    dl.add_argument("--list", action="store_true", help="only list the hub ids and whether each is cached")
    dl.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    return dl


COMMAND = Command("download", "cadenza.plugins.workflows.download.command:run", define)
