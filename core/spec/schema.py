"""The pipeline spec: what a YAML file says, as attrs classes.

A spec names the components of one cascade and the stages that run in order. Parsing
(:func:`parse_spec`) checks the shape of the YAML; :mod:`cadenza.core.spec.validate` then checks
the components against the registry and against each other. Both report problems as
``(key path, message)`` so every line of ``cadenza validate`` can say FILE:LINE.

Shape::

    name: my-pipeline                 # optional
    conditioner: byte-text            # or {name, params, weights}; optional
    semantic_tokenizer: {name: mel-kmeans, params: {vocab_size: 128}}
    tokenizer: {name: tiny-codec, weights: random}
    stages:
      - name: coarse                  # defaults to the role
        role: coarse                  # semantic | coarse | fine | acoustic
        model: transformer            # stage-model plugin
        params: {d_model: 128}        # checked against that plugin's config class
        weights: random               # random | local path | hub id
        reads: [semantic]             # streams: semantic, acoustic[a:b]
        writes: acoustic[0:2]
        conditioning: prefix          # prefix | cross | none
        sampler: {name: top-k, params: {k: 50}}
        guidance_scale: 3.0           # classifier-free guidance; 1 = off
    output: {seconds: 5.0, loudness: -14.0, true_peak: -1.0, hold: 0.0}   # hold: long-form piece memory, 0 = off
    # loudness: integrated LUFS target (null: no gain), with loudness_keep (fraction of the distance
    # from loudness_reference LUFS kept) and true_peak (the limiter's dBTP ceiling, null: clip only);
    # or peak_dbfs instead: peak-normalise each clip, as specs before the loudness stage did
    # output may also set window / overlap (seconds): the generation window, e.g. the length the
    # stages were trained on (default: one pass up to 10 s), and how much of each window continues
    # the one before (default: half the window), and beat (a logit scale, 0 = off): long-form
    # windows keep the tempo of the piece's opening (needs a semantic tokenizer that knows onsets)
"""

from __future__ import annotations

import math

from pathlib import Path
from typing import Any

import attrs

from cadenza.core.layout import CONDITIONING_MODES, ROLES, StreamRef

KeyPath = tuple[Any, ...]
Problems = list[tuple[KeyPath, str]]

TOP_KEYS = ("name", "description", "conditioner", "semantic_tokenizer", "tokenizer", "stages", "output")
COMPONENT_KEYS = ("name", "params", "weights")
SAMPLER_KEYS = ("name", "params")
STAGE_KEYS = ("name", "role", "model", "params", "weights", "reads", "writes",
              "conditioning", "sampler", "guidance_scale")
OUTPUT_KEYS = ("seconds", "peak_dbfs", "loudness", "loudness_keep", "loudness_reference", "true_peak", "hold", "window", "overlap", "beat", "watermark")
DEFAULT_WATERMARK = "spread-spectrum"  # the built-in watermark: every generated file says it was generated
NO_WATERMARK = ("none", "off")
DEFAULT_SAMPLER = "top-k"


@attrs.frozen
class ComponentSpec:
    """A component reference: plugin name, its params, and where its weights come from."""

    name: str
    params: dict[str, Any] = attrs.Factory(dict)
    weights: str | None = None  # None: the component's registered default


@attrs.frozen
class StageSpec:
    name: str
    role: str
    model: ComponentSpec
    reads: tuple[StreamRef, ...]
    writes: StreamRef
    conditioning: str | None  # None: chosen from the conditioner's kind
    sampler: ComponentSpec
    guidance_scale: float = 1.0


@attrs.frozen
class OutputSpec:
    seconds: float = 5.0
    peak_dbfs: float | None = None  # peak-normalise to this level instead of the loudness stage; None: not
    hold: float = 0.0  # long-form piece memory: logit penalty on tokens the opening did not use; 0 = off
    window: float | None = None  # generation window, seconds; None: one pass up to 10 s (or ``seconds``)
    overlap: float | None = None  # seconds of each window continuing the last; None: half the window
    beat: float = 0.0  # long-form beat grid: logit scale holding the opening's tempo; 0 = off
    # the watermark every output gets; None: none. ``watermark_default``: the spec did not name one,
    # so a registry without the built-in runs unmarked instead of refusing the spec
    watermark: ComponentSpec | None = ComponentSpec(DEFAULT_WATERMARK)
    watermark_default: bool = True
    # the loudness stage (cadenza.core.audio.loudness): target LUFS (None: no gain), the fraction of
    # a clip's distance from the reference level it keeps, that reference (None: the target), and
    # the true-peak limiter's ceiling in dBTP (None: only clip to [-1, 1])
    loudness: float | None = -14.0
    loudness_keep: float = 0.0
    loudness_reference: float | None = None
    true_peak: float | None = -1.0


