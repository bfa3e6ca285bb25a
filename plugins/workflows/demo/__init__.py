"""``cadenza demo``: its parser here (imported by ``cadenza --help``, argparse only, so no gradio);
its handler in :mod:`cadenza.plugins.workflows.demo.command`, imported when the command runs."""

from __future__ import annotations

import argparse

from cadenza.core.cli.command import DEFAULT_PIPELINE, Command

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_SECONDS = 30.0


def port_number(text: str) -> int:
    """argparse type: a TCP port from 1 to 65535."""
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, got {value}")
    return value


def define(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    demo = sub.add_parser("demo", help="a web page to try pipelines: prompt in, audio and spectrogram out",
                          description="Serve a local web page (Gradio) with a prompt, a pipeline from the installed "
                          "presets, seconds, seed and an optional melody file; each click generates a watermarked "
                          "clip and shows its audio and spectrogram. Needs the demo extra: pip install "
                          "'cadenza[demo]'. Stop it with Ctrl-C.")
    demo.add_argument("--pipeline", "-p", default=DEFAULT_PIPELINE,
                      help=f"pipeline selected when the page opens, built before it is served: a preset name or a "
                      f"spec file (default: {DEFAULT_PIPELINE})")
    demo.add_argument("--host", default=DEFAULT_HOST,
                      help=f"address to listen on (default: {DEFAULT_HOST}, this machine only; 0.0.0.0 shares it "
                      "with the network)")
    demo.add_argument("--port", type=port_number, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    demo.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, metavar="S",
                      help=f"longest clip the page may ask for (default: {DEFAULT_MAX_SECONDS:g})")
    demo.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    return demo


COMMAND = Command("demo", "cadenza.plugins.workflows.demo.command:run", define)
