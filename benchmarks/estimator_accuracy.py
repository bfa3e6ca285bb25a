"""Attribute-estimator accuracy: how well the `estimators` metrics recover a rendered corpus's labels.

Why: a generator is scored by running these estimators on its audio and comparing with what its
prompt asked for, so their accuracy on real corpus clips (whose attributes are known) is the
ceiling such a score can reach. The clips come from a seed the estimators were not calibrated
on (they were calibrated on seed 1).

    python benchmarks/estimator_accuracy.py            # 150 clips x 5 s, seed 123 -> docs/benchmarks/
    python benchmarks/estimator_accuracy.py --quick    # 12 clips x 3 s (smoke test)
    python benchmarks/estimator_accuracy.py --previous docs/benchmarks/estimator_accuracy.json  # + a "before" column

``--previous`` reads a result this script wrote before (read before the new one replaces it) and
puts its accuracy beside the new one, so a change to an estimator is recorded with what it changed.

It renders the corpus exactly as ``cadenza corpus --n N --seconds S --seed SEED`` does (same
function, in a temporary folder unless ``--corpus DIR``), runs the ``attributes`` metric on
every clip at the corpus rate (24 kHz) and again resampled to 16 kHz (the tiny codec's rate),
and writes docs/benchmarks/estimator_accuracy.{json,md} (or ``--out-dir``) atomically.

The instrument family comes from the packaged classifier (trained on seed 7, see
docs/benchmarks/instrument_classifier.md); besides the exact family, its accuracy over the
coarse :data:`GROUPS` says how often it at least hears the right kind of instrument.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from cadenza.core.files.atomic import write_text
from cadenza.core.audio.io import load_audio, resample
from cadenza.plugins.workflows.corpus.build import Settings, build
from cadenza.plugins.workflows.corpus.render import find_soundfont
from cadenza.plugins.estimators.model import pitch_class
from cadenza.registry import discover

# Coarse instrument groups: families that sound alike, so confusing them is a lesser error.
GROUPS = {
    "keys/mallets": ("piano", "electric piano", "vibraphone", "marimba"),
    "guitars/harp": ("acoustic guitar", "electric guitar", "harp"),
    "strings": ("strings", "violin", "cello"),
    "brass/reeds/winds": ("brass", "saxophone", "flute", "clarinet"),
    "organ/synth": ("organ", "synth lead"),
}
GROUP_OF = {family: group for group, families in GROUPS.items() for family in families}

# (row name, what counts as right, the manifest field whose most common value is the baseline)
CHECKS = (
    ("instrument family", "the lead's family, one of 16 (packaged classifier)", "instrument"),
    ("instrument group", "the family's coarse group: " + "; ".join(f"{g} ({', '.join(f)})" for g, f in GROUPS.items()),
     "instrument_group"),
    ("tempo class", "slow 60-80 / medium 90-115 / fast 125-160 BPM (boundaries 85 and 120)", "tempo_class"),
    ("BPM within 4%", "abs(estimate / true - 1) <= 0.04", None),
    ("BPM within 4%, octave-tolerant", "the estimate, its half or its double within 4%", None),
    ("key exact", "tonic pitch class and mode both right", None),
    ("tonic", "tonic pitch class right, either mode", None),
    ("mode", "major / minor", "mode"),
    ("register (instrument given)", "low / mid / high of the lead, with the clip's instrument as input", "register"),
    ("register (no instrument)", "low / mid / high with the global boundaries (62, 73 MIDI)", "register"),
    ("register (predicted instrument)", "low / mid / high within the range of the family the classifier hears "
     "(what `attributes` does when no instrument is given)", "register"),
    ("dynamics", "soft / loud", "dynamics"),
    ("drums yes/no", "drums present (any style) or none", "drums_present"),
)


def judge(record: dict, clip: dict, given: dict, blind: dict) -> dict[str, bool]:
    """``clip``: the attributes metric without the instrument; ``given``/``blind``: the register metric
    with the clip's instrument / without one."""
    bpm, true_bpm = clip["bpm"], record["bpm"]
    near = lambda f: bool(np.isfinite(bpm)) and abs(bpm * f / true_bpm - 1) <= 0.04
    tonic = pitch_class(clip["key"]) == pitch_class(record["key"])
    return {
        "instrument family": clip["instrument"] == record["instrument"],
        "instrument group": GROUP_OF.get(clip["instrument"]) == GROUP_OF[record["instrument"]],
        "tempo class": clip["tempo_class"] == record["tempo_class"],
        "BPM within 4%": near(1.0),
        "BPM within 4%, octave-tolerant": near(1.0) or near(0.5) or near(2.0),
        "key exact": tonic and clip["mode"] == record["mode"],
        "tonic": tonic,
        "mode": clip["mode"] == record["mode"],
        "register (instrument given)": given["register"] == record["register"],
        "register (no instrument)": blind["register"] == record["register"],
        "register (predicted instrument)": clip["register"] == record["register"],
        "dynamics": clip["dynamics"] == record["dynamics"],
        "drums yes/no": (clip["drums"] == "yes") == (record["drums"] != "none"),
    }


