"""The ``cadenza`` command line.

Only argparse and the standard library are imported here: each subcommand's module (and
torch, and every plugin) is imported when that subcommand runs, so ``cadenza --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# subcommand -> (module, function); the module is imported only when the command runs
COMMANDS = {
    "generate": ("cadenza.core.cli_generate", "run"),
    "validate": ("cadenza.core.cli_inspect", "run_validate"),
    "plugins": ("cadenza.core.cli_inspect", "run_plugins"),
    "components": ("cadenza.core.cli_inspect", "run_components"),
    "pipelines": ("cadenza.core.cli_inspect", "run_pipelines"),
    "fit-kmeans": ("cadenza.core.cli_fit_kmeans", "run"),
}
KINDS = ("tokenizer", "semantic_tokenizer", "conditioner", "stage_model", "sampler", "metric")
DEFAULT_PIPELINE = "tiny-random"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cadenza")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str, **kwargs: object):
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"cadenza {_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cadenza",
        description="Plugin-based hierarchical text-to-music generation (MusicLM-style cascades).",
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    gen = sub.add_parser("generate", help="generate audio from a text prompt",
                         description="Generate audio from a text prompt with a pipeline spec or preset.")
    gen.add_argument("prompt", help="text describing the music")
    gen.add_argument("--pipeline", "-p", default=DEFAULT_PIPELINE,
                     help=f"spec file or preset name (default: {DEFAULT_PIPELINE})")
    gen.add_argument("--seconds", "-s", type=float, default=None, help="duration (default: the spec's output.seconds)")
    gen.add_argument("--seed", type=int, default=0, help="random seed; same seed, same audio (default: 0)")
    gen.add_argument("--output", "-o", default="out.wav", help="audio file to write (.wav, .flac, .ogg); "
                     "a JSON sidecar with the same stem records how it was made (default: out.wav)")
    gen.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    gen.add_argument("--quiet", "-q", action="store_true", help="no progress bars or notes")

    val = sub.add_parser("validate", help="check pipeline specs without building any model",
                         description="Check specs; exit 0 when all are valid, else print FILE:LINE: message lines and exit 2.")
    val.add_argument("specs", nargs="+", metavar="SPEC", help="spec file or preset name")

    plug = sub.add_parser("plugins", help="list installed plugins and their load errors")
    plug.add_argument("--json", action="store_true", help="machine-readable output")

    comp = sub.add_parser("components", help="list registered components")
    comp.add_argument("--kind", choices=KINDS, help="only this kind")
    comp.add_argument("--json", action="store_true", help="machine-readable output")

    pipes = sub.add_parser("pipelines", help="list pipeline presets")
    pipes.add_argument("--json", action="store_true", help="machine-readable output")
    km = sub.add_parser("fit-kmeans", help="fit a semantic tokenizer's k-means codebook on your audio",
                        description="Extract the semantic tokenizer's features from a folder of audio and fit its "
                        "k-means codebook (mini-batch k-means in torch); writes a safetensors file of centroids.")
    km.add_argument("--pipeline", "-p", required=True, help="spec file or preset whose semantic_tokenizer to fit")
    km.add_argument("--data", required=True, help="folder of audio files (searched recursively)")
    km.add_argument("--out", "-o", required=True, help="output .safetensors file of centroids")
    km.add_argument("--clusters", type=int, default=None, help="number of centroids (default: the tokenizer's vocab_size)")
    km.add_argument("--batch-size", type=int, default=4096, help="feature frames per k-means update (default: 4096)")
    km.add_argument("--epochs", type=int, default=5, help="passes over the extracted features (default: 5)")
    km.add_argument("--max-frames", type=int, default=200_000, help="cap on feature frames kept in memory (default: 200000)")
    km.add_argument("--seed", type=int, default=0)
    km.add_argument("--device", default="cpu")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func = COMMANDS[args.command]
    try:
        from cadenza.core.errors import CadenzaError

        handler = getattr(importlib.import_module(module_name), func)
        return int(handler(args) or 0)
    except CadenzaError as exc:
        lines = getattr(exc, "problems", None) or [f"cadenza {args.command}: error: {exc}"]
        print("\n".join(lines), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"cadenza {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, most likely in a plugin: one line unless asked for more
        if os.environ.get("CADENZA_DEBUG"):
            raise
        print(f"cadenza {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(set CADENZA_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