@attrs.frozen
class PipelineSpec:
    stages: tuple[StageSpec, ...]
    tokenizer: ComponentSpec
    conditioner: ComponentSpec | None = None
    semantic_tokenizer: ComponentSpec | None = None
    output: OutputSpec = OutputSpec()
    name: str = ""
    description: str = ""
    source: Path | None = None  # the file it came from; relative weights paths resolve beside it

    @property
    def base_dir(self) -> Path | None:
        return self.source.parent if self.source else None


@attrs.frozen
class StageDraft:
    """What could be read of one stage: a :class:`StageSpec` with ``None`` where a part is missing
    or wrong (each already a problem), so validation still checks the parts that are there."""

    name: str | None
    role: str | None
    model: ComponentSpec | None
    reads: tuple[StreamRef | None, ...]  # None: a reference that could not be read
    writes: StreamRef | None
    conditioning: str | None
    sampler: ComponentSpec | None
    guidance_scale: float = 1.0

    def complete(self) -> StageSpec | None:
        """The stage, when everything that defines it was read."""
        if None in (self.name, self.role, self.model, self.writes, self.sampler):
            return None
        return StageSpec(self.name, self.role, self.model, tuple(r for r in self.reads if r is not None), self.writes,
                         self.conditioning, self.sampler, self.guidance_scale)


@attrs.frozen
class SpecDraft:
    """What could be read of a spec (see :func:`parse_draft`): components that could not be read
    are ``None``, stages that are not mappings are ``None``, bad optional values are defaults."""

    stages: tuple[StageDraft | None, ...]
    tokenizer: ComponentSpec | None
    conditioner: ComponentSpec | None = None
    semantic_tokenizer: ComponentSpec | None = None
    output: OutputSpec = OutputSpec()
    name: str = ""
    description: str = ""
    source: Path | None = None

    @property
    def base_dir(self) -> Path | None:
        return self.source.parent if self.source else None

    def complete(self) -> PipelineSpec | None:
        """The spec, when its tokenizer and every stage could be read."""
        stages = tuple(s.complete() if s is not None else None for s in self.stages)
        if not stages or None in stages or self.tokenizer is None:
            return None
        return PipelineSpec(stages, self.tokenizer, self.conditioner, self.semantic_tokenizer, self.output,
                            self.name, self.description, self.source)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Documented ceilings (docs/specs.md): far past any useful setting, low enough that nothing
# downstream overflows or allocates without bound.
MAX_SECONDS = 3600.0  # one hour per generation, prime and all windows included
MAX_GUIDANCE = 100.0  # classifier-free guidance; useful values are 1-10
MAX_LOGIT_SCALE = 1e4  # steering scales (hold, beat): 1e4 already forbids; far more overflows float16


def _too_large(key: str, value: Any, high: float, unit: str = "") -> str | None:
    """The problem with a finite number above its documented ceiling, else None."""
    if _is_number(value) and math.isfinite(value) and value > high:
        return f"{key} must be at most {high:g}{unit}, got {value!r}"
    return None


def _unknown_keys(node: dict, allowed: tuple[str, ...], path: KeyPath, problems: Problems) -> None:
    for key in node:
        if key not in allowed:
            problems.append((path + (key,), f"unknown key {key!r}; allowed: {', '.join(allowed)}"))


def _component(node: Any, path: KeyPath, problems: Problems, keys: tuple[str, ...] = COMPONENT_KEYS) -> ComponentSpec | None:
    if isinstance(node, str) and node.strip():
        return ComponentSpec(node.strip())
    if not isinstance(node, dict):
        problems.append((path, f"expected a component name or a mapping with keys {', '.join(keys)}, got {node!r}"))
        return None
    _unknown_keys(node, keys, path, problems)
    name, params, weights = node.get("name"), node.get("params") or {}, node.get("weights")
    ok = True
    if not isinstance(name, str) or not name.strip():
        problems.append((path + ("name",), "missing component name"))
        ok = False
    if not isinstance(params, dict):
        problems.append((path + ("params",), f"params must be a mapping, got {params!r}"))
        ok = False
    if weights is not None and not isinstance(weights, str):
        problems.append((path + ("weights",), f"weights must be 'random', a local path or a hub id, got {weights!r}"))
        ok = False
    return ComponentSpec(name.strip(), dict(params), weights) if ok else None


