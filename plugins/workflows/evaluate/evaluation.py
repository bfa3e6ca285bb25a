"""The ``cadenza evaluate`` workflow as a Python call: :func:`evaluate` runs the steps of
:mod:`cadenza.plugins.workflows.evaluate.runner` for an
:class:`~cadenza.plugins.workflows.evaluate.config.EvaluateConfig`.

Refuses to mix two evaluations in one folder (``OUT/evaluate.json`` records the settings;
``--resume`` must repeat them), then generates, scores and summarises.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from cadenza.core.files.atomic import write_text
from cadenza.core.errors import InputError
from cadenza.plugins.workflows.evaluate import runner as ev
from cadenza.plugins.workflows.evaluate.config import EvaluateConfig
from cadenza.core.spec.validate import load_pipeline
from cadenza.registry import get_registry


def _settings_guard(out: Path, settings: dict, resume: bool) -> None:
    """Write ``OUT/evaluate.json``, or check that a resumed run repeats its settings."""
    path = out / "evaluate.json"
    if path.exists():
        if not resume:
            raise InputError(f"{out}: already holds an evaluation; use --resume to continue it, or another --out")
        try:
            before = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):
            raise InputError(f"{path}: unreadable settings file; remove it or use another --out") from None
        changed = [k for k in settings if before.get(k) != settings[k]]
        if changed:
            raise InputError(f"{out}: --resume with other settings than the first run ({', '.join(changed)}: "
                             f"{', '.join(f'{before.get(k)!r} -> {settings[k]!r}' for k in changed)})")
        return
    if out.exists() and any(out.iterdir()) and not resume:
        raise InputError(f"{out}: folder is not empty; use an empty or new --out")
    out.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(settings, indent=2) + "\n")


def evaluate(config: EvaluateConfig) -> int:
    """Generate, score and summarise (module doc); 2 when the prompts had bad lines, 1 when a clip failed."""
    out = config.out
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is not a folder")
    prompts_file = config.prompts
    prompts, problems = ev.read_prompts(prompts_file, config.limit)
    for problem in problems:
        print(problem, file=sys.stderr)
    seconds = config.seconds if config.seconds is not None else ev.default_seconds(prompts)
    settings = {"pipeline": str(config.pipeline), "prompts": str(prompts_file.resolve()), "limit": config.limit,
                "seeds": config.seeds, "seconds": seconds, "fad_embedding": config.fad_embedding}

    registry = get_registry()
    pipeline = load_pipeline(config.pipeline, registry)  # a bad spec fails here, before anything is written
    _settings_guard(out, settings, config.resume)

    jobs = ev.write_jobs(out, prompts, config.seeds, seconds)
    failed = ev.generate(config, jobs, out / "audio")
    entry = registry.get("metric", "adherence")
    metric = entry.build(entry.config())
    generated = [(ev.clip_name(p, s), out / "audio" / f"{ev.clip_name(p, s)}.wav", p)
                 for p in prompts for s in range(config.seeds)]
    generated = [item for item in generated if item[1].is_file()]
    if not generated:
        raise InputError(f"{out / 'audio'}: no clip was generated")
    scores = ev.score_files(generated, out / "scores.jsonl", metric, "scoring clips", config.quiet)
    with_reference = [(p.name, p.reference, p) for p in prompts if p.reference is not None]
    references = ev.score_files(with_reference, out / "reference_scores.jsonl", metric, "scoring references",
                                config.quiet)

    fad = None
    if config.fad_embedding != "none" and len(with_reference) >= 2 and len(generated) >= 2:
        fad = ev.compute_fad(config.fad_embedding, config.pipeline, registry, [g[1] for g in generated],
                             [r[1] for r in with_reference])
    elif config.fad_embedding != "none" and not config.quiet:
        print("note: FAD skipped: it needs at least 2 generated clips and 2 reference clips (lines with 'audio')",
              file=sys.stderr)

    summary = {
        "pipeline": str(config.pipeline), "prompts_file": str(prompts_file), "prompts": len(prompts),
        "seeds": config.seeds, "seconds": seconds,
        "random_components": pipeline.random_components(),
        "adherence": ev.summarize(prompts, scores, references, config.seeds), "fad": fad,
        "bad_lines": problems, "failed_clips": len(prompts) * config.seeds - len(generated),
        "command": "cadenza " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["evaluate"] else "cadenza evaluate",
    }
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    markdown = ev.render_markdown(summary)
    write_text(out / "summary.md", markdown)
    print(markdown)
    return 2 if problems else 1 if failed else 0  # 2: bad lines in the input; 1: a clip failed
