"""Corpus rendering speed: clips per second of `cadenza corpus` on this machine.

    python benchmarks/corpus_speed.py            # 200 clips x 5 s, 2 workers
    python benchmarks/corpus_speed.py --quick    # 8 clips x 2 s (smoke test)

Writes docs/benchmarks/corpus_speed.{json,md} (or --out-dir) atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

from cadenza.core.files.atomic import write_text
from cadenza.plugins.workflows.corpus.build import Settings, build
from cadenza.plugins.workflows.corpus.render import find_soundfont


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks")
    args = parser.parse_args()
    n, seconds = (8, 2.0) if args.quick else (args.n, args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        summary = build(Path(tmp) / "corpus", n, Settings(seed=0, seconds=seconds), workers=args.workers, progress=False)
    command = "python benchmarks/corpus_speed.py" + (" --quick" if args.quick else "")
    result = {"command": command, "clips": n, "seconds_per_clip": seconds, "workers": args.workers,
              "elapsed": round(summary["elapsed"], 2), "clips_per_second": round(summary["clips_per_second"], 2),
              "audio_seconds_per_second": round(summary["clips_per_second"] * seconds, 1),
              "soundfont": Path(str(find_soundfont())).name,
              "machine": {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
                          "python": platform.python_version()}}
    markdown = (f"# Corpus rendering speed\n\nCommand: `{command}` on {os.cpu_count()} CPUs "
                f"(load average after the run {result['machine']['load_average']}), SoundFont {result['soundfont']}.\n\n"
                f"| clips | seconds each | workers | elapsed (s) | clips/s | seconds of audio per second |\n"
                f"|---:|---:|---:|---:|---:|---:|\n| {n} | {seconds:g} | {args.workers} | {result['elapsed']} | "
                f"{result['clips_per_second']} | {result['audio_seconds_per_second']} |\n\n"
                f"At this rate 2,000 clips take about {2000 / max(result['clips_per_second'], 1e-9) / 60:.1f} minutes.\n")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_text(args.out_dir / "corpus_speed.json", json.dumps(result, indent=2) + "\n")
    write_text(args.out_dir / "corpus_speed.md", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