def _streams(node: Any, path: KeyPath, problems: Problems) -> tuple[StreamRef | None, ...]:
    """The references in ``node``; None in place of each that could not be read, so every other
    keeps its index (and a later problem with it points at its own line)."""
    items = [node] if isinstance(node, str) else node
    if not isinstance(items, list):
        problems.append((path, f"expected a stream or a list of streams, got {node!r}"))
        return ()
    refs: list[StreamRef | None] = []
    for i, item in enumerate(items):
        try:
            refs.append(StreamRef.parse(item))
        except ValueError as exc:
            problems.append((path + ((i,) if isinstance(node, list) else ()), str(exc)))
            refs.append(None)
    return tuple(refs)


def _stage(node: Any, index: int, problems: Problems) -> StageDraft | None:
    path: KeyPath = ("stages", index)
    if not isinstance(node, dict):
        problems.append((path, f"a stage must be a mapping, got {node!r}"))
        return None
    before = len(problems)
    _unknown_keys(node, STAGE_KEYS, path, problems)
    for key in ("role", "model", "writes"):
        if key not in node:
            problems.append((path, f"stage {index + 1} is missing {key!r}"))
    role = node.get("role")
    if "role" in node and role not in ROLES:
        problems.append((path + ("role",), f"unknown role {role!r}; allowed: {', '.join(ROLES)}"))
    name = node.get("name", role)
    if "name" in node and (not isinstance(name, str) or not name):  # a missing or bad role is its own problem
        problems.append((path + ("name",), f"stage name must be a non-empty string, got {name!r}"))
    model = None
    if "model" in node:
        model_node = node["model"]
        if not isinstance(model_node, str) or not model_node.strip():
            problems.append((path + ("model",), f"model must be a stage-model plugin name, got {model_node!r}"))
        else:
            model = _component({"name": model_node, "params": node.get("params") or {}, "weights": node.get("weights")},
                               path, problems)
    reads = _streams(node.get("reads", []), path + ("reads",), problems)
    writes = _streams(node["writes"], path + ("writes",), problems) if "writes" in node else ()
    if "writes" in node and len(writes) != 1 and len(problems) == before:
        problems.append((path + ("writes",), "a stage writes exactly one stream"))
    conditioning = node.get("conditioning")
    if conditioning is not None and conditioning not in CONDITIONING_MODES:
        problems.append((path + ("conditioning",), f"unknown conditioning {conditioning!r}; allowed: {', '.join(CONDITIONING_MODES)}"))
        conditioning = None
    sampler = _component(node.get("sampler", DEFAULT_SAMPLER), path + ("sampler",), problems, SAMPLER_KEYS)
    scale = node.get("guidance_scale", 1.0)
    problem = _too_large("guidance_scale", scale, MAX_GUIDANCE)
    if problem is None and (not _is_number(scale) or not 0 <= scale < float("inf")):
        problem = f"guidance_scale must be a number >= 0 (1 = no guidance), got {scale!r}"
    if problem is not None:
        problems.append((path + ("guidance_scale",), problem))
        scale = 1.0
    # Problems in optional keys were recorded above with a default put in their place; a part
    # that defines the stage and could not be read is None, so the rest of it still gets checked.
    return StageDraft(name=name if isinstance(name, str) and name else None, role=role if role in ROLES else None,
                      model=model, reads=reads, writes=writes[0] if len(writes) == 1 else None,
                      conditioning=conditioning, sampler=sampler, guidance_scale=float(scale))


def _logit_scale(node: dict, key: str, problems: Problems) -> float:
    """``output.KEY``, a steering option's logit scale: a finite number >= 0, 0 (off) when absent or bad."""
    value = node.get(key, 0.0)
    problem = _too_large(key, value, MAX_LOGIT_SCALE)
    if problem is None and (not _is_number(value) or not 0 <= value < float("inf")):
        problem = f"{key} must be a number >= 0 (0: off), got {value!r}"
    if problem is not None:
        problems.append((("output", key), problem))
        return 0.0
    return float(value)


