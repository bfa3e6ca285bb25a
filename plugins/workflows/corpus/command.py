"""``cadenza corpus``: render a procedurally composed, labelled music corpus (see cadenza.plugins.workflows.corpus.build)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from cadenza.plugins.workflows.corpus.build import Settings, build

    settings = Settings(seed=args.seed, seconds=args.seconds, sample_rate=args.sample_rate, channels=args.channels)
    summary = build(args.out, args.n, settings, workers=args.workers, soundfont=args.soundfont,
                    progress=not args.quiet)
    splits = ", ".join(f"{name} {count}" for name, count in summary["splits"].items())
    kept = f", {summary['kept']} kept" if summary["kept"] else ""
    print(f"cadenza corpus: {summary['clips']} clips ({splits}) x {summary['seconds']:g} s at "
          f"{summary['sample_rate']} Hz in {summary['out']}/manifest.jsonl; rendered {summary['rendered']}{kept} "
          f"in {summary['elapsed']:.1f} s ({summary['clips_per_second']:.1f} clips/s, {summary['workers']} workers)")
    return 0
