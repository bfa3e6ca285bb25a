"""``cadenza detect``: its parser here (imported by ``cadenza --help``, argparse only); its
handler in :mod:`cadenza.plugins.workflows.detect.command`, imported when the command runs."""

from __future__ import annotations

import argparse

from cadenza.core.cli.command import Command
from cadenza.core.spec.schema import DEFAULT_WATERMARK


def define(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    det = sub.add_parser("detect", help="say whether audio files carry a watermark",
                         description="Look for a watermark in each file (a folder: every file in it): one line per "
                         "file, marked or not, with the p-value (the chance that unmarked audio scores as high) and "
                         "the payload. The key comes from CADENZA_WATERMARK_KEY (else the public default). Exit 2 "
                         "when a file could not be read.")
    det.add_argument("paths", nargs="+", metavar="FILE", help="audio files or folders")
    det.add_argument("--watermark", default=DEFAULT_WATERMARK, metavar="NAME",
                     help=f"watermark plugin to look for (default: {DEFAULT_WATERMARK}; see cadenza components "
                     "--kind watermark)")
    det.add_argument("--max-seconds", type=float, default=600.0, metavar="S",
                     help="read at most this much of each file (default: 600)")
    det.add_argument("--json", action="store_true", help="one JSON object per file instead of text")
    return det


COMMAND = Command("detect", "cadenza.plugins.workflows.detect.command:run", define)