def _output(node: Any, problems: Problems) -> OutputSpec:
    if node is None:
        return OutputSpec()
    if not isinstance(node, dict):
        problems.append((("output",), f"output must be a mapping, got {node!r}"))
        return OutputSpec()
    _unknown_keys(node, OUTPUT_KEYS, ("output",), problems)
    seconds, peak = node.get("seconds", 5.0), node.get("peak_dbfs")
    problem = _too_large("seconds", seconds, MAX_SECONDS, " s")
    if problem is None and (not _is_number(seconds) or not 0 < seconds < float("inf")):
        problem = f"seconds must be a positive number, got {seconds!r}"
    if problem is not None:
        problems.append((("output", "seconds"), problem))
        seconds = 5.0
    if peak is not None and (not _is_number(peak) or not -200 <= peak <= 0):
        problems.append((("output", "peak_dbfs"), f"peak_dbfs must be a number from -200 to 0 or null, got {peak!r}"))
        peak = -1.0
    levels = _levels(node, peak is not None, problems)
    hold, beat = _logit_scale(node, "hold", problems), _logit_scale(node, "beat", problems)
    window, overlap = node.get("window"), node.get("overlap")
    problem = _too_large("window", window, MAX_SECONDS, " s")
    if problem is None and window is not None and (not _is_number(window) or not 0 < window < float("inf")):
        problem = f"window must be a positive number of seconds or null, got {window!r}"
    if problem is not None:
        problems.append((("output", "window"), problem))
        window = None
    if overlap is not None and (not _is_number(overlap) or not 0 <= overlap < float("inf")):
        problems.append((("output", "overlap"), f"overlap must be a number of seconds >= 0 or null, got {overlap!r}"))
        overlap = None
    elif overlap is not None and window is None:
        problems.append((("output", "overlap"), "overlap needs a window: set output.window too"))
        overlap = None
    elif overlap is not None and overlap >= window:
        message = f"overlap ({overlap:g} s) must be shorter than the window ({window:g} s)"
        problems.append((("output", "overlap"), message))
        overlap = None
    watermark, named = _watermark(node, problems)
    return OutputSpec(float(seconds), None if peak is None else float(peak), hold,
                      None if window is None else float(window), None if overlap is None else float(overlap), beat,
                      watermark, not named, **levels)


# Ranges of the level keys: (lowest, highest, unit). Integrated loudness stops at BS.1770's -70 LUFS gate.
LEVEL_RANGES = {"loudness": (-70.0, 0.0, "LUFS"), "loudness_reference": (-70.0, 0.0, "LUFS"),
                "loudness_keep": (0.0, 1.0, ""), "true_peak": (-60.0, 0.0, "dBTP")}


def _levels(node: dict, peak_normalised: bool, problems: Problems) -> dict[str, Any]:
    """The loudness keys of ``output``. A spec that peak-normalises (``peak_dbfs``) keeps the
    output stage it had before loudness existed: no loudness gain and no limiter unless it asks
    (a loudness target beside ``peak_dbfs`` is refused: the two would fight over the level)."""
    defaults = {"loudness": None if peak_normalised else -14.0, "loudness_keep": 0.0,
                "loudness_reference": None, "true_peak": None if peak_normalised else -1.0}
    levels = {}
    for key, default in defaults.items():
        value = node.get(key, default)
        low, high, unit = LEVEL_RANGES[key]
        nullable = key != "loudness_keep"
        if value is None and nullable:
            levels[key] = None
        elif not _is_number(value) or not low <= value <= high:
            problems.append((("output", key), f"{key} must be a number from {low:g} to {high:g}{' ' + unit if unit else ''}"
                             f"{' or null' if nullable else ''}, got {value!r}"))
            levels[key] = default
        else:
            levels[key] = float(value)
    if peak_normalised and levels["loudness"] is not None:
        problems.append((("output", "loudness"), "give loudness or peak_dbfs, not both: peak normalisation and a "
                         "loudness target would fight over the level (set peak_dbfs: null)"))
        levels["loudness"] = None
    return levels


def _watermark(node: dict, problems: Problems) -> tuple[ComponentSpec | None, bool]:
    """``output.watermark``: a component (name or mapping), or ``none``/``false`` for no mark;
    absent: the built-in. Returns ``(component or None, whether the spec named it)``."""
    if "watermark" not in node:
        return ComponentSpec(DEFAULT_WATERMARK), False
    value = node["watermark"]
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in NO_WATERMARK):
        return None, True
    return _component(value, ("output", "watermark"), problems, ("name", "params")), True


