"""One click of the demo page -> one clip on disk: the page's inputs checked, a cached Cascade run,
and the WAV, its JSON sidecar and its spectrogram written as ``cadenza generate --plot`` writes them.

Nothing here knows about Gradio, so it runs (and is tested) without a server. Every bad input is
a :class:`~cadenza.core.errors.CadenzaError` with one line the page shows as it is.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import attrs

from cadenza.core.cli.generation_io import melody_problem
from cadenza.core.engine.outputs import build_sidecar, sidecar_path, write_outputs
from cadenza.core.engine.cascade import Cascade
from cadenza.core.engine.progress import Progress
from cadenza.core.engine.limits import check_seconds, check_seed
from cadenza.core.errors import CadenzaError, InputError
from cadenza.core.prompts import check_prompts
from cadenza.core.steering.melody import read_melody
from cadenza.plugins.workflows.demo.config import DemoConfig
from cadenza.registry import get_registry


@attrs.frozen
class Clip:
    """The files of one generated clip and the line the page shows under it."""

    audio: Path
    plot: Path
    sidecar: Path
    seconds: float
    sample_rate: int
    summary: str


def pipeline_choices(registry: Any, selected: str) -> tuple[str, ...]:
    """The installed presets (what ``cadenza pipelines`` lists), with ``selected`` added when it is a
    spec file rather than one of them."""
    presets = tuple(registry.pipelines)
    return presets if selected in presets else (selected, *presets)


def melody_suffixes(registry: Any) -> tuple[str, ...]:
    """File suffixes some installed melody source reads (``.mid``, ``.wav``, ...), for the upload box."""
    return tuple(sorted({s.lower() for entry in registry.entries("melody_source")
                         for s in getattr(entry.config, "suffixes", ())}))


def as_seed(value: Any) -> int:
    """A seed from the page: its number box may hand over ``3.0`` for 3; anything else is checked as is."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return check_seed(value, "seed")


class ClipMaker:
    """Makes clips for the page, keeping one built :class:`Cascade` per pipeline (building one takes
    seconds; a click should not). Calls are expected one at a time (the page queues them), as one
    machine runs one generation at a time anyway."""

    def __init__(self, config: DemoConfig, registry: Any = None):
        check_seconds(config.max_seconds, "--max-seconds")
        if config.pipeline not in config.pipelines:
            raise InputError(f"pipeline {config.pipeline!r} is not among the choices {list(config.pipelines)}")
        self.config = config
        self.registry = registry or get_registry()
        self._cascades: dict[str, Cascade] = {}
        self._numbers = itertools.count(1)

    def cascade(self, pipeline: str) -> Cascade:
        """The built cascade of ``pipeline`` (built on first use, then kept)."""
        if pipeline not in self._cascades:
            self._cascades[pipeline] = Cascade.from_spec(pipeline, self.registry, device=self.config.device)
        return self._cascades[pipeline]

    def default_seconds(self) -> float:
        """Seconds the page starts with: the selected pipeline's own, within the server's limit."""
        return min(self.cascade(self.config.pipeline).pipeline.spec.output.seconds, self.config.max_seconds)

    def make(self, prompt: Any, pipeline: Any, seconds: Any, seed: Any, melody: str | Path | None = None,
             progress: Progress | None = None) -> Clip:
        """Generate ``prompt`` with ``pipeline`` (one of the choices) for ``seconds`` (None: the
        pipeline's own), following the ``melody`` file if one is given; write the clip into
        ``out_dir``. The audio carries the pipeline's watermark, as ``cadenza generate``'s does."""
        try:
            check_prompts([prompt])
        except InputError as exc:  # its lines number the prompts of a batch; the page has one
            raise InputError(str(exc).replace("prompt 1 ", "the prompt ", 1)) from None
        if pipeline not in self.config.pipelines:
            raise InputError(f"pipeline {pipeline!r} is not offered here; choose one of {', '.join(self.config.pipelines)}")
        seed = as_seed(seed)
        if seconds is not None:  # checked before a pipeline is built for it
            seconds = self._check_seconds(seconds)
        cascade = self.cascade(pipeline)
        if seconds is None:
            seconds = self._check_seconds(cascade.pipeline.spec.output.seconds)
        notes = self._read_melody(melody, cascade, seconds) if melody is not None else None
        generation = cascade.generate([prompt], seconds=seconds, seed=seed, progress=progress,
                                      steering=cascade.steering(melody=notes))
        output = self.config.out_dir / f"clip-{next(self._numbers):04d}.wav"
        write_outputs(output, generation.audio[0].numpy(), generation.sample_rate,
                      build_sidecar(generation, output, pipeline=pipeline), plot_title=prompt)
        length = generation.audio.shape[-1] / generation.sample_rate
        return Clip(audio=output, plot=output.with_suffix(".png"), sidecar=sidecar_path(output), seconds=length,
                    sample_rate=generation.sample_rate,
                    summary=summary(pipeline, seed, length, generation, cascade.random_components(), notes))

    def _check_seconds(self, seconds: Any) -> float:
        seconds = check_seconds(seconds, "seconds")
        if seconds > self.config.max_seconds:
            raise InputError(f"seconds must be at most {self.config.max_seconds:g} on this page "
                             f"(cadenza demo --max-seconds), got {seconds:g}")
        return seconds

    def _read_melody(self, path: str | Path, cascade: Cascade, seconds: float) -> Any:
        """The uploaded melody's notes; errors name the file as uploaded, not the server's copy."""
        name = Path(path).name
        problem = melody_problem(cascade.pipeline)
        if problem:
            raise InputError(f"melody {name}: {problem}")
        try:
            return read_melody(path, None, self.registry, max_seconds=seconds)
        except CadenzaError as exc:
            raise InputError(f"melody: {str(exc).replace(str(path), name)}") from None


def summary(pipeline: str, seed: int, seconds: float, generation: Any, random_slots: list[str], melody: Any) -> str:
    """The line under the player: what was made, how it is marked, what to expect of it."""
    parts = [f"{seconds:g} s at {generation.sample_rate} Hz, pipeline {pipeline}, seed {seed}"]
    if generation.watermark:
        parts.append(f"watermarked ({generation.watermark['name']}; `cadenza detect` finds it)")
    if melody is not None:
        parts.append(f"followed the melody of {Path(melody.file).name} ({len(melody.notes)} notes, {melody.seconds:g} s)")
    if random_slots:
        parts.append(f"random, untrained weights in {', '.join(random_slots)}: expect noise, not music")
    return "; ".join(parts)
