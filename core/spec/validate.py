"""Check a spec against the installed components, and the components against each other.

Everything here runs before any model is built or weight file loaded: plugin names exist,
params fit each component's config class, weights paths exist, and the cascade fits
together (streams read after they are written, every codebook written once, vocabularies,
frame rates and conditioning kinds agree). The result is a :class:`ResolvedPipeline` that
the cascade builds from, or a :class:`SpecError` listing every problem as ``FILE:LINE: msg``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import attrs

from cadenza.core.components import ComponentEntry
from cadenza.core.errors import CadenzaError, SpecError
from cadenza.core.files.user_text import describe_os_error
from cadenza.core.layout import StageLayout, StreamRef, StreamSlice
from cadenza.core.spec.params import ParamsError, structure_config
from cadenza.core.spec.schema import ComponentSpec, KeyPath, PipelineSpec, Problems, StageSpec, parse_spec
from cadenza.core.types import ConditioningInfo, SemanticInfo, TokenizerInfo
from cadenza.core.engine.weights import Weights, parse_weights
from cadenza.core.spec.yaml_source import line_of, load_yaml_file


@attrs.frozen
class ResolvedComponent:
    """A component ready to build: its registry entry, checked config, weights and info."""

    slot: str
    entry: ComponentEntry
    config: Any
    weights: Weights | None = None
    info: Any = None

    def provenance(self) -> dict[str, str]:
        """Which plugin and distribution provide it (recorded in generation sidecars)."""
        out = {"slot": self.slot, "name": self.entry.name, "kind": self.entry.kind,
               "plugin": self.entry.plugin, "distribution": self.entry.distribution,
               "version": self.entry.version}
        if self.weights is not None:
            out["weights"] = self.weights.source
        return out


@attrs.frozen
class ResolvedStage:
    spec: StageSpec
    model: ResolvedComponent
    sampler: ResolvedComponent
    layout: StageLayout


@attrs.frozen
class ResolvedPipeline:
    spec: PipelineSpec
    tokenizer: ResolvedComponent
    stages: tuple[ResolvedStage, ...]
    conditioner: ResolvedComponent | None = None
    semantic_tokenizer: ResolvedComponent | None = None
    watermark: ResolvedComponent | None = None  # what marks every output (output.watermark); None: nothing

    def components(self) -> list[ResolvedComponent]:
        out = [c for c in (self.conditioner, self.semantic_tokenizer, self.tokenizer) if c is not None]
        for stage in self.stages:
            out += [stage.model, stage.sampler]
        return out + ([self.watermark] if self.watermark is not None else [])


# What a component may describe itself as; past these, tensors sized from the info cannot be built.
INFO_LIMITS = {"sample_rate": (1, 768_000), "num_codebooks": (1, 1024), "codebook_size": (2, 1 << 20),
               "vocab_size": (0, 1 << 20), "channels": (1, 64), "dim": (0, 1 << 16), "length": (0, 1 << 16)}


def info_problems(info: Any) -> list[str]:
    """Sizes and rates in a component's info that no model could be built or run with."""
    problems = []
    fields = attrs.asdict(info) if attrs.has(type(info)) else {}
    for name, (low, high) in INFO_LIMITS.items():
        value = fields.get(name)
        if isinstance(value, int) and not low <= value <= high:
            problems.append(f"{name} {value:,} is outside {low:,}..{high:,}")
    rate, sample_rate = fields.get("frame_rate"), fields.get("sample_rate")
    if rate is not None and not (isinstance(rate, (int, float)) and math.isfinite(rate) and 0 < rate
                                 and (not isinstance(sample_rate, int) or rate <= sample_rate)):
        problems.append(f"frame_rate {rate!r} must be a positive number of frames per second, at most the sample rate")
    return problems