def parse_spec(tree: Any, source: Path | None = None) -> tuple[PipelineSpec | None, Problems]:
    """Turn loaded YAML into a :class:`PipelineSpec`; shape problems come back, not raised.

    The spec is returned (with defaults in place of bad optional values) whenever its
    components and stages could be read, so the caller can go on to find more problems.
    """
    draft, problems = parse_draft(tree, source)
    return (draft.complete() if draft is not None else None), problems


def parse_draft(tree: Any, source: Path | None = None) -> tuple[SpecDraft | None, Problems]:
    """What could be read of loaded YAML, and every shape problem: validation checks the parts
    that were read even when others were not (None only when the YAML is not a mapping)."""
    problems: Problems = []
    if not isinstance(tree, dict):
        return None, [((), "a pipeline spec must be a mapping with at least 'tokenizer' and 'stages'")]
    _unknown_keys(tree, TOP_KEYS, (), problems)
    slots = {}
    for slot in ("conditioner", "semantic_tokenizer", "tokenizer"):
        if tree.get(slot) is not None:
            slots[slot] = _component(tree[slot], (slot,), problems)
        elif slot == "tokenizer":
            problems.append(((), "missing 'tokenizer' (the acoustic codec that turns tokens into audio)"))
    stages_node = tree.get("stages")
    stages = []
    if not isinstance(stages_node, list) or not stages_node:
        problems.append((("stages",) if "stages" in tree else (), "'stages' must be a non-empty list of stages"))
    else:
        stages = [_stage(node, i, problems) for i, node in enumerate(stages_node)]
        names = [s.name for s in stages if s and s.name]
        for i, stage in enumerate(stages):
            if stage and stage.name and names.count(stage.name) > 1:
                problems.append((("stages", i, "name"), f"duplicate stage name {stage.name!r}; give each stage a unique name"))
    output = _output(tree.get("output"), problems)
    for key in ("name", "description"):
        if key in tree and not isinstance(tree[key], str):
            problems.append(((key,), f"{key} must be a string"))
    draft = SpecDraft(stages=tuple(stages), tokenizer=slots.get("tokenizer"), conditioner=slots.get("conditioner"),
                      semantic_tokenizer=slots.get("semantic_tokenizer"), output=output,
                      name=str(tree.get("name", "")), description=str(tree.get("description", "")), source=source)
    return draft, problems


def spec_to_dict(spec: PipelineSpec) -> dict[str, Any]:
    """The spec as plain data (for sidecars and exported pipelines)."""

    def comp(c: ComponentSpec | None) -> dict[str, Any] | None:
        if c is None:
            return None
        out: dict[str, Any] = {"name": c.name, "params": dict(c.params)}
        if c.weights is not None:
            out["weights"] = c.weights
        return out

    data: dict[str, Any] = {"name": spec.name, "description": spec.description}
    for slot in ("conditioner", "semantic_tokenizer", "tokenizer"):
        if getattr(spec, slot) is not None:
            data[slot] = comp(getattr(spec, slot))
    data["stages"] = [
        {"name": s.name, "role": s.role, "model": s.model.name, "params": dict(s.model.params),
         **({"weights": s.model.weights} if s.model.weights is not None else {}),
         "reads": [str(r) for r in s.reads], "writes": str(s.writes),
         **({"conditioning": s.conditioning} if s.conditioning else {}),
         "sampler": {"name": s.sampler.name, "params": dict(s.sampler.params)}, "guidance_scale": s.guidance_scale}
        for s in spec.stages
    ]
    out = spec.output
    data["output"] = {"seconds": spec.output.seconds, "peak_dbfs": spec.output.peak_dbfs,
                      **({"loudness": out.loudness} if out.peak_dbfs is None else {}),
                      **({"loudness_keep": out.loudness_keep} if out.loudness_keep else {}),
                      **({"loudness_reference": out.loudness_reference} if out.loudness_reference is not None else {}),
                      **({"true_peak": out.true_peak} if out.true_peak != (None if out.peak_dbfs is not None else -1.0)
                         else {}),
                      **({"hold": spec.output.hold} if spec.output.hold else {}),
                      **({"window": spec.output.window} if spec.output.window is not None else {}),
                      **({"overlap": spec.output.overlap} if spec.output.overlap is not None else {}),
                      **({"beat": spec.output.beat} if spec.output.beat else {}),
                      **({} if spec.output.watermark_default else
                         {"watermark": None if spec.output.watermark is None else comp(spec.output.watermark)})}
    return data
