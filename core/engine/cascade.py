"""The cascade runner: conditioning -> stages in order -> codec decode -> audio.

``Cascade.from_spec`` checks the whole spec before building anything, then builds each
component through its plugin. ``generate`` runs the stages as the spec orders them, each
reading the streams earlier stages wrote, and decodes the acoustic codebooks to audio.

The same loop continues audio: a prime's tokens (from the pipeline's own tokenizers) are the
already-written prefix of every stage. Long durations run it window by window, each window's
prefix being the previous window's tail (:mod:`cadenza.core.engine.longform`); one short clip is the
one-window case, with no prefix.

Steering (kind ``steering``, :class:`cadenza.core.components.Steering`) shapes a run while it is
decoded: each steering object plans the run, may write a stream's prefix (a forced melody), may
change a window's conditioning (piece memory) and wraps each stage's model (a logit bias, or a
melody's sound for a model that hears one). The cascade only calls them in order; the built-in
ones (melody, beat grid, piece memory) are plugins like any other, and ``Cascade.steering``
builds them from the options the command line has.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from cadenza.core.audio.loudness import LevelSettings, apply_output_stage
from cadenza.core.components import BuildContext, StageRequest, Steering, SteeringRun, SteeringWindow
from cadenza.core.errors import InputError
from cadenza.core.engine.longform import (DECODE_MARGIN, decode_chunked, default_window, frames_before, plan_windows,
                                   resolve_window, window_frames)
from cadenza.core.prompts import check_prompts
from cadenza.core.engine.watermarking import describe as describe_mark
from cadenza.core.engine.watermarking import mark_batch, pipeline_payload
from cadenza.core.engine.limits import check_seconds, check_seed, is_seed
from cadenza.core.engine.outputs import build_sidecar, check_output, write_outputs
from cadenza.core.engine.progress import Progress, planned_steps
from cadenza.core.spec.schema import spec_to_dict
from cadenza.core.spec.validate import ResolvedComponent, ResolvedPipeline, check_tree, load_pipeline
from cadenza.registry import get_registry
from cadenza.core.audio.io import prepare



@attrs.frozen
class Generation:
    """The result of one ``generate`` call: audio ``[B, C, S]`` plus everything that made it."""

    audio: Any
    sample_rate: int
    prompts: tuple[str, ...]
    seed: int | tuple[int, ...]  # one seed for the batch, or one per prompt
    seconds: float  # requested duration, prime included
    tokens: dict[str, Any]  # "semantic": [B, 1, T]; "acoustic": [B, Q, T] (prime included)
    stage_seconds: dict[str, float]
    prime_seconds: float = 0.0  # the prime's tokens cover this much of the start
    only_new: bool = False  # audio holds only what follows the prime
    windows: tuple[dict[str, float], ...] = ()  # long-form windows (start, new, end seconds); () for one pass
    window: float | None = None  # long-form window and overlap seconds; None for one pass
    overlap: float | None = None
    steering: tuple[dict[str, Any], ...] = ()  # per row: what the steering recorded ("melody", "beat", "hold"...)
    watermark: dict[str, Any] | None = None  # the mark in the audio (name, key_id, payload); None: unmarked
    levels: tuple[dict[str, Any], ...] = ()  # per row: the output stage's loudness, gain and limiter figures
    provenance: dict[str, Any] = attrs.field(factory=dict)  # pipeline, spec, components: what the sidecar records

    def save(self, path: str | Path, row: int = 0, plot: bool = False) -> Path:
        """Write clip ``row`` to ``path`` (.wav, .flac or .ogg) with its JSON sidecar beside it
        (same stem, .json), and with ``plot`` a spectrogram PNG too; all atomically. Returns the
        audio file's path. The sidecar is the one ``cadenza generate`` writes."""
        if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < len(self.prompts):
            raise InputError(f"row must be an index from 0 to {len(self.prompts) - 1}, got {row!r}")
        output = check_output(path)
        write_outputs(output, self.audio[row].numpy(), self.sample_rate, build_sidecar(self, output, row),
                      plot_title=self.prompts[row] if plot else None)
        return output

    @property
    def row_seeds(self) -> tuple[int, ...]:
        """The seed of each row: the batch's one seed repeated, or the per-row seeds."""
        return (self.seed,) * len(self.prompts) if isinstance(self.seed, int) else tuple(self.seed)


