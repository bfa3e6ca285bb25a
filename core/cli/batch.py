"""``cadenza generate --prompts FILE --out DIR``: many prompts, one WAV + JSON sidecar each.

Every line of ``FILE`` is a JSON object: ``{"prompt": ..., "seed": 3, "seconds": 8,
"prime": "intro.wav", "melody": "tune.mid", "melody_source": "midi:track=1", "bpm": 96, "name": "song"}``;
everything but ``prompt`` is optional (the command's ``--seed``, ``--seconds``, ``--prime``,
``--melody``, ``--melody-source`` and ``--bpm`` are the defaults; a relative ``prime`` or ``melody`` is
relative to ``FILE``'s folder). A line cannot have both a prime and a melody. The output of a
line is ``DIR/<name>.wav`` and ``.json``, ``name`` defaulting to the line number (``0007``).
With ``--rerank K`` every line keeps the best of K candidates (:mod:`cadenza.core.engine.rerank`).

Lines are checked before any model is built; a bad one is reported as ``FILE:LINE: message``
and skipped, and the rest run. Lines with the same duration, prime, melody and tempo are generated together,
``--batch-size`` at a time, each row with its own seed's generator, so batching changes the
speed, not the audio a line gets. Each pair of files is written atomically as soon as its batch
is done, so ``--resume`` after an interruption (or a bad line fixed) skips every line whose two
files exist and builds no model at all when nothing is left to do.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from cadenza.core.cli.generation_io import (check_long_form, check_melody_args, check_prime_length, check_tempo,
                                           load_prime, melody_problem, prime_duration, with_loudness)
from cadenza.core.engine.limits import check_seconds, check_seed
from cadenza.core.errors import CadenzaError, InputError
from cadenza.core.files.json_lines import parse_object, read_lines
from cadenza.core.files.user_text import check_regular_file
from cadenza.core.prompts import text_problem
from cadenza.core.steering.melody import read_melody
from cadenza.core.engine.outputs import build_sidecar, write_outputs
from cadenza.core.spec.validate import load_pipeline
from cadenza.registry import get_registry
from cadenza.core.engine.rerank import build_scorer
from cadenza.core.engine.rerank import rerank

KEYS = ("prompt", "seed", "seconds", "prime", "melody", "melody_source", "bpm", "name")


@attrs.frozen
class Job:
    """One valid line: what to generate and where."""

    line: int
    prompt: str
    seed: int
    seconds: float | None  # None: the spec's output.seconds
    prime: Path | None
    name: str
    melody: Path | None = None
    melody_source: str | None = None
    bpm: float | None = None  # None: the piece's own tempo

    @property
    def group(self) -> tuple:
        """Lines with equal settings run in one batch (seeds may differ: each row has its own)."""
        return (self.seconds, None if self.prime is None else str(self.prime),
                None if self.melody is None else str(self.melody), self.melody_source, self.bpm)


def _regular_file(path: Path, what: str) -> None:
    try:
        check_regular_file(path, what)
    except InputError as exc:
        raise ValueError(str(exc)) from None


def parse_line(text: str, line: int, folder: Path, defaults: dict[str, Any]) -> Job:
    """One JSONL line -> a :class:`Job`; a problem is a ValueError with the message."""
    item = parse_object(text, 'expected a JSON object such as {"prompt": "a calm harp"}')
    unknown = sorted(set(item) - set(KEYS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; allowed: {', '.join(KEYS)}")
    prompt = item.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError('"prompt" is missing or empty: describe the music to generate')
    problem = text_problem(prompt)
    if problem:
        raise ValueError(f'"prompt" {problem}')
    seed = item.get("seed", defaults["seed"])
    seconds = item.get("seconds", defaults["seconds"])
    try:
        check_seed(seed, '"seed"')
        if seconds is not None:
            check_seconds(seconds, '"seconds"')
    except InputError as exc:
        raise ValueError(str(exc)) from None
    prime = defaults["prime"]
    if "prime" in item:
        if not isinstance(item["prime"], str) or not item["prime"].strip():
            raise ValueError(f'"prime" must be the path of an audio file, got {item["prime"]!r}')
        prime = folder / item["prime"]
    if prime is not None:
        _regular_file(prime, "prime audio file")
    melody = defaults.get("melody")
    if "melody" in item:
        if not isinstance(item["melody"], str) or not item["melody"].strip():
            raise ValueError(f'"melody" must be the path of a melody file (MIDI or audio), got {item["melody"]!r}')
        melody = folder / item["melody"]
    if melody is not None:
        _regular_file(melody, "melody file")
    if melody is not None and prime is not None:
        raise ValueError("a line cannot have both a prime and a melody: continue audio or follow a melody")
    melody_source = item.get("melody_source", defaults.get("melody_source"))
    if melody_source is not None and (not isinstance(melody_source, str) or not melody_source.strip()):
        raise ValueError(f'"melody_source" must be a melody source name, got {melody_source!r}')
    bpm = item.get("bpm", defaults.get("bpm"))
    if bpm is not None:
        try:
            bpm = check_tempo(bpm, defaults.get("beat"))
        except InputError as exc:
            raise ValueError(f'"bpm" {exc.args[0].removeprefix("bpm ")}') from None
    name = item.get("name", f"{line:04d}")
    if (not isinstance(name, str) or not name.strip() or name.startswith(".") or "/" in name or "\\" in name
            or any(ord(c) < 32 for c in name) or len(name) > 200):
        raise ValueError(f'"name" must be a plain file name (no folder, not starting with "."), got {name!r}')
    return Job(line, prompt, seed, None if seconds is None else float(seconds), prime, name, melody,
               melody_source if melody is not None else None, bpm)


def read_jobs(path: Path, defaults: dict[str, Any]) -> tuple[list[Job], list[str]]:
    """The valid jobs of a JSONL file and one ``FILE:LINE: message`` per bad line."""
    jobs, problems = read_lines(path, lambda text, number: parse_line(text, number, path.parent, defaults),
                                name_of=lambda job: job.name,
                                repeated=lambda name, line: f"name {name!r} is already used by line {line}")
    if not jobs and not problems:
        raise InputError(f"{path}: no prompts (expected one JSON object per line)")
    return jobs, problems


def outputs(out_dir: Path, job: Job) -> tuple[Path, Path]:
    return out_dir / f"{job.name}.wav", out_dir / f"{job.name}.json"


def batches(jobs: list[Job], size: int) -> list[list[Job]]:
    """Jobs grouped by settings (first appearance first), then cut to at most ``size`` each."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.group, []).append(job)
    return [group[i : i + size] for group in groups.values() for i in range(0, len(group), size)]


