"""``cadenza evaluate``: generate from labelled prompts, then score prompt adherence and FAD.

The prompts are a labelled manifest, usually a ``cadenza corpus`` split (``test.jsonl``):
each line has a ``caption`` (or ``prompt``), the attribute fields the caption describes
(``tempo_class``, ``key``, ``mode``, ``register``, ``dynamics``, ``drums``, ``instrument``) and,
for corpus lines, the reference ``audio`` the caption was rendered from.

The steps, each resumable (``--resume`` keeps what ``OUT`` already holds):

1. ``OUT/prompts.jsonl`` - one generation job per prompt and seed, run by the batch generator
   of ``cadenza generate --prompts`` into ``OUT/audio`` (WAV + JSON sidecar per clip);
2. ``OUT/scores.jsonl`` - the ``adherence`` metric on every generated clip;
3. ``OUT/reference_scores.jsonl`` - the same metric on the reference clips: the estimators'
   accuracy on real audio with known attributes, i.e. the *ceiling* a generator can reach;
4. FAD of the generated set against the reference set (``--fad-embedding``);
5. ``OUT/summary.json`` and ``OUT/summary.md`` - adherence per attribute and overall, as is and
   as a share of the ceiling, for all prompts and for the corpus's held-out groups (attribute
   combinations and caption wordings never seen in training).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from cadenza.core.cli.batch import BatchConfig, run_batch
from cadenza.core.files.atomic import write_text
from cadenza.core.errors import InputError
from cadenza.core.files.json_lines import parse_object, read_lines
from cadenza.plugins.workflows.evaluate.config import EvaluateConfig
from cadenza.core.audio.io import load_audio, resample
from cadenza.core.components import BuildContext
from cadenza.core.spec.validate import load_pipeline

ATTRIBUTES = ("tempo_class", "key", "mode", "register", "dynamics", "drums", "instrument")
# Uniform chance of matching by guessing: 1 / number of values each attribute can take.
CHANCE = {"tempo_class": 1 / 3, "key": 1 / 12, "mode": 1 / 2, "register": 1 / 3, "dynamics": 1 / 2, "drums": 1 / 2,
          "instrument": 1 / 16}
HELD_OUT_COMBINATION = "held-out combination"
HELD_OUT_WORDING = "held-out wording"
SEEN = "seen combination and wording"


@attrs.frozen
class LabelledPrompt:
    """One usable line of the prompts file."""

    line: int
    name: str
    prompt: str
    attributes: dict[str, Any]
    reference: Path | None
    groups: tuple[str, ...]


def groups_of(record: dict[str, Any]) -> tuple[str, ...]:
    """The corpus generalisation groups a line belongs to (none for lines that are not corpus records)."""
    from cadenza.plugins.workflows.corpus.build import HELD_OUT_COMBINATIONS
    from cadenza.plugins.workflows.corpus.captions import TEST_ONLY_TEMPLATES

    groups = []
    if all(record.get(k) for k in ("instrument", "mode", "tempo_class")) and \
            (record["instrument"], record["mode"], record["tempo_class"]) in HELD_OUT_COMBINATIONS:
        groups.append(HELD_OUT_COMBINATION)
    if record.get("template") in TEST_ONLY_TEMPLATES:
        groups.append(HELD_OUT_WORDING)
    if not groups and "template" in record:
        groups.append(SEEN)
    return tuple(groups)


def parse_line(text: str, line: int, folder: Path) -> LabelledPrompt:
    """One JSONL line -> a :class:`LabelledPrompt`; a problem is a ValueError with the message."""
    record = parse_object(text, "each line must be a JSON object")
    prompt = record.get("caption", record.get("prompt"))
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("needs a non-empty 'caption' or 'prompt' string")
    attributes = {k: record[k] for k in ATTRIBUTES if record.get(k) not in (None, "")}
    if not attributes:
        raise ValueError(f"states none of the attributes to score ({', '.join(ATTRIBUTES)})")
    name = str(record.get("id", record.get("name", f"{line:04d}")))
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ValueError(f"'id' must be a plain file name, got {name!r}")
    reference = None
    if record.get("audio"):
        reference = folder / str(record["audio"])
        if not reference.is_file():
            raise ValueError(f"reference audio {str(reference)!r} not found")
    return LabelledPrompt(line, name, prompt.strip(), attributes, reference, groups_of(record))


def read_prompts(path: Path, limit: int | None = None) -> tuple[list[LabelledPrompt], list[str]]:
    """The usable lines (the first ``limit``) and one ``FILE:LINE: message`` per bad line."""
    prompts, problems = read_lines(path, lambda text, number: parse_line(text, number, path.parent),
                                   name_of=lambda prompt: prompt.name,
                                   repeated=lambda name, line: f"id {name!r} repeats an earlier line's", limit=limit)
    if not prompts:
        raise InputError(f"{path}: no usable prompt lines" + (f" ({len(problems)} bad)" if problems else ""))
    return prompts, problems


def clip_name(prompt: LabelledPrompt, seed: int) -> str:
    return f"{prompt.name}-s{seed}"


def default_seconds(prompts: list[LabelledPrompt]) -> float | None:
    """The reference clips' length (the first one's), so generated and reference audio compare like for like."""
    import soundfile

    for p in prompts:
        if p.reference is not None:
            info = soundfile.info(str(p.reference))
            return round(info.frames / info.samplerate, 3)
    return None


def write_jobs(out: Path, prompts: list[LabelledPrompt], seeds: int, seconds: float | None) -> Path:
    """``OUT/prompts.jsonl``: the batch generator's input, one line per prompt and seed."""
    lines = [json.dumps({"prompt": p.prompt, "seed": s, "name": clip_name(p, s),
                         **({} if seconds is None else {"seconds": seconds})}, ensure_ascii=False)
             for p in prompts for s in range(seeds)]
    path = out / "prompts.jsonl"
    write_text(path, "\n".join(lines) + "\n")
    return path


