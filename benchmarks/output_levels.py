"""Output levels of the bundled default: soft and loud prompts before and after the loudness stage.

Why: the stages make the level their training audio had, so a soft prompt came out near silent and
a loud one clipped. The output stage (core/audio/loudness.py) brings clips toward -14 LUFS with
their true peaks under -1 dBTP while keeping part of each clip's distance from the pipeline's
middle level, so that soft and loud prompts still differ. This measures, per prompt and seed:
the level the stages made (the stage off), the level written (the spec's stage on, from the same
tokens: same seed), true peak, clipped samples, and the stage's own time. One generation per
prompt and seed: the raw audio is the stage-off run, the written one applies the stage to it.

    python benchmarks/output_levels.py            # -> docs/benchmarks/output_levels.{json,md}
    python benchmarks/output_levels.py --quick    # tiny-random, a smoke test
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import attrs
from recording import command_line, load_average, machine_info, write_results

from cadenza.core.audio.loudness import apply_output_stage
from cadenza.core.engine.cascade import Cascade
from cadenza.core.spec.validate import load_pipeline
from cadenza.registry import get_registry

SOFT = ["very slow soft piano", "a quiet gentle flute", "a soft calm string quartet", "a gentle slow acoustic guitar"]
LOUD = ["fast loud drums and brass", "a loud energetic rock guitar with drums", "a loud brass fanfare",
        "fast loud electronic drums"]


def levels_of(report: dict) -> dict:
    """Loudness, true peak and clipped samples of one clip, from the output stage's record of it
    (``Generation.levels``: what the limiter left, measured after it)."""
    return {"lufs": report["output_lufs"], "true_peak_dbtp": report["true_peak_dbtp"],
            "clipped": report["clipped_samples"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="default")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--quick", action="store_true", help="tiny-random, one prompt of each, 1 s: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.pipeline, args.seconds, args.seeds = "tiny-random", 1.0, 1
    out_dir = Path(args.out_dir or (tempfile.mkdtemp(prefix="output_levels.") if args.quick else "docs/benchmarks"))
    load_at_start = load_average()
    registry = get_registry()
    pipeline = load_pipeline(args.pipeline, registry)
    raw_spec = attrs.evolve(pipeline.spec, output=attrs.evolve(pipeline.spec.output, peak_dbfs=None, loudness=None,
                                                               true_peak=None))
    cascade = Cascade(attrs.evolve(pipeline, spec=raw_spec), registry)
    settings = Cascade(pipeline, registry).level_settings  # the spec's own output stage, to level the raw audio
    rows = []
    for group, prompts in (("soft", SOFT[:1] if args.quick else SOFT), ("loud", LOUD[:1] if args.quick else LOUD)):
        for prompt in prompts:
            for seed in range(args.seeds):
                result = cascade.generate(prompt, seconds=args.seconds, seed=seed, watermark=False)
                raw = result.audio
                start = time.perf_counter()
                _, reports = apply_output_stage(raw, result.sample_rate, settings)
                stage_seconds = time.perf_counter() - start
                rows.append({"group": group, "prompt": prompt, "seed": seed,
                             "raw": levels_of(result.levels[0]), "written": levels_of(reports[0]),
                             "gain_db": reports[0]["gain_db"],
                             "limiter_db": reports[0].get("limiter_max_reduction_db"),
                             "stage_seconds": round(stage_seconds, 3)})
                print(rows[-1])
    summary = {}
    for group in ("soft", "loud"):
        mine = [r for r in rows if r["group"] == group]
        summary[group] = {side: {"median_lufs": round(statistics.median(r[side]["lufs"] for r in mine), 2),
                                 "max_true_peak_dbtp": max(r[side]["true_peak_dbtp"] for r in mine),
                                 "clipped_samples": sum(r[side]["clipped"] for r in mine)}
                          for side in ("raw", "written")}
    gap = {side: round(summary["loud"][side]["median_lufs"] - summary["soft"][side]["median_lufs"], 2)
           for side in ("raw", "written")}
    output = pipeline.spec.output
    result = {"command": command_line(argv), "machine": machine_info(load_at_start), "pipeline": args.pipeline,
              "seconds": args.seconds, "settings": {"loudness": output.loudness, "keep": output.loudness_keep,
                                                    "reference": output.loudness_reference,
                                                    "true_peak": output.true_peak},
              "rows": rows, "summary": summary, "loud_minus_soft_lu": gap,
              "stage_real_time_factor": round(args.seconds / statistics.median(r["stage_seconds"] for r in rows), 1)}
    write_results(out_dir, "output_levels", result, markdown(result))
    return result


def markdown(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    lines = ["# Output levels: soft and loud prompts before and after the loudness stage", "",
             f"Command: `{result['command']}`", "",
             f"Machine: {m['cpu_count']} CPUs, torch {m['torch']}, load average at start {m['load_average']}. "
             f"Pipeline `{result['pipeline']}`, {result['seconds']:g} s clips; its output stage: loudness "
             f"{s['loudness']} LUFS, keep {s['keep']}, reference {s['reference']} LUFS, true-peak ceiling "
             f"{s['true_peak']} dBTP. *Made* is the level the stages made (output stage off), *written* the same "
             "audio after the stage.", "",
             "| prompts | made: median LUFS | made: max true peak (dBTP) | made: clipped samples | "
             "written: median LUFS | written: max true peak | written: clipped |", "|---|---:|---:|---:|---:|---:|---:|"]
    for group in ("soft", "loud"):
        raw, out = result["summary"][group]["raw"], result["summary"][group]["written"]
        lines.append(f"| {group} | {raw['median_lufs']} | {raw['max_true_peak_dbtp']} | {raw['clipped_samples']} | "
                     f"{out['median_lufs']} | {out['max_true_peak_dbtp']} | {out['clipped_samples']} |")
    gap = result["loud_minus_soft_lu"]
    lines += ["", f"Loud minus soft (medians): {gap['raw']} LU as made, {gap['written']} LU as written. The output "
              f"stage runs at {result['stage_real_time_factor']}x real time (median).", "",
              "| prompt | seed | made LUFS | made peak | gain dB | limiter dB | written LUFS | written peak |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['prompt']} | {r['seed']} | {r['raw']['lufs']} | {r['raw']['true_peak_dbtp']} | "
                     f"{r['gain_db']} | {r['limiter_db']} | {r['written']['lufs']} | {r['written']['true_peak_dbtp']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