def resolve_source(source: str | Path, registry: Any) -> Path:
    """A spec argument -> a file: an existing path, or the name of a registered preset."""
    path = Path(source)
    if path.exists():
        return path
    presets = registry.pipelines
    if str(source) in presets:
        return presets[str(source)].path
    names = ", ".join(presets) or "none"
    raise SpecError([f"{source}: no such spec file or pipeline preset (presets: {names})"])


def load_pipeline(source: str | Path, registry: Any) -> ResolvedPipeline:
    """Load, parse and check a spec file or preset; raise SpecError with every problem."""
    path = resolve_source(source, registry)
    tree = load_yaml_file(path)
    return check_tree(tree, registry, path)


def check_tree(tree: Any, registry: Any, path: Path | None = None) -> ResolvedPipeline:
    """Parse and check an already-loaded YAML tree (a plain dict works too; lines are then 1)."""
    filename = str(path) if path else "<spec>"
    spec, problems = parse_spec(tree, path)
    resolved = None
    if spec is not None:
        resolved, more = _Checker(spec, registry).run()
        problems = problems + more
    if problems or resolved is None:
        raise SpecError(_located(problems, tree, filename))
    return resolved


def _located(problems: Problems, tree: Any, filename: str) -> list[str]:
    seen, out = set(), []
    for path, message in problems:
        line = f"{filename}:{line_of(tree, path)}: {message}"
        if line not in seen:
            seen.add(line)
            out.append(line)
    return out