def check_seeds(seed: int | Sequence[int], batch: int) -> int | list[int]:
    """One seed (see :func:`check_seed`), or a list of ``batch`` of them (a generator per row)."""
    if isinstance(seed, int) and not isinstance(seed, bool):
        return check_seed(seed)
    if isinstance(seed, (str, bytes)) or not isinstance(seed, Sequence) or not all(is_seed(s) for s in seed):
        raise InputError(f"seed must be an integer from 0 to 2^63-1, or one per prompt, got {seed!r}")
    if len(seed) != batch:
        raise InputError(f"got {len(seed)} seeds for {batch} prompts")
    return list(seed)


def check_steering(steering: Sequence[Any]) -> list[Steering]:
    """A run's steering list: every entry a :class:`cadenza.core.components.Steering`."""
    if isinstance(steering, (str, bytes)) or not isinstance(steering, Sequence):
        raise InputError(f"steering must be a list of Steering objects, got {type(steering).__name__}")
    for index, each in enumerate(steering):
        if not isinstance(each, Steering):
            raise InputError(f"steering {index}: {type(each).__name__} is not a Steering (it needs plan, window, "
                             "wrap, finish and describe; see cadenza.core.components.Steering)")
    return list(steering)


def _stage_seed(seed: int, stage: int, window: int) -> int:
    """The generator seed of one stage in one window (window 0: the one-pass seed)."""
    return (seed * 7919 + stage + window * 1_000_003) % (2**63)


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
        self.watermark = self._build(pipeline.watermark) if pipeline.watermark is not None else None

    @classmethod
    def from_spec(cls, source: str | Path | dict, registry: Any = None, device: str = "cpu") -> "Cascade":
        """Build from a spec file, a preset name, or an already-loaded spec mapping."""
        if registry is None:
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

    def provenance(self) -> dict[str, Any]:
        """What a generation's sidecar says made it: the pipeline, its spec and its components."""
        spec = self.pipeline.spec
        return {"pipeline": spec.name, "spec_file": str(spec.source) if spec.source else None,
                "spec": spec_to_dict(spec), "components": [c.provenance() for c in self.pipeline.components()],
                "random_weights": self.random_components()}

    def random_components(self) -> list[str]:
        """Slots whose weights are random (untrained): their output is not music. Components
        that need no weights are left out (:meth:`cadenza.core.spec.validate.ResolvedPipeline.random_components`)."""
        return self.pipeline.random_components()

    @property
    def default_window(self) -> float:
        """Window when none is given: the spec's ``output.window``, else 10 s (or ``output.seconds`` if longer)."""
        output = self.pipeline.spec.output
        return default_window(output.seconds, output.window)

    def generate(self, prompts: str | Sequence[str], seconds: float | None = None, seed: int | Sequence[int] = 0,
                 progress: Progress | None = None, *, prime: Any = None, prime_rate: int | None = None,
                 only_new: bool = False, window: float | None = None, overlap: float | None = None,
                 steering: Sequence[Steering] | None = None, watermark: bool = True) -> Generation:
        """Generate one clip per prompt. Same seed, same spec, same device -> same tokens.

        ``progress`` (:class:`cadenza.core.engine.progress.Progress`) hears of every token
        sampled, out of a total counted before the first; :func:`~cadenza.core.engine.progress.progress_display`
        gives a bar on a terminal and plain lines elsewhere.

        The audio returned carries the spec's watermark (``output.watermark``, the built-in by
        default; :mod:`cadenza.core.engine.watermarking`) unless ``watermark`` is False.

        ``seed``: one int for the batch (one generator shared by the rows), or one int per
        prompt (a generator per row: a row's tokens are then those it gets alone with that seed).

        ``prime`` (``[C, S]``, or ``[B, C, S]`` with B 1 or one per prompt, at ``prime_rate``,
        default the codec's rate): audio to continue. It is encoded with the pipeline's own
        tokenizer (and semantic tokenizer) and its tokens are the written prefix of every
        stage; ``seconds`` is the total length, prime included. The audio starts with the prime
        *as decoded from its codes* (not its original samples), or with ``only_new`` holds only
        what follows it. Output with a prime gets no loudness gain: the prime sets the level.

        ``seconds`` longer than ``window`` (default :attr:`default_window`) is generated window
        by window, each continuing the last ``overlap`` seconds of the one before at token level:
        see :mod:`cadenza.core.engine.longform`. Without a ``window`` the spec's ``output.window`` and
        ``output.overlap`` apply; otherwise (and without them) the overlap is half a window.

        ``steering``: the :class:`cadenza.core.components.Steering` objects that shape the run, in
        the order they wrap each stage; None: the spec's own (:meth:`steering` with no options:
        ``output.beat``, ``output.hold``); ``[]``: none. ``steering(melody=..., hold=..., beat=...,
        bpm=...)`` builds the built-in ones from the command line's options; ``Generation.steering``
        says per row what each recorded.
        """
        import torch

        prompts = tuple(check_prompts([prompts] if isinstance(prompts, str) else prompts))
        seconds = check_seconds(self.pipeline.spec.output.seconds if seconds is None else seconds)
        batch = len(prompts)
        seeds = check_seeds(seed, batch)
        window, overlap = resolve_window(window, overlap, self.pipeline.spec.output)
        if only_new and prime is None:
            raise InputError("only_new needs a prime: without one, all of the audio is new")
        steering = self.steering() if steering is None else check_steering(steering)
        with torch.inference_mode():
            history: dict[str, Any] = self.encode_prime(prime, prime_rate, batch) if prime is not None else {}
            prime_seconds = history["acoustic"].shape[2] / self.frame_rates["acoustic"] if "acoustic" in history else 0.0
            if prime_seconds >= seconds:
                raise InputError(f"the prime is {prime_seconds:g} s long but only {seconds:g} s were asked for: "
                                 "the duration includes the prime, so ask for more")
            self._check_frames(seconds, window, overlap)
            plan = plan_windows(seconds, window, overlap, prime_seconds)
            run = SteeringRun(self, prompts, seconds, tuple(plan), window, prime is not None, history)
            for each in steering:
                each.plan(run)
            conditioning = self.conditioner.embed_text(list(prompts)) if self.conditioner else None
            timings: dict[str, float] = {}
            if progress is not None:
                progress.begin(self._planned_steps(plan, history))
            for win in plan:
                context, frames, begins = {}, {}, {}
                for stream, rate in self.frame_rates.items():
                    have = history[stream].shape[2] if stream in history else 0
                    begins[stream], frames[stream] = window_frames(win, have, rate)
                    # a melody's semantic tokens may reach past this window: its context stops at its end
                    stop = min(have, frames_before(win.end, rate))
                    if stop > begins[stream]:
                        context[stream] = history[stream][:, :, begins[stream]:stop]
                place = SteeringWindow(run, win, begins, history, conditioning)
                for each in steering:
                    each.window(place)
                label = (lambda name: name) if len(plan) == 1 else (lambda name, k=win.index: f"{name} {k + 1}/{len(plan)}")
                new = self._run_window(batch, place.conditioning, context, frames, seeds, win.index, progress, label,
                                       timings, steering, place)
                for stream, tokens in new.items():
                    history[stream] = torch.cat([history[stream], tokens], dim=2) if stream in history else tokens
            start = time.perf_counter()
            rate = self.frame_rates["acoustic"]
            chunk = frames_before(window, rate)
            audio = decode_chunked(self.tokenizer, history["acoustic"], rate, self.sample_rate, chunk,
                                   frames_before(DECODE_MARGIN, rate))
            timings["decode"] = time.perf_counter() - start
            if progress is not None:
                progress.stage_done("decode", timings["decode"])
                progress.end()
        for each in steering:
            each.finish(audio)
        begin = round(prime_seconds * self.sample_rate) if only_new else 0
        audio = audio[..., begin : round(seconds * self.sample_rate)]
        mark, embed = None, None
        if watermark and self.watermark is not None:
            payload = pipeline_payload(self.pipeline.spec.name)
            mark = describe_mark(self.pipeline.watermark.entry.name, self.watermark, payload)

            def embed(batch: Any) -> Any:
                return mark_batch(self.watermark, batch, self.sample_rate, payload)
        audio, levels = apply_output_stage(audio, self.sample_rate, self.level_settings, primed=prime is not None,
                                           mark=embed)
        return Generation(audio, self.sample_rate, prompts, seeds if isinstance(seeds, int) else tuple(seeds), seconds,
                          history, timings, prime_seconds=prime_seconds, only_new=only_new,
                          windows=tuple(w.to_dict() for w in plan) if len(plan) > 1 else (),
                          window=window if len(plan) > 1 else None, overlap=overlap if len(plan) > 1 else None,
                          steering=tuple({k: v for each in steering for k, v in each.describe(row).items()}
                                         for row in range(batch)) if steering else (),
                          watermark=mark, levels=levels, provenance=self.provenance())

    def steering(self, *, melody: Any = None, melody_strength: float | None = None, hold: float | None = None,
                 beat: float | None = None, bpm: float | None = None) -> list[Steering]:
        """The built-in steering (kind ``steering``) for the command line's options, this spec's
        ``output.hold`` and ``output.beat`` being their defaults.

        ``melody``: a :class:`cadenza.core.steering.melody.Melody`, or one per prompt (all or none),
        to follow. With ``melody_strength`` None (forced) its semantic tokens are the semantic
        stream for the melody's length (up to the run's duration) and the semantic stage only
        continues them; with a strength the semantic stage runs with that logit bonus on the
        melody's token at each frame. Needs a semantic stage; not combinable with a prime. A
        pipeline whose stage model hears a melody (``melody_sample_rate``, MusicGen-melody) is
        instead conditioned by it: that stage gets each row's melody audio (the recording, or the
        notes rendered), every window from its own start; a strength is refused there.

        ``hold``: piece memory (:mod:`cadenza.core.steering.piece_memory`) for long pieces and
        continuations: every stage gets this logit penalty on the token ids its stream did not
        use in the piece's opening (the prime, and from the second window on the first window
        too), and where the conditioner can embed audio the conditioning becomes the text's
        mixed with the opening's sound, so the piece keeps to what it opened with. A first
        window without a prime has no opening and is unchanged. None: the spec's
        ``output.hold``; 0: off.

        ``beat``: the beat grid's logit scale (:mod:`cadenza.core.steering.beat_grid`): the semantic
        stage keeps one tempo, ``bpm`` from the first frame, or without it the tempo of the
        piece's first :data:`~cadenza.core.steering.beat_grid.OPENING` seconds (a prime included),
        estimated once per row and held by every window that starts after them (so a clip that
        short is not steered). None: the spec's ``output.beat`` (with ``bpm`` and a
        spec at 0: :data:`~cadenza.core.steering.beat_grid.DEFAULT_STRENGTH`); 0: off. Needs a semantic
        tokenizer that knows which tokens are onsets.
        """
        from cadenza.core.steering.options import steering_list

        return steering_list(self.registry, self.pipeline.spec.output, melody=melody,
                             melody_strength=melody_strength, hold=hold, beat=beat, bpm=bpm)

    def _check_frames(self, seconds: float, window: float, overlap: float) -> None:
        """The run must make at least one frame of the slowest stream, and so must each window."""
        frame = 1 / min(self.frame_rates.values())
        if seconds < frame:
            raise InputError(f"duration {seconds:g} s is shorter than one frame of this pipeline ({frame:g} s)")
        if window - overlap < frame:
            raise InputError(f"each window must add at least one frame ({frame:g} s): window {window:g} s "
                             f"minus overlap {overlap:g} s is less")

    @property
    def frame_rates(self) -> dict[str, float]:
        """Frame rate of each stream the stages write, in the order they are first written."""
        rates: dict[str, float] = {}
        for stage in self.pipeline.stages:
            rates.setdefault(stage.layout.writes.stream, stage.layout.writes.frame_rate)
        return rates

    def encode_prime(self, prime: Any, rate: int | None = None, batch: int = 1) -> dict[str, Any]:
        """Prime audio -> its tokens per stream ``{"acoustic": [B, Q, T], "semantic": [B, 1, T']}``.

        The acoustic codes are cut to whole frames of the prime (a last, partly padded frame is
        dropped) and the other streams to the same duration, so every stream's prefix is made of
        the prime's audio only.
        """
        import torch

        rate = self.sample_rate if rate is None else rate
        if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
            raise InputError(f"prime_rate must be a positive integer (Hz), got {rate!r}")
        if not isinstance(prime, torch.Tensor) or prime.dim() not in (2, 3) or not prime.is_floating_point():
            raise InputError("the prime must be float audio [channels, samples] or [batch, channels, samples]")
        prime = prime[None] if prime.dim() == 2 else prime
        if prime.shape[0] not in (1, batch):
            raise InputError(f"the prime has {prime.shape[0]} clips for {batch} prompts: give 1 or {batch}")
        prime = prime.expand(batch, -1, -1).float().cpu()
        info = self.pipeline.tokenizer.info
        acoustic_rate = self.frame_rates["acoustic"]
        frames = math.floor(prime.shape[-1] / rate * acoustic_rate + 1e-6)
        if frames < 1:
            raise InputError(f"the prime ({prime.shape[-1] / rate:g} s) is shorter than one codec frame "
                             f"({1 / acoustic_rate:g} s)")
        codes = self.tokenizer.encode(prepare(prime, rate, info.sample_rate, info.channels).to(self.device))
        tokens = {"acoustic": codes[:, :, :frames].long()}
        seconds = tokens["acoustic"].shape[2] / acoustic_rate
        if "semantic" in self.frame_rates:
            if self.semantic_tokenizer is None:
                raise InputError("the pipeline has a semantic stage but no semantic tokenizer to encode the prime")
            sem = self.pipeline.semantic_tokenizer.info
            ids = self.semantic_tokenizer.tokenize(prepare(prime, rate, sem.sample_rate, 1).to(self.device))
            tokens["semantic"] = ids[:, None, : math.floor(seconds * self.frame_rates["semantic"] + 1e-6)].long()
        return tokens

    def _run_window(self, batch: int, conditioning: Any, context: dict, frames: dict, seeds: int | list[int],
                    window: int, progress: Progress | None, label: Callable[[str], str],
                    timings: dict[str, float], steering: Sequence[Steering] = (),
                    place: SteeringWindow | None = None) -> dict[str, Any]:
        """Run every stage over one window; return each stream's new tokens ``[B, width, frames]``.

        ``context[stream]``: the tokens that already exist in the window (its written prefix at
        every stage that writes the stream); ``frames[stream]``: how many frames to add. Each
        stage's model is wrapped by every ``steering`` in turn (``wrap(model, stage, place)``)
        before it samples.
        """
        import torch

        from cadenza.core.engine.decode import decode_stage

        streams: dict[str, torch.Tensor] = {}
        for index, stage in enumerate(self.pipeline.stages):
            name, layout = stage.spec.name, stage.layout
            writes = layout.writes
            prefix = context[writes.stream][:, writes.start:writes.stop] if writes.stream in context else None
            count = frames[writes.stream]
            reads = tuple(streams[r.stream][:, r.start:r.stop] for r in layout.reads)
            request = StageRequest(batch, reads, conditioning if layout.conditioning_mode != "none" else None)
            if count < 1:  # this stream already reaches the window's end (streams at other rates do not)
                empty = torch.zeros(batch, writes.num_codebooks, 0, dtype=torch.long, device=self.device)
                self._store(streams, writes, empty if prefix is None else prefix)
                continue
            if isinstance(seeds, int):
                generator = torch.Generator(device=self.device).manual_seed(_stage_seed(seeds, index, window))
            else:
                generator = [torch.Generator(device=self.device).manual_seed(_stage_seed(s, index, window)) for s in seeds]
            if progress is not None:
                progress.stage(label(name), count * writes.num_codebooks)
            self.registry.hook.before_stage(stage=stage.spec, request=request)
            start = time.perf_counter()
            try:
                model = self.models[name]
                for each in steering:
                    model = each.wrap(model, stage, place)
                tokens = decode_stage(model, request, count, self.samplers[name],
                                      guidance_scale=stage.spec.guidance_scale, generator=generator,
                                      progress=progress.advance if progress is not None else None, prefix=prefix)
            except BaseException as exc:
                self.registry.hook.on_stage_error(stage=stage.spec, error=exc)
                if progress is not None:
                    progress.end()
                raise
            elapsed = time.perf_counter() - start
            if progress is not None:
                progress.stage_done(label(name), elapsed)
            timings[name] = timings.get(name, 0.0) + elapsed
            self.registry.hook.after_stage(stage=stage.spec, tokens=tokens, seconds=elapsed)
            self._store(streams, writes, tokens if prefix is None else torch.cat([prefix.to(tokens.device), tokens], 2))
        return {stream: tokens[:, :, context[stream].shape[2] if stream in context else 0:]
                for stream, tokens in streams.items()}

    def _planned_steps(self, plan: Sequence[Any], history: dict[str, Any]) -> int:
        """Tokens the stages will sample over ``plan``, given what ``history`` already holds."""
        have = {stream: tokens.shape[2] for stream, tokens in history.items()}
        widths = [(stage.layout.writes.stream, stage.layout.writes.num_codebooks) for stage in self.pipeline.stages]
        return planned_steps(plan, have, self.frame_rates, widths)

    def _store(self, streams: dict, writes: Any, tokens: Any) -> None:
        """Put a stage's ``[B, Q, T]`` tokens at their codebook offset in their stream."""
        if writes.stream not in streams:
            width = 1 if writes.stream == "semantic" else self.pipeline.tokenizer.info.num_codebooks
            streams[writes.stream] = tokens.new_zeros(tokens.shape[0], width, tokens.shape[2])
        streams[writes.stream][:, writes.start:writes.stop] = tokens

    @property
    def level_settings(self) -> LevelSettings:
        """The spec's output-stage level settings (``output.loudness`` and its companions)."""
        output = self.pipeline.spec.output
        return LevelSettings(output.loudness, output.loudness_keep, output.loudness_reference, output.true_peak,
                             output.peak_dbfs)
