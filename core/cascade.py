"""The cascade runner: conditioning -> stages in order -> codec decode -> audio.

``Cascade.from_spec`` checks the whole spec before building anything, then builds each
component through its plugin. ``generate`` runs the stages as the spec orders them, each
reading the streams earlier stages wrote, and decodes the acoustic codebooks to audio.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from cadenza.core.components import BuildContext, StageRequest
from cadenza.core.errors import InputError
from cadenza.core.prompts import check_prompts
from cadenza.core.validate import ResolvedComponent, ResolvedPipeline, check_tree, load_pipeline

ProgressFactory = Callable[[str, int], Any]  # (stage name, total tokens) -> object with update(n), close()


@attrs.frozen
class Generation:
    """The result of one ``generate`` call: audio ``[B, C, S]`` plus everything that made it."""

    audio: Any
    sample_rate: int
    prompts: tuple[str, ...]
    seed: int
    seconds: float
    tokens: dict[str, Any]  # "semantic": [B, 1, T]; "acoustic": [B, Q, T]
    stage_seconds: dict[str, float]


def check_seconds(seconds: float) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
        raise InputError(f"duration must be a positive number of seconds, got {seconds!r}")
    return float(seconds)


class Cascade:
    """A built pipeline. Components are built once, on construction, from a checked spec."""

    def __init__(self, pipeline: ResolvedPipeline, registry: Any, device: str = "cpu"):
        self.pipeline = pipeline
        self.registry = registry
        self.device = device
        self.tokenizer = self._build(pipeline.tokenizer)
        self.conditioner = self._build(pipeline.conditioner) if pipeline.conditioner else None
        self._semantic_tokenizer = None
        self.models = {s.spec.name: self._build(s.model, layout=s.layout) for s in pipeline.stages}
        self.samplers = {s.spec.name: self._build(s.sampler) for s in pipeline.stages}

    @classmethod
    def from_spec(cls, source: str | Path | dict, registry: Any = None, device: str = "cpu") -> "Cascade":
        """Build from a spec file, a preset name, or an already-loaded spec mapping."""
        if registry is None:
            from cadenza.registry import get_registry

            registry = get_registry()
        pipeline = check_tree(source, registry) if isinstance(source, dict) else load_pipeline(source, registry)
        return cls(pipeline, registry, device)

    def _build(self, component: ResolvedComponent, layout: Any = None) -> Any:
        context = BuildContext(weights=component.weights or BuildContext().weights, device=self.device, layout=layout)
        return component.entry.build(component.config, context)

    @property
    def semantic_tokenizer(self) -> Any:
        """Built on first use: generation from text alone never runs it."""
        if self._semantic_tokenizer is None and self.pipeline.semantic_tokenizer:
            self._semantic_tokenizer = self._build(self.pipeline.semantic_tokenizer)
        return self._semantic_tokenizer

    @property
    def sample_rate(self) -> int:
        return self.pipeline.tokenizer.info.sample_rate

    def random_components(self) -> list[str]:
        """Slots whose weights are random (untrained): their output is not music."""
        return [c.slot for c in self.pipeline.components() if c.weights is not None and c.weights.is_random]

    def generate(self, prompts: str | Sequence[str], seconds: float | None = None, seed: int = 0,
                 progress: ProgressFactory | None = None) -> Generation:
        """Generate one clip per prompt. Same seed, same spec, same device -> same tokens."""
        import torch

        from cadenza.core.decode import decode_stage

        prompts = tuple(check_prompts([prompts] if isinstance(prompts, str) else prompts))
        seconds = check_seconds(self.pipeline.spec.output.seconds if seconds is None else seconds)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {seed!r}")
        batch = len(prompts)
        with torch.inference_mode():
            conditioning = self.conditioner.embed_text(list(prompts)) if self.conditioner else None
            streams: dict[str, torch.Tensor] = {}
            timings: dict[str, float] = {}
            for index, stage in enumerate(self.pipeline.stages):
                name, layout = stage.spec.name, stage.layout
                reads = tuple(streams[r.stream][:, r.start:r.stop] for r in layout.reads)
                request = StageRequest(batch, reads, conditioning if layout.conditioning_mode != "none" else None)
                frames = layout.writes.num_frames(seconds)
                generator = torch.Generator(device=self.device).manual_seed((seed * 7919 + index) % (2**63))
                bar = progress(name, frames * layout.writes.num_codebooks) if progress else None
                self.registry.hook.before_stage(stage=stage.spec, request=request)
                start = time.perf_counter()
                try:
                    tokens = decode_stage(self.models[name], request, frames, self.samplers[name],
                                          guidance_scale=stage.spec.guidance_scale, generator=generator,
                                          progress=bar.update if bar else None)
                except BaseException as exc:
                    self.registry.hook.on_stage_error(stage=stage.spec, error=exc)
                    raise
                finally:
                    if bar:
                        bar.close()
                timings[name] = time.perf_counter() - start
                self.registry.hook.after_stage(stage=stage.spec, tokens=tokens, seconds=timings[name])
                self._store(streams, layout.writes, tokens)
            start = time.perf_counter()
            audio = self.tokenizer.decode(streams["acoustic"])
            timings["decode"] = time.perf_counter() - start
        audio = self._finish(audio.float(), seconds)
        return Generation(audio, self.sample_rate, prompts, seed, seconds, dict(streams), timings)

    def _store(self, streams: dict, writes: Any, tokens: Any) -> None:
        """Put a stage's ``[B, Q, T]`` tokens at their codebook offset in their stream."""
        if writes.stream not in streams:
            width = 1 if writes.stream == "semantic" else self.pipeline.tokenizer.info.num_codebooks
            streams[writes.stream] = tokens.new_zeros(tokens.shape[0], width, tokens.shape[2])
        streams[writes.stream][:, writes.start:writes.stop] = tokens

    def _finish(self, audio: Any, seconds: float) -> Any:
        """Trim to the requested length, then peak-normalise (or clip) per clip."""
        import torch

        audio = audio[..., : round(seconds * self.sample_rate)].cpu()
        peak_dbfs = self.pipeline.spec.output.peak_dbfs
        if peak_dbfs is not None:
            peak = audio.abs().amax(dim=(1, 2), keepdim=True).clamp_min(1e-8)
            audio = audio / peak * (10 ** (peak_dbfs / 20))
        return torch.clamp(audio, -1.0, 1.0)