def evaluate(corpus: Path, records: list[dict], rate: int | None) -> tuple[dict[str, float], float, dict]:
    """Accuracy per check with the audio at ``rate`` (None: as rendered); seconds per clip; confusions."""
    registry = discover(environ={"CADENZA_LOAD_PLUGINS": "cadenza"})
    entry = registry.get("metric", "attributes")
    metric = entry.build(entry.config())
    register_only = registry.get("metric", "register")
    blind_metric = register_only.build(register_only.config())
    right: dict[str, list[bool]] = {name: [] for name, _, _ in CHECKS}
    confusion = {"instrument": Counter(), "tempo_class": Counter(), "register": Counter()}
    started = time.perf_counter()
    for record in records:
        audio, sr = load_audio(corpus / record["audio"])
        if rate is not None and rate != sr:
            audio, sr = resample(audio, sr, rate), rate
        clip = metric(audio, sample_rate=sr)
        given = blind_metric(audio, sample_rate=sr, instrument=record["instrument"])
        blind = blind_metric(audio, sample_rate=sr)
        for name, ok in judge(record, clip, given, blind).items():
            right[name].append(ok)
        confusion["instrument"][f"{record['instrument']} -> {clip['instrument']}"] += 1
        confusion["tempo_class"][f"{record['tempo_class']} -> {clip['tempo_class']}"] += 1
        confusion["register"][f"{record['register']} -> {given['register']}"] += 1
    elapsed = time.perf_counter() - started
    accuracy = {name: round(float(np.mean(v)), 4) for name, v in right.items()}
    return accuracy, elapsed / len(records), {k: dict(sorted(v.items())) for k, v in confusion.items()}


def packaged_classifier() -> dict:
    """How the packaged instrument classifier was trained, from its weights file's metadata."""
    from cadenza.plugins.estimators.instrument import PACKAGED, read_classifier

    _, _, training = read_classifier(PACKAGED)
    data = training.get("data", {})
    return {"command": training.get("command"), "steps": training.get("steps"),
            "corpora": [{k: c.get(k) for k in ("seed", "clips", "soundfont")} for c in data.get("corpora", [])],
            "train_clips": data.get("train"), "valid_accuracy": training.get("valid_accuracy")}


def name_in(runs: dict, rate: str) -> bool:
    """Whether an earlier result has a run at ``rate``."""
    return rate in runs and "accuracy" in runs[rate]


