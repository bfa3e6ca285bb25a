"""The benchmark matrix: a base pipeline, the alternatives to try per slot, and how to measure.

A matrix file names a base spec and either ``vary:`` (slot path -> alternatives; the cartesian
product is taken) or ``combinations:`` (an explicit list of overrides), or both. Each
combination is the base spec with some values replaced; it gets a readable, stable id (its
label plus a hash of its overrides), so results can be resumed and merged across machines.

Compatibility is decided by the spec validator, before anything is built: a combination the
validator rejects is reported with its reason and never run. See ``docs/bench.md``.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import attrs

from cadenza.core.errors import CadenzaError, InputError, SpecError
from cadenza.core.spec.yaml_source import line_of, load_yaml_file
from cadenza.core.spec.validate import resolve_source
from cadenza.core.spec.validate import check_tree
from cadenza.core.spec.params import ParamsError, structure_config

TOP_KEYS = ("name", "description", "base", "vary", "combinations", "prompts", "references", "seeds", "seconds",
            "batch_size", "warmup", "threads", "metrics")
METRIC_KEYS = ("name", "params", "subject")
SUBJECTS = ("auto", "generated", "codec")
# Fields of a prompt manifest line that describe the wanted music (corpus attributes).
ATTRIBUTE_KEYS = ("instrument", "tempo_class", "bpm", "key", "mode", "register", "dynamics", "drums")
DEFAULT_PROMPTS = ("a calm piano melody", "an energetic rock drum beat")
_SLUG = re.compile(r"[^A-Za-z0-9_.=+()-]+")


class _Remove:
    """Marker for a ``null`` alternative: the key is removed from the spec (e.g. no conditioner)."""

    def __repr__(self) -> str:
        return "null"


REMOVE = _Remove()


@attrs.frozen
class Prompt:
    """One prompt: its text, the attributes it asks for (corpus manifests), its reference clip."""

    text: str
    attributes: dict[str, Any] = attrs.Factory(dict)
    audio: str | None = None  # path of the reference recording, when the manifest has one


@attrs.frozen
class MetricSpec:
    """A metric plugin to run, its params, and which audio it scores (``auto``: it decides)."""

    name: str
    params: dict[str, Any] = attrs.Factory(dict)
    subject: str = "auto"


@attrs.frozen
class Combination:
    """One point of the matrix: the overrides applied to the base spec, and the spec they give."""

    id: str
    label: str
    overrides: dict[str, Any]  # dotted path -> value (None: the key was removed)
    tree: dict[str, Any]  # the full spec, plain data
    spec_hash: str  # hash of ``tree``: a changed base spec makes old results stale
    reason: str | None = None  # why the validator rejects it; None: compatible


@attrs.frozen
class Matrix:
    path: Path
    name: str
    base: Path
    combinations: tuple[Combination, ...]
    prompts: tuple[Prompt, ...]
    references: tuple[str, ...]
    seeds: tuple[int, ...]
    seconds: float | None
    batch_size: int | None
    warmup: bool
    threads: int | None
    metrics: tuple[MetricSpec, ...]

    def settings(self, device: str) -> dict[str, Any]:
        """Everything besides the combination that shapes a row; rows are comparable when equal."""
        def where(audio: str | None) -> str | None:  # as the matrix names it, so shards on other machines agree
            return None if audio is None else os.path.relpath(audio, self.path.parent)

        return {"prompts": [{**attrs.asdict(p), "audio": where(p.audio)} for p in self.prompts],
                "references": [where(r) for r in self.references],
                "seeds": list(self.seeds), "seconds": self.seconds, "batch_size": self.batch_size,
                "warmup": self.warmup, "metrics": [attrs.asdict(m) for m in self.metrics],
                "device": device.split(":")[0]}

    def fingerprint(self, device: str) -> str:
        return digest(self.settings(device))


def relative_paths(text: str) -> str:
    """Paths under the working folder shown relative to it: results stay readable (and private) when shared."""
    return text.replace(os.getcwd() + os.sep, "")


def digest(data: Any, length: int = 8) -> str:
    """Short stable hash of plain data (key order does not matter)."""
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def plain(data: Any) -> Any:
    """YAML data with line numbers -> plain dicts, lists and scalars (picklable, comparable)."""
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [plain(v) for v in data]
    return data


class _Problems:
    """Collects matrix problems as ``FILE:LINE: message`` and raises them together."""

    def __init__(self, tree: Any, path: Path):
        self.tree, self.path, self.lines = tree, path, []

    def add(self, where: tuple, message: str) -> None:
        self.lines.append(f"{self.path}:{line_of(self.tree, where)}: {message}")

    def raise_any(self) -> None:
        if self.lines:
            raise SpecError(self.lines)


def load_matrix(path: str | Path, registry: Any) -> Matrix:
    """Read and check a matrix file, expand its combinations and check each with the validator."""
    path = Path(path)
    tree = load_yaml_file(path)
    problems = _Problems(tree, path)
    if not isinstance(tree, dict):
        raise SpecError([f"{path}:1: a matrix must be a mapping with at least 'base'"])
    for key in tree:
        if key not in TOP_KEYS:
            problems.add((key,), f"unknown key {key!r}; allowed: {', '.join(TOP_KEYS)}")
    if not isinstance(tree.get("base"), str) or not tree["base"].strip():
        problems.add(("base",) if "base" in tree else (), "'base' must name a pipeline spec (a path relative to "
                     "the matrix file) or a preset")
    problems.raise_any()
    beside = path.parent / tree["base"]
    try:
        base_path = resolve_source(beside if beside.exists() else tree["base"], registry)
    except SpecError as exc:
        raise SpecError([f"{path}:{line_of(tree, ('base',))}: base: {exc.problems[0]}"]) from None
    base = plain(load_yaml_file(base_path))
    if not isinstance(base, dict):
        raise SpecError([f"{base_path}:1: the base pipeline spec must be a mapping"])

    overrides = _vary(tree, base, problems) + _explicit(tree, base, problems)
    settings = _settings(tree, path, problems)
    _check_metrics(settings["metrics"], registry, problems)
    problems.raise_any()
    if not overrides:
        overrides = [("base", {})]
    combos, seen = [], {}
    for label, values in overrides:
        combo = _combination(label, values, base, base_path, registry)
        if combo.id in seen:
            where = line_of(tree, ("combinations",) if "combinations" in tree else ("vary",))
            raise SpecError([f"{path}:{where}: combination {combo.label!r} has the same overrides as "
                             + repr(seen[combo.id])])
        seen[combo.id] = combo.label
        combos.append(combo)
    return Matrix(path=path, name=str(tree.get("name") or path.stem), base=base_path, combinations=tuple(combos),
                  **settings)


# -- combinations ------------------------------------------------------------------------
def _alternative(value: Any, key: str) -> tuple[str, Any]:
    """An alternative as written -> (label, the value it puts into the spec)."""
    if value is None:
        return f"no-{key.split('.')[-1]}", REMOVE
    if isinstance(value, dict):
        value = dict(value)
        label = value.pop("label", None)
        if label is None:
            name = value.get("name")
            params = value.get("params") or {}
            inner = ",".join(f"{k}={_short(v)}" for k, v in sorted(params.items())) if isinstance(params, dict) else ""
            weights = f"@{value['weights']}" if isinstance(value.get("weights"), str) else ""
            label = f"{name}{weights}({inner})" if name and inner else f"{name}{weights}" if name else digest(value, 6)
        return str(label), value
    if isinstance(value, str) and (key in ("tokenizer", "conditioner", "semantic_tokenizer")
                                   or key.endswith((".sampler", ".model"))):
        return value, value
    return f"{key.split('.')[-1]}={_short(value)}", value


def _short(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")).strip('"') if not isinstance(value, str) else value


def _vary(tree: dict, base: dict, problems: _Problems) -> list[tuple[str, dict[str, Any]]]:
    vary = tree.get("vary")
    if vary is None:
        return []
    if not isinstance(vary, dict) or not vary:
        problems.add(("vary",), "vary must map slot paths (e.g. tokenizer, stages.coarse.sampler) to lists of "
                     "alternatives")
        return []
    axes = []
    for key, alternatives in vary.items():
        if not isinstance(alternatives, list) or not alternatives:
            problems.add(("vary", key), f"vary.{key}: expected a non-empty list of alternatives")
            continue
        message = _check_path(base, str(key))
        if message:
            problems.add(("vary", key), f"vary.{key}: {message}")
            continue
        axes.append([(str(key), *_alternative(alt, str(key))) for alt in alternatives])
    out = []
    for picks in itertools.product(*axes):
        out.append(("+".join(label for _, label, _ in picks), {key: value for key, _, value in picks}))
    return out


def _explicit(tree: dict, base: dict, problems: _Problems) -> list[tuple[str, dict[str, Any]]]:
    combos = tree.get("combinations")
    if combos is None:
        return []
    if not isinstance(combos, list):
        problems.add(("combinations",), "combinations must be a list of {label, set: {slot path: value}}")
        return []
    out = []
    for i, item in enumerate(combos):
        where = ("combinations", i)
        if not isinstance(item, dict) or not isinstance(item.get("set", {}), dict) or set(item) - {"label", "set"}:
            problems.add(where, "a combination is a mapping with 'set' (slot path -> value) and optionally 'label'")
            continue
        values, labels = {}, []
        for key, value in (item.get("set") or {}).items():
            message = _check_path(base, str(key))
            if message:
                problems.add(where + ("set", key), f"combinations[{i}].set.{key}: {message}")
                continue
            label, values[str(key)] = _alternative(value, str(key))
            labels.append(label)
        out.append((str(item.get("label") or "+".join(labels) or "base"), values))
    return out


def _split(path: str) -> list[str]:
    return [part for part in path.split(".")]


def _check_path(base: dict, path: str) -> str | None:
    """Why ``path`` cannot address a value of the base spec, or None (missing mappings are created)."""
    parts = _split(path)
    if not all(parts):
        return "a slot path is dot-separated keys, e.g. stages.coarse.sampler"
    node: Any = base
    for i, part in enumerate(parts):
        if isinstance(node, list):
            found = _stage_index(node, part)
            if found is None:
                names = ", ".join(str(s.get("name", s.get("role"))) for s in node if isinstance(s, dict))
                return f"the base pipeline has no stage {part!r} (stages: {names})"
            node = node[found]
        elif isinstance(node, dict):
            if node.get(part) is None:
                return None
            node = node[part]
        elif isinstance(node, str):
            return None  # a shorthand (`sampler: top-k`) grows into its mapping form
        else:
            return f"{'.'.join(parts[:i])} is {node!r}, not a mapping"
    return None


def _stage_index(stages: list, key: str) -> int | None:
    for i, stage in enumerate(stages):
        if isinstance(stage, dict) and key in (stage.get("name"), None if "name" in stage else stage.get("role")):
            return i
    if key.isdigit() and int(key) < len(stages):
        return int(key)
    return None


def apply_overrides(base: dict, overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with each dotted path set to its value (REMOVE deletes the key)."""
    tree = copy.deepcopy(base)
    for path, value in overrides.items():
        parts = _split(path)
        node: Any = tree
        for part in parts[:-1]:
            if isinstance(node, list):
                node = node[_stage_index(node, part)]
                continue
            if not isinstance(node.get(part), (dict, list)):
                # a shorthand value (`sampler: top-k`) grows into its mapping form to take a sub-key
                node[part] = {"name": node[part]} if isinstance(node.get(part), str) else {}
            node = node[part]
        if isinstance(node, list):  # a whole stage
            index = _stage_index(node, parts[-1])
            if value is REMOVE:
                del node[index]
            else:
                node[index] = copy.deepcopy(value)
        elif value is REMOVE:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = copy.deepcopy(value)
    return tree


