"""Coarse-stage guidance: how strongly the caption may pull before a MIDI melody is no longer followed.

Why: the coarse stage reads the semantic tokens (a forced melody's, in melody mode) and is
prompted with the caption; classifier-free guidance amplifies only the caption's side, both
branches see the same semantic tokens. Too much of it and the caption's idea of a flute line
outweighs the melody the tokens carry. This measures, for each guidance scale of the coarse
stage:

* melody following: the correlation of the output's tracked pitch with a probe tune
  (:func:`cadenza.plugins.melody.following.contour_correlation`, as the melody test measures it), with the melody and for the
  same prompts without it, over many seeds (single clips scatter by about +-0.3);
* prompt adherence (optional, ``--prompts``): ``cadenza evaluate``'s share of the estimators'
  ceiling on labelled prompts, so a scale that follows melodies is not bought with the text.

    python benchmarks/coarse_guidance.py --prompts runs/default-model/corpus/test.jsonl   # -> docs/benchmarks/coarse_guidance.*
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from recording import command_line, load_average, machine_info, write_results

from cadenza.core.engine.cascade import Cascade
from cadenza.core.spec.validate import resolve_source
from cadenza.core.spec.yaml_source import load_yaml_file
from cadenza.plugins.melody.following import follow_with_and_without, probe_tune
from cadenza.plugins.workflows.evaluate.config import EvaluateConfig
from cadenza.plugins.workflows.evaluate.evaluation import evaluate
from cadenza.registry import get_registry

PROMPT = "a solo flute melody, soft, no drums"
SECONDS = 4.0


def spec_with_guidance(source: str, scale: float, folder: Path) -> Path:
    """A copy of pipeline ``source`` (preset or file) in ``folder`` with its coarse stage guided at
    ``scale``; weights paths made absolute, so the copy loads the same weights."""
    path = resolve_source(source, get_registry())
    tree = json.loads(json.dumps(load_yaml_file(path)))  # plain dicts (the loader's keep line numbers)
    for slot in [tree.get("conditioner"), tree.get("semantic_tokenizer"), tree.get("tokenizer"), *tree["stages"]]:
        weights = slot.get("weights") if isinstance(slot, dict) else None
        if isinstance(weights, str) and weights.startswith("."):
            slot["weights"] = str((path.parent / weights).resolve())
    coarse = [stage for stage in tree["stages"] if stage.get("role") == "coarse"]
    if not coarse:
        raise SystemExit(f"{source}: no coarse stage to guide")
    coarse[0]["guidance_scale"] = scale
    out = folder / f"guidance-{scale:g}.yaml"
    out.write_text(yaml.safe_dump(tree, sort_keys=False))
    return out


def melody_following(spec: Path, seeds: list[int]) -> dict:
    followed, alone = follow_with_and_without(Cascade.from_spec(spec), PROMPT, SECONDS, seeds, probe_tune(SECONDS))
    return {"with_melody": round(float(np.mean(followed)), 3), "with_melody_sd": round(float(np.std(followed)), 3),
            "text_only": round(float(np.mean(alone)), 3), "text_only_sd": round(float(np.std(alone)), 3),
            "seeds": len(seeds)}


def adherence(spec: Path, prompts: Path, limit: int, seeds: int, out: Path) -> dict:
    evaluate(EvaluateConfig(prompts=prompts, out=out, pipeline=str(spec), limit=limit, seeds=seeds,
                            fad_embedding="none", quiet=True))
    summary = json.loads((out / "summary.json").read_text())["adherence"]["all"]
    return {"overall": round(summary["overall"]["share_of_ceiling"], 3), "clips": limit * seeds,
            **{name: round(a["generated"], 3) for name, a in summary["attributes"].items()}}


def render(result: dict) -> str:
    lines = ["# Coarse-stage guidance: melody following and prompt adherence", "",
             f"Measured by `{result['command']}` on {result['machine']['cpu_count']} CPUs. Pipeline "
             f"`{result['pipeline']}`, coarse guidance scale varied, everything else as shipped.", "",
             f"Melody following: correlation of the output's tracked pitch (YIN) with a probe tune (up an octave and "
             f"back in 16 notes over {SECONDS:g} s), prompt \"{PROMPT}\", mean over seeds (sd beside it); text only "
             "is the same prompts and seeds without the melody.", ""]
    attributes = sorted({k for r in result["rows"] for k in r.get("adherence", {}) if k not in ("overall", "clips")})
    head = "| coarse guidance | with melody | text only |"
    rule = "|---:|---:|---:|"
    if attributes:
        head += " adherence (share of ceiling) | " + " | ".join(attributes) + " |"
        rule += "---:|" * (len(attributes) + 1)
    lines += [head, rule]
    for row in result["rows"]:
        m = row["melody"]
        line = f"| {row['guidance']:g} | {m['with_melody']:.2f} ({m['with_melody_sd']:.2f}) | " \
               f"{m['text_only']:.2f} ({m['text_only_sd']:.2f}) |"
        if attributes:
            a = row["adherence"]
            line += f" {a['overall']:.1%} | " + " | ".join(f"{a[k]:.1%}" for k in attributes) + " |"
        lines.append(line)
    seeds = result["rows"][0]["melody"]["seeds"]
    spread = max(r["melody"][k] for r in result["rows"] for k in ("with_melody_sd", "text_only_sd"))
    lines += ["", f"Over {seeds} seeds a mean correlation has a standard error of at most {spread / seeds ** 0.5:.2f} "
              "(the largest sd over the square root of the seeds)."]
    if attributes:
        clips = result["rows"][0]["adherence"]["clips"]
        lines += ["", f"Adherence: `cadenza evaluate` on {clips} clips (generated share per attribute; the overall "
                  f"column is the share of the estimators' ceiling). On {clips} clips a share near 50% has a standard "
                  f"error of about {50 / clips ** 0.5:.0f} points: differences smaller than that are noise."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="default")
    parser.add_argument("--scales", default="1,2,2.5,3", help="coarse guidance scales, comma-separated")
    parser.add_argument("--seeds", type=int, default=30, help="seeds of the melody probe")
    parser.add_argument("--prompts", type=Path, default=None, help="labelled prompts (a corpus test.jsonl) for adherence")
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--adherence-seeds", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    load = load_average()
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for scale in (float(s) for s in args.scales.split(",")):
            spec = spec_with_guidance(args.pipeline, scale, Path(folder))
            row = {"guidance": scale, "melody": melody_following(spec, list(range(args.seeds)))}
            if args.prompts is not None:
                row["adherence"] = adherence(spec, args.prompts, args.limit, args.adherence_seeds,
                                             Path(folder) / f"eval-{scale:g}")
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {"command": command_line(argv), "pipeline": args.pipeline, "machine": machine_info(load),
              "seconds": round(time.perf_counter() - started, 1), "rows": rows}
    write_results(args.out_dir, "coarse_guidance", result, render(result))
    return result


if __name__ == "__main__":
    main()
