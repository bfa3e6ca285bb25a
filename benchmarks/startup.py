"""Start-up time of the ``cadenza`` command: ``--help`` must stay under 0.5 s.

Runs each command several times in fresh processes and records the median wall time, plus
whether torch was imported (it must not be for these commands).

    python benchmarks/startup.py            # writes docs/benchmarks/startup.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cadenza.core.files.atomic import write_text

COMMANDS = [["--help"], ["plugins"], ["components"], ["validate", "tiny-random"]]
TARGET_HELP_SECONDS = 0.5


def time_command(args: list[str], runs: int) -> float:
    exe = shutil.which("cadenza") or sys.executable
    prefix = [exe] if exe.endswith("cadenza") else [sys.executable, "-m", "cadenza.core.cli.main"]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(prefix + args, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def imports_torch(args: list[str]) -> bool:
    code = ("import sys, io, contextlib\nfrom cadenza.core.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(%r)\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules)") % (args,)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return out.strip().endswith("True")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks")
    args = parser.parse_args()
    rows = [{"command": "cadenza " + " ".join(c), "median_seconds": round(time_command(c, args.runs), 4),
             "imports_torch": imports_torch(c)} for c in COMMANDS]
    result = {"command": "python benchmarks/startup.py" + (f" --runs {args.runs}" if args.runs != 9 else ""),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
              "target_help_seconds": TARGET_HELP_SECONDS, "results": rows}
    table = "\n".join(f"| `{r['command']}` | {r['median_seconds']:.3f} | {'yes' if r['imports_torch'] else 'no'} |" for r in rows)
    markdown = (f"# CLI start-up time\n\nMeasured with `{result['command']}` (median of {args.runs} fresh processes) on "
                f"{os.cpu_count()} CPUs, Python {platform.python_version()}. Target: `cadenza --help` under "
                f"{TARGET_HELP_SECONDS} s.\n\n| command | median wall time (s) | imports torch |\n|---|---|---|\n{table}\n")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_text(args.out_dir / "startup.json", json.dumps(result, indent=2) + "\n")
    write_text(args.out_dir / "startup.md", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