def _combination(label: str, values: dict[str, Any], base: dict, base_path: Path, registry: Any) -> Combination:
    recorded = {k: (None if v is REMOVE else v) for k, v in values.items()}
    tree = apply_overrides(base, values)
    slug = _SLUG.sub("-", label).strip("-")[:60] or "combination"
    reason = None
    try:
        check_tree(tree, registry, base_path)
    except SpecError as exc:
        prefix = re.compile(re.escape(str(base_path)) + r":\d+: ")
        reason = relative_paths("; ".join(prefix.sub("", line) for line in exc.problems))
    except CadenzaError as exc:
        reason = relative_paths(str(exc))
    return Combination(id=f"{slug}-{digest(recorded)}", label=label, overrides=recorded, tree=tree,
                       spec_hash=digest(tree), reason=reason)


# -- settings ----------------------------------------------------------------------------
def _settings(tree: dict, path: Path, problems: _Problems) -> dict[str, Any]:
    prompts = _prompts(tree, path, problems)
    references = _references(tree, path, prompts, problems)
    seeds = tree.get("seeds", 1)
    if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1:
        seeds = list(range(seeds))
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        problems.add(("seeds",), f"seeds must be a count (>= 1) or a list of non-negative integers, got {seeds!r}")
        seeds = [0]
    seconds = tree.get("seconds")
    if seconds is not None and (not _number(seconds) or not seconds > 0 or not math.isfinite(seconds)):
        problems.add(("seconds",), f"seconds must be a positive number, got {seconds!r}")
    ints = {}
    for key in ("batch_size", "threads"):
        value = tree.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            problems.add((key,), f"{key} must be a positive integer, got {value!r}")
            value = None
        ints[key] = value
    warmup = tree.get("warmup", True)
    if not isinstance(warmup, bool):
        problems.add(("warmup",), f"warmup must be true or false, got {warmup!r}")
    return {"prompts": tuple(prompts), "references": tuple(references), "seeds": tuple(seeds),
            "seconds": float(seconds) if _number(seconds) else None, "warmup": bool(warmup),
            "metrics": tuple(_metrics(tree, problems)), **ints}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _manifest_source(node: Any, key: str, problems: _Problems) -> tuple[str | None, int | None]:
    """``path`` or ``{manifest: path, limit: N}`` -> (path, limit)."""
    if isinstance(node, str):
        return node, None
    if isinstance(node, dict) and isinstance(node.get("manifest"), str) and set(node) <= {"manifest", "limit"}:
        limit = node.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            problems.add((key, "limit"), f"{key}.limit must be a positive integer, got {limit!r}")
            limit = None
        return node["manifest"], limit
    return None, None


