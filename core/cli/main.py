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

from cadenza.core.components import KINDS
from cadenza.core.errors import CadenzaError

# subcommand -> (module, function); the module is imported only when the command runs
COMMANDS = {
    "generate": ("cadenza.core.cli.generate", "run"),
    "validate": ("cadenza.core.cli.inspect", "run_validate"),
    "plugins": ("cadenza.core.cli.inspect", "run_plugins"),
    "components": ("cadenza.core.cli.inspect", "run_components"),
    "pipelines": ("cadenza.core.cli.inspect", "run_pipelines"),
    "fit-kmeans": ("cadenza.plugins.workflows.fit_kmeans.command", "run"),
    "prepare": ("cadenza.plugins.workflows.prepare.command", "run"),
    "train": ("cadenza.plugins.workflows.train.command", "run"),
    "export": ("cadenza.plugins.workflows.export.command", "run"),
    "new-plugin": ("cadenza.plugins.workflows.new_plugin.command", "run"),
    "corpus": ("cadenza.plugins.workflows.corpus.command", "run"),
    "evaluate": ("cadenza.plugins.workflows.evaluate.command", "run"),
    "bench": ("cadenza.plugins.workflows.bench.command", "run"),
}
DEFAULT_PIPELINE = "default"


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
    gen.add_argument("--rerank-metric", metavar="NAME", default="text-similarity",
                     help="metric plugin that scores candidates, higher is better (default: text-similarity, the "
                     "pipeline conditioner's audio-text similarity, as MusicLM's MuLan reranking)")
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
    gen.add_argument("--batch-size", type=int, default=8, metavar="N",
                     help="batch mode: most prompts generated together (default: 8)")
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
    km = sub.add_parser("fit-kmeans", help="fit a semantic tokenizer's k-means codebook, or a codec's RVQ codebooks",
                        description="Extract the semantic tokenizer's features from audio and fit its k-means "
                        "codebook (mini-batch k-means in torch); writes a safetensors file of centroids. With "
                        "--component tokenizer, fit the acoustic codec's residual-VQ codebooks one after another "
                        "(e.g. spectral-codec) and write its weights file.")
    km.add_argument("--pipeline", "-p", required=True, help="spec file or preset whose component to fit")
    km.add_argument("--component", choices=("semantic_tokenizer", "tokenizer"), default="semantic_tokenizer",
                    help="which of the spec's components to fit (default: semantic_tokenizer)")
    km.add_argument("--data", required=True, help="folder of audio files (searched recursively) or a .jsonl/.csv "
                    "manifest of audio paths (e.g. a corpus's train.jsonl)")
    km.add_argument("--out", "-o", required=True, help="output .safetensors file (centroids, or the codec's weights)")
    km.add_argument("--clusters", type=int, default=None, help="number of centroids (default: the tokenizer's "
                    "vocab_size, or the codec's codebook_size)")
    km.add_argument("--codebooks", type=int, default=None,
                    help="tokenizer: residual codebooks to fit (default: the codec's num_codebooks)")
    km.add_argument("--batch-size", type=int, default=4096, help="feature frames per k-means update (default: 4096)")
    km.add_argument("--epochs", type=int, default=5, help="passes over the extracted features (default: 5)")
    km.add_argument("--max-frames", type=int, default=200_000, help="cap on feature frames kept in memory (default: 200000)")
    km.add_argument("--seed", type=int, default=0)
    km.add_argument("--device", default="cpu")
    km.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    prep = sub.add_parser("prepare", help="tokenize a training set once into a token cache",
                          description="Run the spec's tokenizers and conditioner over a folder of audio (or a JSONL/CSV "
                          "manifest of audio paths and captions) and write codec codes, semantic ids and conditioning "
                          "to a sharded cache. Resumable: finished shards are kept.")
    prep.add_argument("--pipeline", "-p", required=True, help="spec file or preset whose components tokenize")
    prep.add_argument("--data", required=True, help="folder of audio (recursive) or a .jsonl/.csv manifest")
    prep.add_argument("--out", "-o", required=True, help="cache folder to write")
    prep.add_argument("--clip-seconds", type=float, default=10.0, help="cut audio into clips this long (default: 10)")
    prep.add_argument("--valid-fraction", type=float, default=0.05, help="share of source files held out (default: 0.05)")
    prep.add_argument("--shard-size", type=int, default=256, help="clips per shard file (default: 256)")
    prep.add_argument("--batch-size", type=int, default=8, help="clips per tokenizer call (default: 8)")
    prep.add_argument("--workers", type=int, default=2, help="processes decoding and resampling audio (default: 2)")
    prep.add_argument("--device", default="cpu")

    tr = sub.add_parser("train", help="train one stage of a pipeline (or the MuLan conditioner)",
                        description="Train a stage on a token cache with Hugging Face Accelerate: the same command runs "
                        "on a CPU, one GPU, or many through `accelerate launch`.")
    tr.add_argument("--pipeline", "-p", help="spec file or preset (required for stages and mulan)")
    tr.add_argument("--stage", required=True, help="a stage name from the spec, 'mulan' for the conditioner, or "
                    "'instrument' for the instrument-family classifier of the `instrument` metric")
    tr.add_argument("--cache", help="token cache from `cadenza prepare` (stages)")
    tr.add_argument("--data", help="folder or manifest of audio + captions (mulan), or a `cadenza corpus` folder "
                    "or manifest (instrument)")
    tr.add_argument("--out", "-o", required=True, help="run folder: checkpoints, logs, exported weights")
    tr.add_argument("--steps", type=int, default=1000, help="optimizer steps (default: 1000)")
    tr.add_argument("--batch-size", type=int, default=8, help="examples per process per micro-batch (default: 8)")
    tr.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default: 1)")
    tr.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (default: 3e-4)")
    tr.add_argument("--warmup-steps", type=int, default=100, help="linear warm-up, then cosine decay (default: 100)")
    tr.add_argument("--weight-decay", type=float, default=0.01)
    tr.add_argument("--clip-grad", type=float, default=1.0, help="gradient-norm clipping (default: 1.0)")
    tr.add_argument("--ema-decay", type=float, default=0.999, help="EMA of the weights; 0 turns it off (default: 0.999)")
    tr.add_argument("--seconds", type=float, default=None, help="crop length of each example (default: the cache's clips)")
    tr.add_argument("--conditioning", choices=["audio", "text"], default=None,
                    help="train on the conditioner's audio embedding of each clip (MuLan trick) or on its caption "
                    "(default: audio when the conditioner embeds audio)")
    tr.add_argument("--valid-every", type=int, default=200, help="validation loss every N steps (default: 200)")
    tr.add_argument("--checkpoint-every", type=int, default=500, help="checkpoint every N steps (default: 500)")
    tr.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    tr.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no")
    tr.add_argument("--num-workers", type=int, default=0, help="data-loading processes (default: 0)")
    tr.add_argument("--seed", type=int, default=0)

    ex = sub.add_parser("export", help="write a pipeline spec that uses trained weights",
                        description="Copy a spec, pointing each trained stage (and conditioner) at the exported "
                        "weights of its run, so `cadenza generate --pipeline OUT/pipeline.yaml` uses them.")
    ex.add_argument("--pipeline", "-p", required=True, help="the spec the runs were trained with")
    ex.add_argument("--run", action="append", required=True, metavar="STAGE=RUN",
                    help="a trained run folder for a stage (repeatable), e.g. --run coarse=runs/coarse")
    ex.add_argument("--out", "-o", required=True, help="folder to write pipeline.yaml and the weights into")

    new = sub.add_parser("new-plugin", help="write a ready-to-install plugin package",
                         description="Write a plugin package (pyproject with the entry point, a working component "
                         "skeleton, a passing test, a README) into a new folder.")
    new.add_argument("name", help="package name, e.g. cadenza-snac")
    new.add_argument("--kind", required=True, choices=["tokenizer", "conditioner", "stage_model", "sampler", "metric"])
    new.add_argument("--out", "-o", default=".", help="folder to create the package folder in (default: .)")

    cor = sub.add_parser("corpus", help="render a procedurally composed, labelled music corpus with FluidSynth",
                         description="Compose N clips from random attributes (instrument, tempo, key and mode, register, "
                         "dynamics, drums), caption them, render them with FluidSynth and a General MIDI SoundFont, and "
                         "write OUT/manifest.jsonl plus train/valid/test manifests. The test split holds out some "
                         "instrument x mode x tempo combinations and caption templates. Resumable; same seed, same corpus.")
    cor.add_argument("--n", type=int, required=True, help="number of clips")
    cor.add_argument("--seconds", "-s", type=float, required=True, help="length of every clip")
    cor.add_argument("--out", "-o", required=True, help="folder to write (audio/, midi/, manifests, corpus.json)")
    cor.add_argument("--seed", type=int, default=0, help="same seed, same corpus (default: 0)")
    cor.add_argument("--workers", type=int, default=None, help="rendering processes (default: one per CPU)")
    cor.add_argument("--sample-rate", type=int, default=24000, help="audio sample rate in Hz (default: 24000)")
    cor.add_argument("--channels", type=int, choices=[1, 2], default=1, help="1 = mono (default), 2 = stereo")
    cor.add_argument("--soundfont", default=None, help="General MIDI .sf2 to use (default: $CADENZA_SOUNDFONT, "
                     "else the best one in /usr/share/sounds/sf2 or /usr/share/soundfonts)")
    cor.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    ev = sub.add_parser("evaluate", help="generate from labelled prompts and score prompt adherence (and FAD)",
                        description="Generate audio for every line of a labelled prompt file (a `cadenza corpus` "
                        "manifest: caption plus attributes), measure the attributes in the audio with the estimator "
                        "metrics, and report adherence per attribute and overall, also as a share of the estimators' "
                        "ceiling (their accuracy on the reference clips), plus FAD against the reference audio. "
                        "Writes OUT/audio, OUT/scores.jsonl, OUT/summary.json and OUT/summary.md. Resumable.")
    ev.add_argument("--pipeline", "-p", default=DEFAULT_PIPELINE,
                    help=f"spec file or preset to evaluate (default: {DEFAULT_PIPELINE})")
    ev.add_argument("--prompts", required=True, metavar="JSONL",
                    help="labelled prompts: a corpus manifest (e.g. CORPUS/test.jsonl) or lines with a caption or "
                    "prompt plus attribute fields")
    ev.add_argument("--out", "-o", required=True, metavar="DIR", help="folder for audio, scores and the summary")
    ev.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N prompts")
    ev.add_argument("--seeds", type=int, default=1, metavar="K", help="clips per prompt, seeds 0..K-1 (default: 1)")
    ev.add_argument("--seconds", "-s", type=float, default=None,
                    help="length of each clip (default: the reference clips' length, else the spec's)")
    ev.add_argument("--fad-embedding", default="mel-stats", metavar="NAME",
                    help="audio embedding for FAD: 'mel-stats' (no weights), 'conditioner' (the pipeline's own, "
                    "when it embeds audio), or KIND:NAME[@WEIGHTS] of a component that embeds audio; 'none' skips FAD")
    ev.add_argument("--batch-size", type=int, default=8, metavar="N", help="prompts generated together (default: 8)")
    ev.add_argument("--resume", action="store_true", help="keep clips and scores already in OUT")
    ev.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    ev.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    bench = sub.add_parser("bench", help="benchmark a matrix of component combinations",
                           description="Expand a matrix spec (a base pipeline and per-slot alternatives) into "
                           "combinations, skip incompatible ones with the validator's reason, and measure each: speed "
                           "and memory per stage, codec fidelity, prompt adherence, text-audio similarity, FAD. Each "
                           "finished combination is appended to OUT/results.jsonl at once; then a Markdown and CSV "
                           "table and PNG plots are written.")
    bench.add_argument("matrix", help="matrix spec (YAML)")
    bench.add_argument("--out", "-o", required=True, metavar="DIR", help="folder for results, tables and plots")
    bench.add_argument("--resume", action="store_true", help="keep finished combinations in OUT/results.jsonl")
    bench.add_argument("--workers", type=int, default=1, metavar="N",
                       help="combinations measured in parallel worker processes (default: 1)")
    bench.add_argument("--only", action="append", metavar="ID", default=None,
                       help="run only this combination id (repeatable), e.g. one rank's share on another machine")
    bench.add_argument("--shard", metavar="K/N", default=None,
                       help="run every N-th combination from the K-th (0-based) into OUT/results-K-of-N.jsonl; 'env' "
                       "takes K and N from RANK and WORLD_SIZE (torchrun). Merge: run again without --shard, --resume")
    bench.add_argument("--list", action="store_true",
                       help="print each combination's id and whether it is compatible, run nothing")
    bench.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    bench.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func = COMMANDS[args.command]
    try:
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