@attrs.frozen(kw_only=True)
class BatchConfig:
    """What a batch asks for: every ``cadenza generate --prompts`` setting, with the flags' defaults.

    Made from Python (``run_batch(BatchConfig(pipeline=..., prompts=..., out=...))``) or by
    :func:`config_from_args`; values are checked when it is made, with the command line's messages.
    Files are checked when the batch runs (they may not exist yet).
    """

    pipeline: str = attrs.field(converter=str)
    prompts: Path = attrs.field(converter=Path)
    out: Path = attrs.field(converter=Path)
    seed: int = 0
    seconds: float | None = None
    prime: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    only_new: bool = False
    melody: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    melody_source: str | None = None
    rerank: int = 1
    rerank_metric: str | None = None  # None: rerank.default_metric
    window: float | None = None
    overlap: float | None = None
    hold: float | None = None
    beat: float | None = None
    bpm: float | None = None
    resume: bool = False
    batch_size: int = 8
    watermark: bool = True
    loudness: float | str | None = None  # LUFS, "none" (no output stage) or None (the spec's)
    plot: bool = False
    device: str = "cpu"
    quiet: bool = False

    def __attrs_post_init__(self) -> None:
        check_seed(self.seed, "--seed")
        if self.seconds is not None:
            check_seconds(self.seconds)
        check_long_form(self.window, self.overlap, hold=self.hold, beat=self.beat, bpm=self.bpm)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputError(f"--batch-size must be an integer >= 1, got {self.batch_size!r}")