def _errors(confusion: dict[str, int]) -> str:
    wrong = [f"{k} {v}" for k, v in confusion.items() if k.split(" -> ")[0] != k.split(" -> ")[1]]
    return ", ".join(wrong) or "none"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="12 clips x 3 s, no 16 kHz pass")
    parser.add_argument("--soundfont", help="render with this SoundFont (default: as `cadenza corpus` finds one)")
    parser.add_argument("--corpus", type=Path, help="render into (or reuse) this folder instead of a temporary one")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks")
    parser.add_argument("--previous", type=Path, help="an earlier result (JSON) to show beside this one as 'before'")
    args = parser.parse_args(argv)
    previous = json.loads(args.previous.read_text()) if args.previous else None
    n, seconds = (12, 3.0) if args.quick else (args.n, args.seconds)
    command = "python benchmarks/estimator_accuracy.py" + (" " + shlex.join(sys.argv[1:] if argv is None else argv)
                                                           if (sys.argv[1:] if argv is None else argv) else "")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus or Path(tmp) / "corpus"
        summary = build(corpus, n, Settings(seed=args.seed, seconds=seconds), workers=args.workers,
                        soundfont=args.soundfont, progress=False)
        records = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines() if line]
        rates = [None] if args.quick else [None, 16000]
        runs = {}
        for rate in rates:
            accuracy, per_clip, confusion = evaluate(corpus, records, rate)
            runs["24000" if rate is None else str(rate)] = {"accuracy": accuracy, "seconds_per_clip": round(per_clip, 3),
                                                           "confusion": confusion}
    for record in records:
        record["drums_present"] = "yes" if record["drums"] != "none" else "none"
        record["instrument_group"] = GROUP_OF[record["instrument"]]
    baseline = {name: round(Counter(r[field] for r in records).most_common(1)[0][1] / len(records), 4)
                for name, _, field in CHECKS if field}
    baseline["key exact"] = round(1 / 24, 4)
    baseline["tonic"] = round(1 / 12, 4)
    classifier = packaged_classifier()
    result = {
        "command": command, "instrument_classifier": classifier,
        "corpus_command": f"cadenza corpus --n {n} --seconds {seconds:g} --seed {args.seed}",
        "clips": n, "seconds_per_clip": seconds, "seed": args.seed, "calibration_seed": 1,
        "soundfont": Path(args.soundfont or str(find_soundfont())).name, "render_seconds": round(summary["elapsed"], 1),
        "checks": {name: meaning for name, meaning, _ in CHECKS}, "instrument_groups": GROUPS,
        "majority_baseline": baseline, "runs": runs,
        "previous": None if previous is None else {"command": previous["command"], "runs": previous["runs"]},
        "machine": {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
                    "python": platform.python_version()},
    }
    rate_names = list(runs)
    before = [r for r in rate_names if previous is not None and name_in(previous["runs"], r)]
    header = "| attribute | " + " | ".join(f"accuracy at {int(r) // 1000} kHz" for r in rate_names) + \
             "".join(f" | before, {int(r) // 1000} kHz" for r in before) + " | majority / chance | what counts as right |"
    lines = [header, "|---|" + "---:|" * (len(rate_names) + len(before)) + "---:|---|"]
    for name, meaning, _ in CHECKS:
        cells = " | ".join(f"{runs[r]['accuracy'][name]:.1%}" for r in rate_names) + \
            "".join(f" | {previous['runs'][r]['accuracy'].get(name, float('nan')):.1%}" for r in before)
        base = f"{baseline[name]:.1%}" if name in baseline else "-"
        lines.append(f"| {name} | {cells} | {base} | {meaning} |")
    speed = ", ".join(f"{runs[r]['seconds_per_clip']:.2f} s per clip at {int(r) // 1000} kHz" for r in rate_names)
    first = runs[rate_names[0]]["confusion"]
    markdown = "\n".join([
        "# Attribute-estimator accuracy", "",
        f"Command: `{command}` on {os.cpu_count()} CPUs, SoundFont {result['soundfont']}. It renders "
        f"`{result['corpus_command']}` ({n} clips x {seconds:g} s; the estimators' thresholds were calibrated on "
        "seed 1, never on these clips) and runs the `attributes` metric without the instrument, and the "
        "`register` metric with the clip's instrument and without one, on every clip, as rendered (24 kHz) and "
        "resampled to 16 kHz."
        + (f" The \"before\" columns are the result of `{previous['command']}` read from `{args.previous}` "
           "before this run replaced it." if previous is not None else ""), "",
        *lines, "",
        f"Speed: {speed} (the instrument classifier and all estimators on one shared analysis, then the "
        "register metric twice: with the clip's instrument and without one).", "",
        f"Instrument: the packaged classifier, trained by `{classifier.get('command', '?')}` on "
        f"{classifier.get('train_clips', '?')} clips of corpora rendered with seed "
        + ", ".join(f"{c['seed']} ({c['soundfont']})" for c in classifier["corpora"])
        + " (see [instrument_classifier.md](instrument_classifier.md)). The `attributes` metric is called without the "
        "instrument, so its register uses the family it predicts (row \"register (predicted instrument)\").", "",
        "These are the ceilings a generator's prompt-adherence score can reach with these estimators. "
        "Register is the weakest: the lead is often not the most salient voice (decaying vibraphone, "
        "marimba, harp, piano or guitar notes under sustained accompaniment and bass), and without the "
        "instrument the register's meaning (relative to the family's range) is ambiguous. Key is limited by "
        "the music itself: in 5 s of a four-chord progression relative major/minor are often ambiguous (a "
        "symbolic estimator on the MIDI notes gets about the same).", "",
        f"Instrument confusions (true -> predicted): {_errors(first['instrument'])}.", "",
        f"Tempo class confusions (true -> estimated): {_errors(first['tempo_class'])}.", "",
        f"Register confusions, instrument given (true -> estimated): {_errors(first['register'])}.", ""])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_text(args.out_dir / "estimator_accuracy.json", json.dumps(result, indent=2) + "\n")
    write_text(args.out_dir / "estimator_accuracy.md", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
