"""Check a spec against the installed components, and the components against each other.

Everything here runs before any model is built or weight file loaded: plugin names exist,
params fit each component's config class, weights paths exist, and the cascade fits
together (streams read after they are written, every codebook written once, vocabularies,
frame rates and conditioning kinds agree; the graph of streams between the stages is
:mod:`cadenza.core.spec.stage_graph`). The result is a :class:`ResolvedPipeline` that
the cascade builds from, or a :class:`SpecError` listing every problem as ``FILE:LINE: msg``,
in file order: a problem in one part skips only the checks that need that part (see
:class:`_Checker`), so a user fixes the whole list after one run instead of one layer per run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import attrs

from cadenza.core.components import ComponentEntry
from cadenza.core.errors import CadenzaError, SpecError
from cadenza.core.files.user_text import describe_os_error
from cadenza.core.layout import StageLayout
from cadenza.core.spec.params import ParamsError, structure_config
from cadenza.core.spec.schema import (ComponentSpec, KeyPath, PipelineSpec, Problems, SpecDraft, StageDraft,
                                      StageSpec, parse_draft)
from cadenza.core.spec.stage_graph import MOST_CODEBOOKS, StageGraph
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

    def random_components(self) -> list[str]:
        """Slots whose weights are random (untrained): their output is not music.

        The one rule every report of untrained weights uses (generate's note, sidecars, bench,
        evaluate). A component registered with ``needs_weights=False`` (signal processing,
        nothing learned or fitted) is left out: random is all it ever is, and it works as designed.
        """
        return [c.slot for c in self.components()
                if c.weights is not None and c.weights.is_random and c.entry.needs_weights]


# What a component may describe itself as; past these, tensors sized from the info cannot be built.
INFO_LIMITS = {"sample_rate": (1, 768_000), "num_codebooks": (1, MOST_CODEBOOKS), "codebook_size": (2, 1 << 20),
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
    draft, problems = parse_draft(tree, path)
    resolved = None
    if draft is not None:
        resolved, more = _Checker(draft, registry, problems).run()
        problems = problems + more
    if problems or resolved is None:
        raise SpecError(_located(problems, tree, filename))
    return resolved


def _located(problems: Problems, tree: Any, filename: str) -> list[str]:
    """``FILE:LINE: message`` lines in file order (problems on one line in the order found), each once."""
    seen, located = set(), []
    for path, message in problems:
        line = line_of(tree, path)
        if (line, message) not in seen:
            seen.add((line, message))
            located.append((line, message))
    return [f"{filename}:{line}: {message}" for line, message in sorted(located, key=lambda pair: pair[0])]


class _Checker:
    """One pass over what could be read of a spec, collecting problems instead of stopping at the first.

    Every check runs when what it needs is known. A part that could not be read or resolved (a
    shape problem, an unknown name, bad params, a codebook range past the tokenizer) is None or
    already has a problem at its path, and only the checks that need that part are skipped: a
    stage's layout needs its tokenizer, the graph of streams does not. So one mistake is reported
    once, and hides nothing else.
    """

    def __init__(self, spec: SpecDraft, registry: Any, earlier: Problems = ()):
        self.spec = spec
        self.registry = registry
        self.problems: Problems = []
        self.broken: set[KeyPath] = set()  # every path with a problem at or inside it (earlier ones too)
        for path, _ in earlier:  # the shape problems parse_draft found
            self._mark(path)

    def run(self) -> tuple[ResolvedPipeline | None, Problems]:
        tok = self._slot("tokenizer", TokenizerInfo)
        cond = self._slot("conditioner", ConditioningInfo)
        sem = self._slot("semantic_tokenizer", SemanticInfo)
        stages = self._stages(tok, cond, sem)
        watermark = self._watermark()
        spec = self.spec.complete()
        if self.problems or spec is None or tok is None or None in stages:
            return None, self.problems
        return ResolvedPipeline(spec, tok, tuple(stages), cond, sem, watermark), []

    def problem(self, path: KeyPath, message: str) -> None:
        self.problems.append((path, message))
        self._mark(path)

    def _mark(self, path: KeyPath) -> None:
        self.broken.update(tuple(path[:n]) for n in range(len(path) + 1))

    def reported(self, path: KeyPath) -> bool:
        """Whether a problem was found at ``path`` or inside it: what depends on it is not checked."""
        return tuple(path) in self.broken

    def given(self, slot: str) -> bool:
        """Whether the spec names ``slot``, read or not (a slot that could not be read has a problem)."""
        return getattr(self.spec, slot) is not None or self.reported((slot,))

    def _slot(self, slot: str, info_type: type) -> ResolvedComponent | None:
        ref = getattr(self.spec, slot)
        return None if ref is None else self._component(slot, ref, (slot,), info_type)

    def _watermark(self) -> ResolvedComponent | None:
        """``output.watermark`` resolved; the built-in default is skipped where it is not installed."""
        ref, path = self.spec.output.watermark, ("output", "watermark")
        if ref is None or (self.spec.output.watermark_default and ref.name not in self.registry.names("watermark")):
            return None
        entry = self._entry("watermark", ref.name, path)
        config = self._config(entry, ref.params, path) if entry is not None else None
        return ResolvedComponent("watermark", entry, config) if config is not None else None

    def _durations(self, rates: list[float | None]) -> None:
        """``output.seconds`` makes at least one frame of the slowest stream, and so does each window
        (when the frame rate of every stage's stream is known, and the value checked is the spec's)."""
        if not rates or None in rates:
            return
        output = self.spec.output
        frame = 1 / min(rates)
        if output.seconds < frame and not self.reported(("output", "seconds")):
            self.problem(("output", "seconds"), f"seconds ({output.seconds:g}) is shorter than one frame of this "
                                                f"pipeline ({frame:g} s)")
        window = output.window
        if (window is not None and not self.reported(("output", "overlap"))
                and window - (window / 2 if output.overlap is None else output.overlap) < frame):
            self.problem(("output", "window"), f"each window must add at least one frame ({frame:g} s): window "
                                               f"{window:g} s minus its overlap is less")

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
        """The component with its info, or None (its problems recorded) when either is unusable."""
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
        unusable = info_problems(info)
        for problem in unusable:
            self.problem(path + ("params",), f"{entry.name!r}: {problem}")
        # sizes no model can be built with would only make every stage sized from them fail again
        return None if unusable else ResolvedComponent(path[0], entry, config, weights, info)

    # -- stages --------------------------------------------------------------------------
    def _stages(self, tok, cond, sem) -> list[ResolvedStage | None]:
        """Every stage's own checks, the graph of streams between them (:mod:`cadenza.core.spec.stage_graph`),
        and the output's duration."""
        graph = StageGraph(self, tok, sem)
        rates: list[float | None] = []  # frame rate of what each stage writes; None: not known
        out: list[ResolvedStage | None] = []
        for i, stage in enumerate(self.spec.stages):
            path: KeyPath = ("stages", i)
            if stage is None:  # not a mapping: what it writes is unknown
                graph.unreadable_stage()
                rates.append(None)
                out.append(None)
                continue
            label = f"stage {stage.name!r}" if stage.name else f"stage {i + 1}"
            reads, writes, reads_known = graph.add(stage, label, path)
            rates.append(graph.frame_rate(stage.writes))
            mode = self._mode(stage, label, cond, path)
            model = self._stage_model(stage, path)
            sampler = self._sampler(stage, path)
            slices = [graph.slice(r) for r in reads]
            write_slice = graph.slice(writes)
            if stage.role is None or not reads_known or None in slices or write_slice is None or mode is None:
                out.append(None)  # the layout needs every part; each missing one is already a problem
                continue
            layout = StageLayout(stage.role, tuple(slices), write_slice, cond.info if mode != "none" else None, mode)
            check = getattr(model.config, "check", None) if model is not None else None
            for message in (check(layout, model.weights) if check else []):
                self.problem(path + ("model",), f"{label}: {message}")
            spec = stage.complete()
            out.append(ResolvedStage(spec, model, sampler, layout) if None not in (spec, model, sampler) else None)
        graph.check_complete(bool(self.spec.stages))
        self._durations(rates)
        return out

    def _mode(self, stage: StageDraft, label: str, cond: ResolvedComponent | None, path: KeyPath) -> str | None:
        """The stage's conditioning mode; None when it cannot be known (or cannot work: a problem)."""
        if self.reported(path + ("conditioning",)):
            return None  # the spec's value was wrong: the checks of the mode it meant cannot run
        mode = stage.conditioning
        has_conditioner = self.given("conditioner")
        if mode is None:
            if not has_conditioner:
                mode = "none"
            elif cond is None:
                return None
            else:
                mode = "cross" if cond.info.kind == "sequence" else "prefix"
        if mode != "none" and not has_conditioner:
            self.problem(path + ("conditioning",), f"{label} has conditioning {mode!r} but the spec has no 'conditioner'")
            return None
        if stage.guidance_scale != 1.0 and mode == "none":
            self.problem(path + ("guidance_scale",), f"{label}: guidance needs conditioning "
                                                     "(set guidance_scale: 1 or give the stage conditioning)")
        return None if mode != "none" and cond is None else mode  # a conditioner with problems: no layout

    def _stage_model(self, stage: StageDraft, path: KeyPath) -> ResolvedComponent | None:
        if stage.model is None:
            return None
        entry = self._entry("stage_model", stage.model.name, path + ("model",))
        if entry is None:
            return None
        config = self._config(entry, stage.model.params, path)
        weights = self._weights(entry, stage.model, path)
        if config is None or weights is None:
            return None
        return ResolvedComponent(f"stages.{stage.name}.model", entry, config, weights)

    def _sampler(self, stage: StageDraft, path: KeyPath) -> ResolvedComponent | None:
        if stage.sampler is None:
            return None
        spath = path + ("sampler",)
        entry = self._entry("sampler", stage.sampler.name, spath + ("name",))
        if entry is None:
            return None
        config = self._config(entry, stage.sampler.params, spath)
        return None if config is None else ResolvedComponent(f"stages.{stage.name}.sampler", entry, config)
