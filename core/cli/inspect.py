"""``cadenza validate``, ``plugins``, ``components`` and ``pipelines``: look, never build."""

from __future__ import annotations

import argparse
import json
import sys

from cadenza.core.cli.messages import problem_lines
from cadenza.core.errors import CadenzaError, SpecError
from cadenza.registry import get_registry
from cadenza.core.spec.validate import load_pipeline
from cadenza.core.spec.params import converter


def _registry():
    return get_registry()


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def run_validate(args: argparse.Namespace) -> int:
    registry = _registry()
    failed = False
    for spec in args.specs:
        try:
            pipeline = load_pipeline(spec, registry)
        except SpecError as exc:
            print("\n".join(problem_lines("validate", exc)), file=sys.stderr)
            failed = True
            continue
        stages = ", ".join(f"{s.spec.name} ({s.layout.writes})" for s in pipeline.stages)
        print(f"{spec}: valid: {len(pipeline.stages)} stage(s): {stages}")
    return 2 if failed else 0


def run_plugins(args: argparse.Namespace) -> int:
    registry = _registry()
    records = sorted(registry.plugins.values(), key=lambda r: (r.distribution, r.name))
    if args.json:
        print(json.dumps([r.to_json() for r in records], indent=2))
        return 0
    rows = [[r.name, r.distribution or "-", r.version or "-",
             f"ERROR: {r.error}" if r.error else ", ".join(r.components) or ", ".join(r.hooks) or "-"]
            for r in records]
    print(_table(rows, ["PLUGIN", "DISTRIBUTION", "VERSION", "PROVIDES"]))
    for problem in registry.problems():
        if "failed to load" not in problem:
            print(f"warning: {problem}", file=sys.stderr)
    return 0


def run_components(args: argparse.Namespace) -> int:
    entries = _registry().entries(args.kind)
    data = [{"name": e.name, "kind": e.kind, "plugin": e.plugin, "distribution": e.distribution,
             "version": e.version, "description": e.description,
             "params": _params(e.config), "default_weights": e.default_weights,
             "needs_weights": e.needs_weights} for e in entries]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    # WEIGHTS: what `weights:` defaults to; `none` for a component with nothing learned or
    # fitted, whose `random` default is not "untrained".
    print(_table([[d["kind"], d["name"], d["plugin"], d["default_weights"] if d["needs_weights"] else "none",
                   d["description"]] for d in data],
                 ["KIND", "NAME", "PLUGIN", "WEIGHTS", "DESCRIPTION"]))
    return 0


def _params(config: type) -> dict[str, object]:
    import attrs

    out: dict[str, object] = {}
    for field in attrs.fields(config):
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        try:
            out[field.name] = converter.unstructure(default)
        except Exception:  # noqa: BLE001 - a default that is not plain data
            out[field.name] = repr(default)
    return out


def run_pipelines(args: argparse.Namespace) -> int:
    presets = _registry().pipelines
    data = [{"name": p.name, "plugin": p.plugin, "path": str(p.path), "description": p.description}
            for p in presets.values()]
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(_table([[d["name"], d["plugin"], d["description"]] for d in data], ["PIPELINE", "PLUGIN", "DESCRIPTION"]))
    return 0


__all__ = ["run_validate", "run_plugins", "run_components", "run_pipelines", "CadenzaError"]
