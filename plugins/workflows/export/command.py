"""``cadenza export``: a self-contained pipeline folder that uses trained weights.

``cadenza export --pipeline SPEC --run coarse=runs/coarse --run fine=runs/fine --out DIR``
copies each run's exported weights (``RUN/export/``, written at the end of ``cadenza train``)
into ``DIR/weights/<stage>`` and writes ``DIR/pipeline.yaml``: the spec with those stages'
``weights:`` pointing there by relative paths, so the folder can be moved or shared as is.
``--run mulan=RUN`` (or ``conditioner=RUN``) points the spec's conditioner at a MuLan run's
export the same way. Other local weights the spec names keep working: their paths are made
absolute (they are not copied). Comments of the original spec are not kept.

Checks, each one line: the stage exists in the spec, the run has an export, and the export
was trained for this stage's component and layout (codec, vocabularies, conditioning).
The weights are copied first and ``pipeline.yaml`` is written last, atomically, then
validated like ``cadenza validate`` would.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from cadenza.core.errors import InputError
from cadenza.core.engine.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from cadenza.core.engine.checkpoint import read_config
from cadenza.core.errors import WeightsError
from cadenza.core.layout import StageLayout
from cadenza.core.errors import CadenzaError
from cadenza.core.engine.weights import parse_weights
from cadenza.core.files.atomic import write_folder
from cadenza.core.files.atomic import write_text
from cadenza.core.spec.schema import spec_to_dict
from cadenza.core.spec.validate import load_pipeline
from cadenza.registry import get_registry
from cadenza.core.engine.longform import default_window
from cadenza.plugins.workflows.train.trainer import RUN_FILE

WEIGHTS_DIR = "weights"
SPEC_FILE = "pipeline.yaml"
CONDITIONER_NAMES = ("mulan", "conditioner")


def parse_runs(items: list[str]) -> list[tuple[str, Path]]:
    runs, seen = [], set()
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise InputError(f"--run {item!r}: expected STAGE=RUN, e.g. --run coarse=runs/coarse")
        name = name.strip()
        if name in seen:
            raise InputError(f"--run {name}=...: given twice")
        seen.add(name)
        runs.append((name, Path(folder.strip())))
    return runs


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "stage"


def _export_of(name: str, run: Path) -> Path:
    export = run / "export"
    if not run.is_dir():
        raise InputError(f"--run {name}={run}: no such run folder")
    if not (export / CONFIG_FILE).is_file() or not (export / WEIGHTS_FILE).is_file():
        raise InputError(f"--run {name}={run}: the run has no export ({export}/ with {CONFIG_FILE} and {WEIGHTS_FILE}); "
                         "a run exports when it finishes: resume it with `cadenza train ... --resume`")
    return export


def _check_stage_export(name: str, run: Path, export: Path, stage: Any) -> None:
    try:
        saved = read_config(export)
    except WeightsError as exc:
        raise InputError(f"--run {name}={run}: {exc}") from None
    component = stage.model.entry.name
    if saved.get("component") != component:
        raise InputError(f"--run {name}={run}: the export is a {saved.get('component')!r} model, "
                         f"stage {name!r} uses {component!r}")
    if "layout" in saved:
        try:
            trained = StageLayout.from_dict(saved["layout"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"--run {name}={run}: unreadable saved layout ({exc})") from None
        diffs = stage.layout.differences(trained)
        if diffs:
            raise InputError(f"--run {name}={run}: trained for another layout than stage {name!r}: {'; '.join(diffs)}")


def _check_conditioner_export(name: str, run: Path, export: Path, conditioner: Any) -> None:
    try:
        saved = read_config(export)
    except WeightsError as exc:
        raise InputError(f"--run {name}={run}: {exc}") from None
    if saved.get("component") != conditioner.entry.name:
        raise InputError(f"--run {name}={run}: the export is a {saved.get('component')!r} model, "
                         f"the spec's conditioner is {conditioner.entry.name!r}")


def _absolute_local_weights(data: dict[str, Any], base: Path | None) -> None:
    """Local weights paths of the original spec, made absolute (the new spec lives elsewhere)."""
    def fix(node: dict[str, Any]) -> None:
        value = node.get("weights")
        if not isinstance(value, str):
            return
        try:
            weights = parse_weights(value, base)
        except CadenzaError:
            return
        if weights.kind == "path" and weights.path is not None:
            node["weights"] = str(weights.path.expanduser().resolve())

    for slot in ("conditioner", "semantic_tokenizer", "tokenizer"):
        if isinstance(data.get(slot), dict):
            fix(data[slot])
    for stage in data.get("stages", []):
        fix(stage)


def _copy_folder(source: Path, dest: Path) -> None:
    def fill(tmp: Path) -> None:
        for item in source.iterdir():
            if item.is_file():
                shutil.copy2(item, tmp / item.name)
            elif item.is_dir():
                shutil.copytree(item, tmp / item.name)

    write_folder(dest, fill)


def run(args: argparse.Namespace) -> int:
    import yaml

    registry = get_registry()
    pipeline = load_pipeline(args.pipeline, registry)
    runs = parse_runs(args.run)
    stages = {s.spec.name: s for s in pipeline.stages}
    plan: list[tuple[str, Path, Path, str]] = []  # (name, run, export, "stage" | "conditioner")
    for name, folder in runs:
        if name in stages:
            export = _export_of(name, folder)
            _check_stage_export(name, folder, export, stages[name])
            plan.append((name, folder, export, "stage"))
        elif name in CONDITIONER_NAMES:
            if pipeline.conditioner is None:
                raise InputError(f"--run {name}={folder}: {args.pipeline} has no conditioner to point at it")
            export = _export_of(name, folder)
            _check_conditioner_export(name, folder, export, pipeline.conditioner)
            plan.append((name, folder, export, "conditioner"))
        else:
            raise InputError(f"--run {name}={folder}: {args.pipeline} has no stage {name!r}; its stages are "
                             f"{', '.join(stages)} (or mulan for the conditioner)")
    if len([p for p in plan if p[3] == "conditioner"]) > 1:
        raise InputError("--run: one run for the conditioner at most (mulan= or conditioner=)")

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    data = spec_to_dict(pipeline.spec)
    _absolute_local_weights(data, pipeline.spec.base_dir)
    for name, folder, export, kind in plan:
        relative = f"./{WEIGHTS_DIR}/{_safe(name)}"
        _copy_folder(export, out / WEIGHTS_DIR / _safe(name))
        if kind == "stage":
            next(s for s in data["stages"] if s["name"] == name)["weights"] = relative
        else:
            data["conditioner"]["weights"] = relative
    header = [f"# Written by `cadenza export` from {args.pipeline}."]
    header += [f"# {name}: weights from {folder.resolve()}/export" for name, folder, _, _ in plan]
    text = "\n".join(header) + "\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    spec_file = out / SPEC_FILE
    write_text(spec_file, text)
    load_pipeline(spec_file, registry)  # what `cadenza validate` checks; a failure here is a bug
    print(f"wrote {spec_file} ({', '.join(f'{n} <- {f}' for n, f, _, _ in plan)}); "
          f"run `cadenza generate --pipeline {spec_file} PROMPT`", file=sys.stderr)
    note = _window_note(pipeline.spec.output, [(n, f) for n, f, _, kind in plan if kind == "stage"])
    if note:
        print(note, file=sys.stderr)
    return 0


def _window_note(output: Any, stage_runs: list[tuple[str, Path]]) -> str | None:
    """A note when the spec sets no window and a stage was trained on shorter crops than the one
    pass it will be asked for: past its crop length a stage meets positions it never saw, and its
    music stills (docs/generation.md). A window the spec sets is its author's choice."""
    if output.window is not None:
        return None
    crops = {}
    for name, folder in stage_runs:
        try:
            crops[name] = float(json.loads((folder / RUN_FILE).read_text())["args"]["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no crop length recorded (None: whole cached clips): nothing to compare
    window = default_window(output.seconds)
    if not crops or min(crops.values()) >= window:
        return None
    name = min(crops, key=crops.get)
    return (f"note: stage {name!r} was trained on {crops[name]:g} s crops, but this pipeline generates up to "
            f"{window:g} s in one pass; set output.window: {crops[name]:g} in the spec to generate window by "
            "window at the length it was trained on")
