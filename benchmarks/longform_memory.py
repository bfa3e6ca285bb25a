"""Peak memory of long-form generation as the requested length grows.

Why: long-form generation runs the cascade window by window (each window continuing the tail
of the last at token level) and decodes the codes in window-sized chunks, so its memory should
depend on the window, not on the total length; only the output audio itself (4 bytes a sample)
grows. This generates 30, 90 and 180 s with the ``tiny-random`` preset (random weights: the
point is memory, not music) or ``--pipeline`` (the record: the bundled default in its own
windows), each in a fresh process, and records the process's peak resident
set size (``ru_maxrss``) after building the pipeline and after generating, plus the largest KV
cache any stage allocated. For contrast it also runs one pass over the whole length (window =
length) at the shorter lengths, which is what generation did before long-form.

    python benchmarks/longform_memory.py              # full run -> docs/benchmarks/longform_memory.{json,md}
    python benchmarks/longform_memory.py --quick      # 3 s and 6 s, 1 s windows, into a temporary folder

Results are written atomically with the exact command, the machine and the load average.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(args: argparse.Namespace) -> dict:
    """One generation in this (fresh) process; its peak RSS and largest KV cache."""
    import torch

    torch.set_num_threads(args.threads)
    from cadenza.core.engine.cascade import Cascade

    cascade = Cascade.from_spec(args.pipeline)
    biggest = [0]
    for model in cascade.models.values():  # measure every KV cache a stage allocates
        prefill = model.prefill

        def measured(request, max_new_tokens, _prefill=prefill):
            state = _prefill(request, max_new_tokens)
            cache = getattr(state, "cache", None) or []
            biggest[0] = max(biggest[0], sum(t.numel() * t.element_size() for kv in cache for t in kv))
            return state

        model.prefill = measured
    built_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    generation = cascade.generate("a long, slowly evolving ambient piece", seconds=args.seconds, seed=0,
                                  window=args.window, overlap=args.overlap)
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": args.seconds,
        "window": args.window,
        "overlap": generation.overlap,
        "windows": max(1, len(generation.windows)),
        "wall_s": round(wall, 1),
        "rss_after_build_mb": round(built_kb / 1024, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "generation_mb": round((peak_kb - built_kb) / 1024, 1),
        "largest_kv_cache_mb": round(biggest[0] / 2**20, 2),
        "output_audio_mb": round(generation.audio.numel() * generation.audio.element_size() / 2**20, 1),
        "random_weights": bool(cascade.random_components()),
    }


def run_child(script: str, pipeline: str, seconds: float, window: float, overlap: float | None, threads: int) -> dict:
    cmd = [sys.executable, script, "--child", "--pipeline", pipeline, "--seconds", str(seconds),
           "--window", str(window), "--threads", str(threads)]
    if overlap is not None:
        cmd += ["--overlap", str(overlap)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Long-form generation memory",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {m['cpu_count']} CPUs ({m['processor'] or m['machine']}), torch {m['torch']}, "
        f"{result['threads']} torch thread(s), Python {m['python']}, load average at start {m['load_average']}.",
        "",
        f"Pipeline `{result['pipeline']}`{' (random weights)' if result['runs'][0].get('random_weights') else ''}, "
        "one prompt, seed 0; every run in a fresh process. "
        "*Peak RSS* is the process's maximum resident set size (`ru_maxrss`); *generation* is how much it "
        "rose during `Cascade.generate` above the peak after building the pipeline; *largest KV cache* is the "
        "biggest cache any stage allocated (guidance doubles the batch); *output audio* is the float32 "
        "result, which necessarily grows with the length.",
        "",
        "| seconds | mode | windows | wall s | peak RSS MB | generation MB | largest KV cache MB | output audio MB |",
        "|---:|:---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        mode = f"long-form ({r['window']:g} s windows, {r['overlap']:g} s overlap)" if r["windows"] > 1 else "one pass"
        lines.append(f"| {r['seconds']:g} | {mode} | {r['windows']} | {r['wall_s']} | {r['peak_rss_mb']} | "
                     f"{r['generation_mb']} | {r['largest_kv_cache_mb']} | {r['output_audio_mb']} |")
    if result["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="30,90,180", help="seconds to generate, comma-separated (default 30,90,180)")
    parser.add_argument("--one-pass", default="30,90",
                        help="lengths also generated in one pass for contrast ('' for none; default 30,90)")
    parser.add_argument("--pipeline", default="tiny-random", help="spec or preset (default tiny-random)")
    parser.add_argument("--window", type=float, default=10.0, help="long-form window seconds (default 10)")
    parser.add_argument("--overlap", type=float, default=None, help="overlap seconds (default: half the window)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--out-dir", default=None, help="default docs/benchmarks (--quick: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="3 s and 6 s with 1 s windows: a smoke test")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(child(args)), flush=True)
        return None
    from recording import command_line, load_average, machine_info, write_results


    if args.quick:
        lengths, one_pass, window = [3.0, 6.0], [3.0], 1.0
    else:
        lengths = [float(x) for x in args.lengths.split(",") if x.strip()]
        one_pass = [float(x) for x in args.one_pass.split(",") if x.strip()]
        window = args.window
    out_dir = Path(args.out_dir or (tempfile.mkdtemp(prefix="longform_memory.") if args.quick else "docs/benchmarks"))
    load_at_start = load_average()
    script = str(Path(__file__).resolve())
    runs = []
    for seconds in lengths:
        run = run_child(script, args.pipeline, seconds, window, args.overlap, args.threads)
        print(json.dumps(run), flush=True)
        runs.append(run)
    for seconds in one_pass:
        run = run_child(script, args.pipeline, seconds, seconds, None, args.threads)
        print(json.dumps(run), flush=True)
        runs.append(run)
    windowed = [r for r in runs if r["windows"] > 1]
    notes = []
    if len(windowed) > 1:
        lo, hi = windowed[0], windowed[-1]
        audio_growth = hi["output_audio_mb"] - lo["output_audio_mb"]
        notes.append(f"long-form peak RSS from {lo['seconds']:g} s to {hi['seconds']:g} s: {lo['peak_rss_mb']} -> "
                     f"{hi['peak_rss_mb']} MB ({hi['peak_rss_mb'] - lo['peak_rss_mb']:+.1f} MB; the output audio "
                     f"alone grows by {audio_growth:+.1f} MB); largest KV cache {lo['largest_kv_cache_mb']} -> "
                     f"{hi['largest_kv_cache_mb']} MB")
    notes.append("most of the long-form 'generation' memory is the codec decoding one chunk (a window plus 1 s of "
                 "context on each side); the one-pass runs decode everything at once")
    if windowed and all(r["generation_mb"] == 0 for r in windowed):
        notes.append("a long-form 'generation' of 0 MB: generating never used more memory than building the "
                     "pipeline (loading its weights) had already")
    notes.append("wall times depend on the machine's load (see the load average above): compare memory, not time")
    result = {
        "command": command_line(argv),
        "machine": machine_info(load_at_start, threads=False),
        "pipeline": args.pipeline,
        "threads": args.threads,
        "runs": runs,
        "notes": notes,
    }
    write_results(out_dir, "longform_memory", result, markdown(result))
    print(f"wrote {out_dir}/longform_memory.json and .md")
    return result


if __name__ == "__main__":
    main()