def config_from_args(args: argparse.Namespace) -> BatchConfig:
    """The batch a parsed ``cadenza generate --prompts FILE`` command line asks for."""
    if args.prompt is not None:
        raise InputError("give a prompt or --prompts FILE, not both")
    if args.out is None:
        raise InputError("--prompts needs --out DIR, the folder to write the audio files into")
    if args.output is not None:
        raise InputError("--output is for one prompt; with --prompts the files go into --out DIR")
    return BatchConfig(**{field.name: getattr(args, field.name) for field in attrs.fields(BatchConfig)})


def _check_files(config: BatchConfig) -> Path:
    """The output folder, after the checks that read the file system (one line each)."""
    out_dir = config.out
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: is not a folder")
    if config.prime is not None:
        check_regular_file(config.prime, "prime audio file")
    check_melody_args(config)
    return out_dir


def run_batch(config: BatchConfig) -> int:
    """Generate every line of ``config.prompts``; exit 2 when some line was bad, else 0."""
    started = time.perf_counter()
    out_dir = _check_files(config)
    created = not out_dir.exists()
    try:
        return _run_batch(config, out_dir, started)
    finally:  # a batch that wrote nothing leaves no empty folder behind
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()


def _run_batch(config: BatchConfig, out_dir: Path, started: float) -> int:
    path = config.prompts
    defaults = {"seed": config.seed, "seconds": config.seconds, "prime": config.prime,
                "melody": config.melody, "melody_source": config.melody_source,
                "bpm": config.bpm, "beat": config.beat}
    jobs, problems = read_jobs(path, defaults)
    for problem in problems:
        print(problem, file=sys.stderr)
    skipped = [j for j in jobs if config.resume and all(p.exists() for p in outputs(out_dir, j))]
    todo = [j for j in jobs if j not in skipped]
    done, bad = 0, len(problems)
    if todo:
        registry = get_registry()
        pipeline = with_loudness(load_pipeline(config.pipeline, registry), config.loudness)
        check_long_form(config.window, config.overlap, pipeline.spec.output)
        todo, prime_problems = _check_primes(todo, pipeline.spec.output.seconds, path)
        for problem in prime_problems:
            print(problem, file=sys.stderr)
        bad += len(prime_problems)
        todo, melodies, melody_problems = _read_melodies(todo, pipeline, registry, path)
        for problem in melody_problems:
            print(problem, file=sys.stderr)
        bad += len(melody_problems)
        if todo:
            done, failed = _generate(config, path, out_dir, todo, pipeline, registry, melodies)
            bad += failed
    if not config.quiet:
        print(f"done: {done} generated, {len(skipped)} skipped (outputs exist), {bad} bad "
              f"line{'' if bad == 1 else 's'}; {len(jobs) + len(problems)} lines in {path}, outputs in {out_dir} "
              f"({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return 2 if bad else 0


def _check_primes(jobs: list[Job], default_seconds: float, path: Path) -> tuple[list[Job], list[str]]:
    """Drop the jobs whose prime is unreadable or not shorter than their duration (from file headers)."""
    durations: dict[Path, float | InputError] = {}
    keep, problems = [], []
    for job in jobs:
        if job.prime is None:
            keep.append(job)
            continue
        if job.prime not in durations:
            try:
                durations[job.prime] = prime_duration(job.prime)
            except InputError as exc:
                durations[job.prime] = exc
        try:
            found = durations[job.prime]
            if isinstance(found, InputError):
                raise found
            seconds = default_seconds if job.seconds is None else job.seconds
            check_prime_length(job.prime, None, found, seconds, what="the duration asked for")
        except InputError as exc:
            problems.append(f"{path}:{job.line}: {exc}")
            continue
        keep.append(job)
    return keep, problems


def _read_melodies(jobs: list[Job], pipeline: Any, registry: Any,
                   path: Path) -> tuple[list[Job], dict[tuple, Any], list[str]]:
    """Read each melody file once (with its line's source); drop the lines whose melody cannot be
    read or whose pipeline cannot follow one. Returns ``(jobs, {(file, source): Melody}, problems)``."""
    melodies: dict[tuple, Any] = {}
    keep, problems = [], []
    unsupported = melody_problem(pipeline)
    longest = max((job.seconds or pipeline.spec.output.seconds for job in jobs), default=None)  # read no further
    for job in jobs:
        if job.melody is None:
            keep.append(job)
            continue
        key = (job.melody, job.melody_source)
        try:
            if unsupported:
                raise InputError(unsupported)
            if key not in melodies:
                try:
                    melodies[key] = read_melody(job.melody, job.melody_source, registry, max_seconds=longest)
                except CadenzaError as exc:
                    melodies[key] = InputError(str(exc))
            if isinstance(melodies[key], InputError):
                raise melodies[key]
        except InputError as exc:
            problems.append(f"{path}:{job.line}: {exc}")
            continue
        keep.append(job)
    return keep, {k: v for k, v in melodies.items() if not isinstance(v, InputError)}, problems


def _generate(config: BatchConfig, path: Path, out_dir: Path, todo: list[Job], pipeline: Any,
              registry: Any, melodies: dict[tuple, Any] | None = None) -> tuple[int, int]:
    """Run the batches; return ``(generated, bad lines found on the way)``."""
    from tqdm import tqdm

    from cadenza.core.engine.cascade import Cascade

    cascade = Cascade(pipeline, registry, device=config.device)
    random_slots = cascade.random_components()
    if random_slots and not config.quiet:
        print(f"note: pipeline {config.pipeline!r} runs with random, untrained weights in "
              f"{', '.join(random_slots)}: expect noise, not music.", file=sys.stderr)
    scorer = None
    if config.rerank > 1:
        scorer = build_scorer(config.rerank_metric, registry, cascade.conditioner, cascade.sample_rate)
    melodies = melodies or {}
    out_dir.mkdir(parents=True, exist_ok=True)
    primes: dict[Path, Any] = {}
    done = failed = 0
    bar = tqdm(total=len(todo), desc="prompts", unit="prompt", file=sys.stderr, dynamic_ncols=True,
               disable=True if config.quiet else None)

    def report(job: Job, message: str) -> None:
        nonlocal failed
        failed += 1
        bar.write(f"{path}:{job.line}: {message}", file=sys.stderr)
        bar.update(1)

    try:
        for chunk in batches(todo, config.batch_size):
            first = chunk[0]
            seconds = pipeline.spec.output.seconds if first.seconds is None else first.seconds
            prime = rate = None
            if first.prime is not None:
                try:
                    if first.prime not in primes:
                        primes.clear()  # one prime in memory at a time: groups come one after another
                        primes[first.prime] = load_prime(first.prime)
                    prime, rate = primes[first.prime]
                    check_prime_length(first.prime, prime, rate, seconds, what="the duration asked for")
                except InputError as exc:
                    for job in chunk:
                        report(job, str(exc))
                    continue
            melody = None if first.melody is None else melodies[(first.melody, first.melody_source)]
            steering = cascade.steering(melody=melody, hold=config.hold, beat=config.beat, bpm=first.bpm)

            def generate(seeds, chunk=chunk, seconds=seconds, prime=prime, rate=rate, steering=steering):
                return cascade.generate([j.prompt for j in chunk], seconds=seconds, seed=seeds, prime=prime,
                                        prime_rate=rate, only_new=config.only_new and prime is not None,
                                        window=config.window, overlap=config.overlap, steering=steering,
                                        watermark=config.watermark)

            seeds = [j.seed for j in chunk]
            if scorer is not None:
                generation, report = rerank(generate, [j.prompt for j in chunk], seeds, config.rerank, scorer)
            else:
                generation, report = generate(seeds), None
            for row, job in enumerate(chunk):
                audio_path = outputs(out_dir, job)[0]
                extra = {"prompts_file": str(path), "line": job.line}
                if report is not None:
                    extra["rerank"] = {"seed": job.seed, **report[row]}
                write_outputs(audio_path, generation.audio[row].numpy(), generation.sample_rate,
                              build_sidecar(generation, audio_path, row=row, pipeline=config.pipeline,
                                            prime_file=None if job.prime is None else str(job.prime), extra=extra),
                              plot_title=job.prompt if config.plot else None)
                done += 1
            bar.update(len(chunk))
    finally:
        bar.close()
    return done, failed
