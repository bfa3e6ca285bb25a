"""The ``cadenza`` command line.

The core's own commands (generate, validate and the listings) are defined here; every other
command (train, prepare, corpus, evaluate, bench, ...) comes from an entry point of the
``cadenza.commands`` group (:mod:`cadenza.core.cli.command`), the built-in workflows exactly as
a third party's. Only argparse and the commands' light modules are imported to parse: a
handler's module (and torch, and every plugin) is imported when its command runs, so
``cadenza --help`` is fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import entrypoints

from cadenza.core.cli.command import COMMANDS_GROUP, DEFAULT_PIPELINE, Command
from cadenza.core.components import KINDS, import_object
from cadenza.core.engine.device import check_device
from cadenza.core.cli.messages import os_error_line, problem_lines
from cadenza.core.errors import CadenzaError

# subcommand -> handler ("module:attr", as a Command's); the module is imported only when the command runs
COMMANDS = {
    "generate": "cadenza.core.cli.generate:run",
    "validate": "cadenza.core.cli.inspect:run_validate",
    "plugins": "cadenza.core.cli.inspect:run_plugins",
    "components": "cadenza.core.cli.inspect:run_components",
    "pipelines": "cadenza.core.cli.inspect:run_pipelines",
}


def installed_commands() -> list[Command]:
    """Every :class:`Command` named by a ``cadenza.commands`` entry point, by name.

    One that fails to load, is not a Command, or reuses a core command's name is left out with
    one line on stderr, so a broken package never breaks the rest of the command line.
    """
    found: dict[str, Command] = {}
    for point in entrypoints.get_group_all(COMMANDS_GROUP):
        try:
            command = point.load()
            if not isinstance(command, Command):
                raise TypeError(f"{point.object_name or point.module_name} is not a cadenza.core.cli.command.Command")
            if command.name in COMMANDS or command.name in found:
                raise ValueError(f"command name {command.name!r} is already taken")
        except Exception as exc:  # a third party's bug: say so, keep the other commands
            print(f"cadenza: command entry point {point.name!r} ({point.module_name}) left out: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        found[command.name] = command
    return [found[name] for name in sorted(found)]


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


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (argparse prints the whole usage first).

    Subcommand parsers are made of the same class, so ``cadenza generate --seed 1.5`` reads
    ``cadenza generate: error: argument --seed: invalid int value: '1.5' (see cadenza generate --help)``.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a count of things to do at once)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def loudness_value(text: str) -> float | str:
    """argparse type of --loudness: a LUFS target from -70 to 0, or ``none`` (no output stage)."""
    if text.strip().lower() in ("none", "off"):
        return "none"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a loudness in LUFS (e.g. -14) or none, got {text!r}") from None
    if not -70 <= value <= 0:
        raise argparse.ArgumentTypeError(f"must be from -70 to 0 LUFS, got {text}")
    return value


def build_parser(commands: Sequence[Command] | None = None) -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="cadenza",
        description="Plugin-based hierarchical text-to-music generation (MusicLM-style cascades).",
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    gen = sub.add_parser("generate", help="generate audio from a text prompt",
                         description="Generate audio from a text prompt with a pipeline spec or preset: one prompt "
                         "into --output, or every line of a JSONL file (--prompts) into a folder (--out). Durations "
                         "beyond --window are generated window by window, each continuing the tail of the last.")
    gen.add_argument("prompt", nargs="?", help="text describing the music (or use --prompts)")
    gen.add_argument("--pipeline", "-p", default=DEFAULT_PIPELINE,
                     help=f"spec file or preset name (default: {DEFAULT_PIPELINE})")
    gen.add_argument("--seconds", "-s", type=float, default=None,
                     help="duration, the prime included (default: the spec's output.seconds)")
    gen.add_argument("--seed", type=int, default=0, help="random seed; same seed, same audio (default: 0)")
    gen.add_argument("--output", "-o", default=None, help="audio file to write (.wav, .flac, .ogg); "
                     "a JSON sidecar with the same stem records how it was made (default: out.wav)")
    gen.add_argument("--prime", metavar="AUDIO", default=None,
                     help="audio file to continue: the output starts with it, as decoded from its codec tokens")
    gen.add_argument("--only-new", action="store_true", help="with --prime: write only the audio after the prime")
    gen.add_argument("--melody", metavar="FILE", default=None,
                     help="melody to follow: a MIDI file (its melody line) or audio (humming, whistling, a recording; "
                     "pitch-tracked); the text still sets instrument and mood")
    gen.add_argument("--melody-source", metavar="NAME", default=None,
                     help="melody source plugin to read --melody with (default: the first that accepts the file)")
    gen.add_argument("--rerank", type=int, default=1, metavar="K",
                     help="generate K candidates per prompt and keep the best by --rerank-metric (default: 1, no reranking)")
    gen.add_argument("--rerank-metric", metavar="NAME", default=None,
                     help="metric plugin that scores candidates, higher is better (default: text-similarity, the "
                     "conditioner's audio-text similarity as in MusicLM's MuLan reranking, where the conditioner "
                     "embeds audio; else adherence, the prompt's stated attributes measured in each candidate)")
    gen.add_argument("--window", type=float, default=None, metavar="S",
                     help="generation window in seconds (default: the spec's output.window; without one 10, or the spec's "
                     "output.seconds if longer)")
    gen.add_argument("--overlap", type=float, default=None, metavar="S",
                     help="seconds of each window's tail the next window continues from (default: the spec's output.overlap "
                     "when the window is the spec's, else half the window)")
    gen.add_argument("--hold", type=float, default=None, metavar="PENALTY",
                     help="long-form piece memory: logit penalty on the tokens the piece's opening did not use, so "
                     "later windows keep its key and sound (default: the spec's output.hold; 0: off)")
    gen.add_argument("--beat", type=float, default=None, metavar="SCALE",
                     help="beat grid: logit scale steering the semantic stage's onsets onto one tempo, so long pieces "
                     "keep the tempo of their opening (default: the spec's output.beat; 0: off)")
    gen.add_argument("--bpm", type=float, default=None, metavar="BPM",
                     help="hold this tempo from the first beat, in step with --prime's beats if given (turns the beat "
                     "grid on at scale 8 where the spec has it off; needs a semantic tokenizer that knows onsets, "
                     "like music-features)")
    gen.add_argument("--prompts", metavar="JSONL", default=None,
                     help='batch mode: one {"prompt": ..., "seed", "seconds", "prime", "melody", "bpm", "name"} '
                     'object per line')
    gen.add_argument("--out", metavar="DIR", default=None,
                     help="batch mode: folder to write NAME.wav and NAME.json into (NAME: the line's name, "
                     "else its line number)")
    gen.add_argument("--resume", action="store_true", help="batch mode: skip prompts whose outputs exist")
    gen.add_argument("--batch-size", type=positive_int, default=8, metavar="N",
                     help="batch mode: most prompts generated together (default: 8)")
    gen.add_argument("--no-watermark", dest="watermark", action="store_false",
                     help="write the audio without the spec's watermark (by default every file is marked as generated; "
                     "`cadenza detect` finds the mark)")
    gen.add_argument("--loudness", type=loudness_value, default=None, metavar="LUFS",
                     help="bring each clip to this integrated loudness (ITU-R BS.1770), then hold true peaks under "
                     "the spec's ceiling; none: write the level the model made, only clipped (default: the spec's "
                     "output.loudness, -14 unless it says otherwise)")
    gen.add_argument("--plot", action="store_true",
                     help="also write a PNG spectrogram beside each audio file (same stem, .png)")
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
    for command in installed_commands() if commands is None else commands:
        command.define(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    commands = installed_commands()
    args = build_parser(commands).parse_args(argv)
    handlers = COMMANDS | {c.name: c.handler for c in commands}
    try:
        if isinstance(getattr(args, "device", None), str):
            check_device(args.device)
        return int(import_object(handlers[args.command])(args) or 0)
    except CadenzaError as exc:
        print("\n".join(problem_lines(args.command, exc)), file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the machine said no (permissions, no space, a name too long): not a bug
        print(os_error_line(args.command, exc), file=sys.stderr)
        return 2
    except MemoryError:
        print(f"cadenza {args.command}: error: not enough memory for this run (try a shorter --seconds or a "
              "smaller pipeline)", file=sys.stderr)
        return 2
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