def generate(config: EvaluateConfig, jobs: Path, audio_dir: Path) -> int:
    """Run the batch generator of ``cadenza generate --prompts jobs --out audio_dir --resume`` (clips
    already there are kept)."""
    return run_batch(BatchConfig(pipeline=config.pipeline, prompts=jobs, out=audio_dir, resume=True,
                                 batch_size=config.batch_size, device=config.device, quiet=config.quiet,
                                 loudness="none"))  # adherence is the model's: the output stage would move every level


def _read_scores(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    scores = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            scores[row["clip"]] = row
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a damaged row is recomputed
    return scores


def score_files(items: list[tuple[str, Path, LabelledPrompt]], path: Path, metric: Any, label: str,
                quiet: bool) -> dict[str, dict[str, Any]]:
    """Adherence of each ``(clip name, audio file, prompt)``; rows already in ``path`` are kept.

    The file is rewritten atomically after every clip, so an interrupted run loses at most one.
    """
    from tqdm import tqdm

    scores = _read_scores(path)
    todo = [item for item in items if item[0] not in scores]
    for name, audio_path, prompt in tqdm(todo, desc=label, unit="clip", disable=quiet or not todo, file=sys.stderr):
        audio, rate = load_audio(audio_path)
        row = metric(audio, sample_rate=rate, attributes=prompt.attributes)
        scores[name] = {"clip": name, "prompt": prompt.name, "groups": list(prompt.groups), **row}
        write_text(path, "".join(json.dumps(scores[k], ensure_ascii=False) + "\n" for k in scores))
    return {name: scores[name] for name, _, _ in items}


def _mean(values: Iterable[float]) -> float | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(values) / len(values) if values else None


def _share(generated: float | None, ceiling: float | None) -> float | None:
    return generated / ceiling if generated is not None and ceiling else None


def summarize(prompts: list[LabelledPrompt], scores: dict[str, dict], references: dict[str, dict],
              seeds: int) -> dict[str, Any]:
    """Adherence per attribute and overall, generated vs ceiling, for all prompts and per group."""

    def block(selected: list[LabelledPrompt]) -> dict[str, Any]:
        clips = [scores[clip_name(p, s)] for p in selected for s in range(seeds) if clip_name(p, s) in scores]
        refs = [references[p.name] for p in selected if p.name in references]
        per_attribute = {}
        for attribute in ATTRIBUTES:
            key = f"{attribute}_match"
            generated, ceiling = _mean(c.get(key) for c in clips), _mean(r.get(key) for r in refs)
            if generated is None and ceiling is None:
                continue
            per_attribute[attribute] = {"generated": generated, "ceiling": ceiling,
                                        "share_of_ceiling": _share(generated, ceiling), "chance": CHANCE[attribute],
                                        "clips": sum(key in c for c in clips)}
        generated, ceiling = _mean(c.get("adherence") for c in clips), _mean(r.get("adherence") for r in refs)
        return {"prompts": len(selected), "clips": len(clips), "attributes": per_attribute,
                "overall": {"generated": generated, "ceiling": ceiling, "share_of_ceiling": _share(generated, ceiling)}}

    result = {"all": block(prompts)}
    for group in (HELD_OUT_COMBINATION, HELD_OUT_WORDING, SEEN):
        members = [p for p in prompts if group in p.groups]
        if members:
            result[group] = block(members)
    return result


def fad_embedding_metric(choice: str, pipeline: str, registry: Any) -> tuple[Any, Any]:
    """The ``fad`` metric for ``--fad-embedding`` and, for 'conditioner', the pipeline's built conditioner."""
    entry = registry.get("metric", "fad")
    try:
        metric = entry.build(entry.config(embedding=choice))
    except (TypeError, ValueError) as exc:
        raise InputError(f"--fad-embedding: {exc}") from None
    conditioner = None
    if choice == "conditioner":
        resolved = load_pipeline(pipeline, registry).conditioner
        if resolved is None:
            raise InputError(f"--fad-embedding conditioner: the pipeline {pipeline!r} has no conditioner")
        conditioner = resolved.entry.build(resolved.config, BuildContext(weights=resolved.weights))
    return metric, conditioner


def compute_fad(choice: str, pipeline: str, registry: Any, generated: list[Path], references: list[Path]) -> dict:
    """FAD of the generated clips against the reference clips, with how many embeddings each side had."""
    metric, conditioner = fad_embedding_metric(choice, pipeline, registry)
    clips = [load_audio(p) for p in generated]
    refs = [load_audio(p) for p in references]
    rate = clips[0][1]
    same_rate = lambda pairs: [a if r == rate else resample(a, r, rate) for a, r in pairs]
    values = metric(same_rate(clips), sample_rate=rate, reference=same_rate(refs), conditioner=conditioner)
    return {"embedding": choice, "value": values["fad"], "embeddings": int(values["fad_embeddings"]),
            "reference_embeddings": int(values["fad_reference_embeddings"]),
            "generated_clips": len(clips), "reference_clips": len(refs)}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def render_markdown(summary: dict[str, Any]) -> str:
    """The summary as a Markdown report: one table per prompt group, then FAD."""
    lines = ["# Prompt adherence", "",
             f"Pipeline `{summary['pipeline']}`{' (random weights: ' + ', '.join(summary['random_components']) + ')' if summary['random_components'] else ''}; "
             f"prompts `{summary['prompts_file']}` ({summary['prompts']} prompts x {summary['seeds']} seed"
             f"{'' if summary['seeds'] == 1 else 's'}, {summary['seconds']} s each).", "",
             "*generated*: share of clips whose measured attribute matches the prompt; *ceiling*: the same "
             "estimators on the reference clips (their accuracy on real audio with known attributes); *share*: "
             "generated / ceiling; *chance*: guessing uniformly.", ""]
    for group, block in summary["adherence"].items():
        lines += [f"## {group} ({block['prompts']} prompts, {block['clips']} clips)", "",
                  "| attribute | generated | ceiling | share of ceiling | chance |", "|---|---:|---:|---:|---:|"]
        for attribute, row in block["attributes"].items():
            lines.append(f"| {attribute} | {_pct(row['generated'])} | {_pct(row['ceiling'])} | "
                         f"{_pct(row['share_of_ceiling'])} | {_pct(row['chance'])} |")
        overall = block["overall"]
        lines += [f"| **overall** | **{_pct(overall['generated'])}** | {_pct(overall['ceiling'])} | "
                  f"**{_pct(overall['share_of_ceiling'])}** | |", ""]
    fad = summary.get("fad")
    if fad:
        lines += ["## FAD", "", f"{fad['value']:.3f} with the `{fad['embedding']}` embedding ({fad['generated_clips']} "
                  f"generated vs {fad['reference_clips']} reference clips; {fad['embeddings']} and "
                  f"{fad['reference_embeddings']} embeddings). Lower is better; comparable only under one embedding.", ""]
    lines += [f"Command: `{summary['command']}`", ""]
    return "\n".join(lines)
