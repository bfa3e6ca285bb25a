"""Movement over time: does generated music settle into held chords as a clip goes on?

Why: long pieces of the bundled default turn into static chords after their first windows
(docs/benchmarks/longform_stability.md), while their semantic tokens keep changing. This
checks whether the settling is in the data or in the model. It renders corpus clips, generates
the same captions with a pipeline (at the spec's window, or at each ``--window``), and reports
the *movement* of each quarter of every clip, averaged over the clips. Movement is one minus the cosine similarity of mel
spectra half a second apart, the same measure ``longform_stability.py`` uses. The corpus's
movement is flat across a clip. If the pipeline's falls, the model settles: it is not copying
its training data. Generating in windows no longer than the stages' training crops keeps it flat
(a transformer asked for more than it was trained on settles in the positions it never saw).

    python benchmarks/movement_over_time.py --window 10 --window spec   # 24 clips x 10 s -> docs/benchmarks/
    python benchmarks/movement_over_time.py --n 4 --seconds 4 --pipeline tiny-random --out-dir scratch   # quicker
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

QUARTERS = 4


def quarters(audio, rate: int) -> list[float]:
    """Movement of each quarter of ``[C, S]`` audio."""
    from longform_stability import movement

    step = audio.shape[-1] // QUARTERS
    return [movement(audio[:, k * step:(k + 1) * step], rate) for k in range(QUARTERS)]


def window_arg(text: str) -> float | None:
    """``--window``: seconds, or ``spec`` (None) for the spec's own window and overlap."""
    if text == "spec":
        return None
    seconds = float(text)
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"a window is a positive number of seconds or 'spec', got {text!r}")
    return seconds


def mean_quarters(rows: list[list[float]]) -> list[float]:
    return [round(statistics.fmean(row[k] for row in rows), 3) for k in range(QUARTERS)]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="default")
    parser.add_argument("--n", type=int, default=24, help="corpus clips to render and captions to generate")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default: 10, a stage window)")
    parser.add_argument("--seed", type=int, default=2026, help="corpus seed; generation seeds are 0..n-1")
    parser.add_argument("--batch", type=int, default=12, help="captions generated together (default: 12)")
    parser.add_argument("--window", type=window_arg, action="append", default=None, metavar="S|spec",
                        help="generation window in seconds, or 'spec' for the spec's window and overlap, repeatable "
                        "(default: spec); >= --seconds: one pass")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    if args.seconds < 4:
        parser.error("--seconds must be at least 4: each quarter needs a second for half-second spectrum pairs")

    from longform_stability import rendered_corpus
    from recording import command_line, load_average, machine_info, write_results

    from cadenza.core.engine.cascade import Cascade

    load = load_average()
    cascade = Cascade.from_spec(args.pipeline)
    rows, real = [], []
    for row, audio, rate in rendered_corpus(args.n, args.seconds, args.seed):
        rows.append(row)
        real.append(quarters(audio, rate))
    generated, started = [], time.perf_counter()
    for window in args.window or [None]:
        clips, used = [], None
        for a in range(0, len(rows), args.batch):
            chunk = rows[a:a + args.batch]
            out = cascade.generate([r["caption"] for r in chunk], seconds=args.seconds,
                                   seed=list(range(a, a + len(chunk))), window=window)
            clips += [quarters(audio, out.sample_rate) for audio in out.audio]
            used = (out.window, out.overlap) if out.windows else None
        generated.append({"window": used[0] if used else None, "overlap": used[1] if used else None,
                          "quarters": mean_quarters(clips)})
    wall = time.perf_counter() - started
    result = {"command": command_line(argv), "pipeline": args.pipeline, "clips": len(rows), "seconds": args.seconds,
              "corpus_seed": args.seed, "corpus": mean_quarters(real), "generated": generated,
              "wall_s": round(wall, 1), "machine": machine_info(load)}
    write_results(args.out_dir, "movement_over_time", result, markdown(result))
    print(markdown(result))
    return result


def label(run: dict) -> str:
    if run["window"] is None:
        return "one pass"
    return f"{run['window']:g} s windows, {run['overlap']:g} s overlap"


def markdown(result: dict) -> str:
    span = result["seconds"] / QUARTERS
    header = " | ".join(f"{k * span:g}-{(k + 1) * span:g} s" for k in range(QUARTERS))
    intro = (f"Command: `{result['command']}`: {result['clips']} corpus clips of {result['seconds']:g} s "
             f"(`cadenza corpus`, seed {result['corpus_seed']}), and the same captions generated by "
             f"`{result['pipeline']}` (seeds 0..{result['clips'] - 1}; {result['wall_s']:.0f} s of generation on "
             f"{result['machine']['cpu_count']} CPUs).")
    measure = ("Movement is one minus the cosine similarity of mel spectra half a second apart: about 0.2-0.4 for "
               "changing notes, near 0 for a held chord. Means over the clips, per quarter of a clip:")
    reading = ("A flat corpus row and a falling generated one mean the model settles as a clip goes on: a stage "
               "asked for more than the crops it was trained on meets positions it never saw. Windows no longer "
               "than those crops keep it moving; long-form windows that continue a settled tail settle further "
               "(docs/benchmarks/longform_stability.md).")
    rows = [("corpus", result["corpus"])] + [(f"{result['pipeline']}, {label(run)}", run["quarters"])
                                              for run in result["generated"]]
    lines = [f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |" for name, values in rows]
    return "\n".join(["# Movement over time", "", intro, "", measure, "", f"| audio | {header} |",
                      "|---|" + "---:|" * QUARTERS, *lines, "", reading, ""])


if __name__ == "__main__":
    main()
