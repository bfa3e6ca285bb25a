"""``cadenza demo``: the command line's part only; the page is :mod:`.app`, the work :mod:`.clips`.

Gradio is checked for first, so a machine without the demo extra gets the one line saying how
to install it before any model is built. The selected pipeline is built before the page is
served, so a bad ``--pipeline`` fails here with exit 2 rather than on the first click.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from cadenza.plugins.workflows.demo.app import MissingExtraError, require_gradio, serve
from cadenza.plugins.workflows.demo.clips import ClipMaker, pipeline_choices
from cadenza.plugins.workflows.demo.config import DemoConfig
from cadenza.registry import get_registry


def run(args: argparse.Namespace) -> int:
    try:
        require_gradio()
    except MissingExtraError as exc:  # the whole message is the line; no "cadenza demo: error:" before it
        print(exc, file=sys.stderr)
        return exc.exit_code
    registry = get_registry()
    with tempfile.TemporaryDirectory(prefix="cadenza-demo-") as out_dir:
        config = DemoConfig(pipeline=args.pipeline, pipelines=pipeline_choices(registry, args.pipeline),
                            out_dir=out_dir, max_seconds=args.max_seconds, device=args.device, host=args.host,
                            port=args.port)
        maker = ClipMaker(config, registry)
        maker.cascade(config.pipeline)
        print(f"cadenza demo: pipeline {config.pipeline!r} ready; serving http://{config.host}:{config.port} "
              "(Ctrl-C stops it)", file=sys.stderr)
        serve(config, maker)
    return 0