def read_manifest(path: Path, limit: int | None = None) -> list[Prompt]:
    """Prompts of a JSONL manifest: ``caption`` (or ``prompt``), attributes, ``audio`` beside it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read prompt manifest ({exc})") from None
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{path}:{number}: not valid JSON ({exc})") from None
        text = row.get("caption", row.get("prompt")) if isinstance(row, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{path}:{number}: expected an object with a 'caption' or 'prompt' text")
        audio = row.get("audio")
        if audio is not None and not isinstance(audio, str):
            raise InputError(f"{path}:{number}: 'audio' must be a path, got {audio!r}")
        if audio:
            audio_path = Path(audio).expanduser()
            audio = os.path.normpath(audio_path if audio_path.is_absolute() else path.parent / audio_path)
        out.append(Prompt(text.strip(), {k: row[k] for k in ATTRIBUTE_KEYS if k in row}, audio))
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise InputError(f"{path}: the manifest holds no prompts")
    return out


def _prompts(tree: dict, path: Path, problems: _Problems) -> list[Prompt]:
    node = tree.get("prompts")
    if node is None:
        return [Prompt(p) for p in DEFAULT_PROMPTS]
    if isinstance(node, list):
        if not node or not all(isinstance(p, str) and p.strip() for p in node):
            problems.add(("prompts",), "prompts must be a non-empty list of texts, a JSONL manifest path, or "
                         "{manifest: PATH, limit: N}")
            return []
        return [Prompt(p.strip()) for p in node]
    source, limit = _manifest_source(node, "prompts", problems)
    if source is None:
        problems.add(("prompts",), "prompts must be a list of texts, a JSONL manifest path, or {manifest: PATH, "
                     "limit: N}")
        return []
    try:
        return read_manifest((path.parent / source).expanduser(), limit)
    except InputError as exc:
        problems.add(("prompts",), f"prompts: {exc}")
        return []


def _references(tree: dict, path: Path, prompts: list[Prompt], problems: _Problems) -> list[str]:
    node = tree.get("references")
    if node is None:
        return [p.audio for p in prompts if p.audio]
    source, limit = _manifest_source(node, "references", problems)
    if source is None:
        problems.add(("references",), "references must be a JSONL manifest path (lines with 'audio') or "
                     "{manifest: PATH, limit: N}")
        return []
    try:
        items = read_manifest((path.parent / source).expanduser(), limit)
    except InputError as exc:
        problems.add(("references",), f"references: {exc}")
        return []
    missing = [i for i, item in enumerate(items) if not item.audio]
    if missing:
        problems.add(("references",), f"references: line {missing[0] + 1} of {source} has no 'audio'")
    return [item.audio for item in items if item.audio]


def _check_metrics(metrics: tuple[MetricSpec, ...], registry: Any, problems: _Problems) -> None:
    """Each metric is installed and its params fit its config (checked before any run starts)."""
    for i, metric in enumerate(metrics):
        try:
            structure_config(registry.get("metric", metric.name).config, metric.params)
        except ParamsError as exc:
            problems.add(("metrics", i), f"metric {metric.name!r}: {exc}")
        except CadenzaError as exc:
            problems.add(("metrics", i), str(exc))


def _metrics(tree: dict, problems: _Problems) -> list[MetricSpec]:
    node = tree.get("metrics", [])
    if not isinstance(node, list):
        problems.add(("metrics",), "metrics must be a list of metric names or {name, params, subject}")
        return []
    out = []
    for i, item in enumerate(node):
        if isinstance(item, str) and item.strip():
            out.append(MetricSpec(item.strip()))
            continue
        if (not isinstance(item, dict) or not isinstance(item.get("name"), str) or set(item) - set(METRIC_KEYS)
                or not isinstance(item.get("params", {}), dict) or item.get("subject", "auto") not in SUBJECTS):
            problems.add(("metrics", i), f"a metric is a name or {{name, params, subject: {'|'.join(SUBJECTS)}}}, "
                         f"got {plain(item)!r}")
            continue
        out.append(MetricSpec(item["name"], plain(item.get("params") or {}), item.get("subject", "auto")))
    names = [m.name for m in out]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.add(("metrics",), f"metric {name!r} is listed twice")
    return out