class _Checker:
    """One pass over a parsed spec, collecting problems instead of stopping at the first."""

    def __init__(self, spec: PipelineSpec, registry: Any):
        self.spec = spec
        self.registry = registry
        self.problems: Problems = []

    def run(self) -> tuple[ResolvedPipeline | None, Problems]:
        spec = self.spec
        tok = self._component("tokenizer", spec.tokenizer, ("tokenizer",), TokenizerInfo)
        cond = sem = None
        if spec.conditioner:
            cond = self._component("conditioner", spec.conditioner, ("conditioner",), ConditioningInfo)
        if spec.semantic_tokenizer:
            sem = self._component("semantic_tokenizer", spec.semantic_tokenizer, ("semantic_tokenizer",), SemanticInfo)
        stages = self._stages(tok, cond, sem)
        if not self.problems and tok is not None and None not in stages:
            self._durations(stages)
        watermark = self._watermark()
        if self.problems or tok is None or None in stages:
            return None, self.problems
        return ResolvedPipeline(spec, tok, tuple(stages), cond, sem, watermark), []

    def _watermark(self) -> ResolvedComponent | None:
        """``output.watermark`` resolved; the built-in default is skipped where it is not installed."""
        ref, path = self.spec.output.watermark, ("output", "watermark")
        if ref is None or (self.spec.output.watermark_default and ref.name not in self.registry.names("watermark")):
            return None
        entry = self._entry("watermark", ref.name, path)
        config = self._config(entry, ref.params, path) if entry is not None else None
        return ResolvedComponent("watermark", entry, config) if config is not None else None

    def _durations(self, stages: list[ResolvedStage]) -> None:
        """``output.seconds`` makes at least one frame of the slowest stream, and so does each window."""
        output = self.spec.output
        frame = 1 / min(stage.layout.writes.frame_rate for stage in stages)
        if output.seconds < frame:
            self.problem(("output", "seconds"), f"seconds ({output.seconds:g}) is shorter than one frame of this "
                                                f"pipeline ({frame:g} s)")
        if output.window is not None and output.window - (output.window / 2 if output.overlap is None else output.overlap) < frame:
            self.problem(("output", "window"), f"each window must add at least one frame ({frame:g} s): window "
                                               f"{output.window:g} s minus its overlap is less")

    def problem(self, path: KeyPath, message: str) -> None:
        self.problems.append((path, message))

    def _entry(self, kind: str, name: str, path: KeyPath) -> ComponentEntry | None:
        try:
            return self.registry.get(kind, name)
        except CadenzaError as exc:
            self.problem(path, str(exc))
            return None

    def _config(self, entry: ComponentEntry, params: dict, path: KeyPath) -> Any:
        try:
            return structure_config(entry.config, params)
        except ParamsError as exc:
            for key, message in exc.problems:
                self.problem(path + ("params",) + key, f"{entry.kind.replace('_', ' ')} {entry.name!r}: {message}")
            return None

    def _weights(self, entry: ComponentEntry, ref: ComponentSpec, path: KeyPath) -> Weights | None:
        value = ref.weights if ref.weights is not None else entry.default_weights
        try:
            weights = parse_weights(value, self.spec.base_dir)
        except CadenzaError as exc:
            self.problem(path + ("weights",), str(exc))
            return None
        try:
            missing = weights.kind == "path" and not weights.path.exists()
        except OSError as exc:  # a name longer than the OS allows
            self.problem(path + ("weights",), f"{entry.name!r}: weights path: {describe_os_error(exc)}")
            return None
        if missing:
            self.problem(path + ("weights",), f"{entry.name!r}: weights path {str(weights.path)!r} does not exist")
            return None
        return weights

    def _component(self, kind: str, ref: ComponentSpec, path: KeyPath, info_type: type) -> ResolvedComponent | None:
        entry = self._entry(kind, ref.name, path + ("name",))
        if entry is None:
            return None
        config = self._config(entry, ref.params, path)
        weights = self._weights(entry, ref, path)
        if config is None or weights is None:
            return None
        try:
            info = config.describe(weights)
        except CadenzaError as exc:
            self.problem(path + ("weights",), f"{entry.name!r}: {exc}")
            return None
        if not isinstance(info, info_type):
            self.problem(path + ("name",), f"{kind} {entry.name!r} describes itself as {type(info).__name__}, "
                                           f"expected {info_type.__name__} (a bug in plugin {entry.plugin!r})")
            return None
        for problem in info_problems(info):
            self.problem(path + ("params",), f"{entry.name!r}: {problem}")
        return ResolvedComponent(path[0], entry, config, weights, info)

    # -- stages --------------------------------------------------------------------------
    def _slice(self, ref: StreamRef, path: KeyPath, tok: ResolvedComponent | None, sem: ResolvedComponent | None) -> StreamSlice | None:
        if ref.stream == "semantic":
            if sem is None:
                if not self.spec.semantic_tokenizer:
                    self.problem(path, "stream 'semantic' needs a 'semantic_tokenizer' in the spec")
                return None
            if ref.start != 0 or ref.stop not in (None, 1):
                self.problem(path, "the semantic stream has one codebook; write it as 'semantic'")
                return None
            return StreamSlice("semantic", 0, 1, sem.info.vocab_size, sem.info.frame_rate)
        if tok is None:
            return None
        total = tok.info.num_codebooks
        stop = total if ref.stop is None else ref.stop
        if stop > total:
            self.problem(path, f"{ref} asks for codebooks up to {stop}, but tokenizer {tok.entry.name!r} "
                               f"has {total} (acoustic[0:{total}] at most)")
            return None
        return StreamSlice("acoustic", ref.start, stop, tok.info.codebook_size, tok.info.frame_rate)

    def _stages(self, tok, cond, sem) -> list[ResolvedStage | None]:
        written: dict[str, set[int]] = {"semantic": set(), "acoustic": set()}
        out: list[ResolvedStage | None] = []
        for i, stage in enumerate(self.spec.stages):
            path: KeyPath = ("stages", i)
            reads = [self._slice(r, path + ("reads", j), tok, sem) for j, r in enumerate(stage.reads)]
            writes = self._slice(stage.writes, path + ("writes",), tok, sem)
            for j, read in enumerate(reads):
                if read is not None and not set(range(read.start, read.stop)) <= written[read.stream]:
                    self.problem(path + ("reads", j), f"stage {stage.name!r} reads {read}, which no earlier stage writes")
            if writes is not None:
                self._check_writes(stage, writes, reads, written, path)
                written[writes.stream] |= set(range(writes.start, writes.stop))
            mode = self._mode(stage, cond, path)
            model = self._component_stage(stage, path)
            sampler = self._sampler(stage, path)
            if None in reads or writes is None or mode is None or model is None or sampler is None:
                out.append(None)
                continue
            layout = StageLayout(stage.role, tuple(reads), writes,
                                 cond.info if (cond and mode != "none") else None, mode)
            check = getattr(model.config, "check", None)
            for message in (check(layout, model.weights) if check else []):
                self.problem(path + ("model",), f"stage {stage.name!r}: {message}")
            out.append(ResolvedStage(stage, model, sampler, layout))
        if tok is not None and self.spec.stages:
            missing = sorted(set(range(tok.info.num_codebooks)) - written["acoustic"])
            if missing:
                self.problem(("stages",), f"codebooks {_ranges(missing)} of tokenizer {tok.entry.name!r} are written by "
                                          f"no stage (it has {tok.info.num_codebooks}); extend a stage's 'writes'")
        return out

    def _check_writes(self, stage: StageSpec, writes: StreamSlice, reads: list, written: dict, path: KeyPath) -> None:
        overlap = set(range(writes.start, writes.stop)) & written[writes.stream]
        if overlap:
            self.problem(path + ("writes",), f"stage {stage.name!r} writes {writes}, already written by an earlier stage")
        role = stage.role
        if (role == "semantic") != (writes.stream == "semantic"):
            self.problem(path + ("writes",), f"a {role!r} stage writes the "
                                             f"{'semantic' if role == 'semantic' else 'acoustic'} stream, not {writes}")
        elif role == "coarse" and writes.start != 0:
            self.problem(path + ("writes",), f"a coarse stage writes the first codebooks (acoustic[0:N]), not {writes}")
        elif role == "fine" and not any(r is not None and r.stream == "acoustic" for r in reads):
            self.problem(path + ("reads",), "a fine stage reads the coarse codebooks, e.g. reads: ['acoustic[0:2]']")

    def _mode(self, stage: StageSpec, cond: ResolvedComponent | None, path: KeyPath) -> str | None:
        mode = stage.conditioning
        if mode is None:
            if not self.spec.conditioner:
                mode = "none"
            elif cond is None:
                return None
            else:
                mode = "cross" if cond.info.kind == "sequence" else "prefix"
        if mode != "none" and not self.spec.conditioner:
            self.problem(path + ("conditioning",), f"stage {stage.name!r} has conditioning {mode!r} but the spec has no 'conditioner'")
            return None
        if stage.guidance_scale != 1.0 and mode == "none":
            self.problem(path + ("guidance_scale",), f"stage {stage.name!r}: guidance needs conditioning "
                                                     "(set guidance_scale: 1 or give the stage conditioning)")
        return mode

    def _component_stage(self, stage: StageSpec, path: KeyPath) -> ResolvedComponent | None:
        entry = self._entry("stage_model", stage.model.name, path + ("model",))
        if entry is None:
            return None
        config = self._config(entry, stage.model.params, path)
        weights = self._weights(entry, stage.model, path)
        if config is None or weights is None:
            return None
        return ResolvedComponent(f"stages.{stage.name}.model", entry, config, weights)

    def _sampler(self, stage: StageSpec, path: KeyPath) -> ResolvedComponent | None:
        spath = path + ("sampler",)
        entry = self._entry("sampler", stage.sampler.name, spath + ("name",))
        if entry is None:
            return None
        config = self._config(entry, stage.sampler.params, spath)
        return None if config is None else ResolvedComponent(f"stages.{stage.name}.sampler", entry, config)


def _ranges(indices: list[int]) -> str:
    """[2, 3, 5] -> '2-3, 5'."""
    parts, start = [], None
    for i, n in enumerate(indices):
        if start is None:
            start = n
        if i + 1 == len(indices) or indices[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ", ".join(parts)
