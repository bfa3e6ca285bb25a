"""``cadenza generate``: one prompt -> an audio file plus a JSON sidecar saying how it was made.

With ``--prime`` the prompt continues an audio file; ``--melody FILE`` follows a melody read
by a melody source plugin (:mod:`cadenza.core.steering.melody`); ``--rerank K`` keeps the best of K
candidates (:mod:`cadenza.core.engine.rerank`); ``--seconds`` beyond ``--window`` is generated window
by window (:mod:`cadenza.core.engine.longform`); ``--prompts FILE`` hands over to the batch mode in
:mod:`cadenza.core.cli.batch`.
"""

from __future__ import annotations

import argparse
import sys

from cadenza.core.cli.batch import config_from_args as batch_config_from_args
from cadenza.core.cli.batch import run_batch
from cadenza.core.cli.generation_io import (check_long_form, check_melody_args, check_prime_length, load_prime,
                                           melody_problem, prime_duration, with_loudness)
from cadenza.core.engine.outputs import build_sidecar, check_output, sidecar_path, write_outputs
from cadenza.core.engine.limits import check_seconds, check_seed
from cadenza.core.engine.progress import progress_display
from cadenza.core.errors import InputError
from cadenza.core.prompts import check_prompts
from cadenza.core.spec.validate import load_pipeline
from cadenza.registry import get_registry
from cadenza.core.steering.melody import read_melody
from cadenza.core.engine.rerank import build_scorer, rerank


def run(args: argparse.Namespace) -> int:
    if getattr(args, "prompts", None) is not None:
        return run_batch(batch_config_from_args(args))
    from cadenza.core.engine.cascade import Cascade

    for flag, given in (("--out", args.out is not None), ("--resume", args.resume)):
        if given:
            raise InputError(f"{flag} is for batch mode (--prompts FILE); one prompt is written to --output")
    if args.prompt is None:
        raise InputError("give a prompt, or --prompts FILE to generate a batch")
    check_prompts([args.prompt])
    if args.seconds is not None:
        check_seconds(args.seconds)
    check_seed(args.seed, "--seed")
    if args.only_new and args.prime is None:
        raise InputError("--only-new needs --prime: without a prime, all of the audio is new")
    check_long_form(args.window, args.overlap, hold=args.hold, beat=args.beat, bpm=args.bpm)
    check_melody_args(args)
    output = check_output(args.output or "out.wav")
    prime_seconds = prime_duration(args.prime) if args.prime is not None else None  # header only
    registry = get_registry()
    pipeline = with_loudness(load_pipeline(args.pipeline, registry), args.loudness)
    seconds = pipeline.spec.output.seconds if args.seconds is None else args.seconds
    check_long_form(args.window, args.overlap, pipeline.spec.output)
    melody = None
    if args.melody is not None:
        problem = melody_problem(pipeline)
        if problem:
            raise InputError(f"--melody: {problem}")
        melody = read_melody(args.melody, args.melody_source, registry, max_seconds=seconds)
    prime, prime_rate = None, None
    if args.prime is not None:  # refused from its header when too long, before a sample is read
        check_prime_length(args.prime, None, prime_seconds, seconds)
        prime, prime_rate = load_prime(args.prime)
    cascade = Cascade(pipeline, registry, device=args.device)
    steering = cascade.steering(melody=melody, hold=args.hold, beat=args.beat, bpm=args.bpm)
    random_slots = cascade.random_components()
    if random_slots and not args.quiet:
        print(f"note: pipeline {args.pipeline!r} runs with random, untrained weights in "
              f"{', '.join(random_slots)}: expect noise, not music.", file=sys.stderr)
    progress = None if args.quiet else progress_display()

    def generate(seeds):
        return cascade.generate([args.prompt], seconds=args.seconds, seed=seeds, progress=progress, prime=prime,
                                prime_rate=prime_rate, only_new=args.only_new, window=args.window,
                                overlap=args.overlap, steering=steering, watermark=args.watermark)

    extra = {}
    if args.rerank > 1:
        scorer = build_scorer(args.rerank_metric, registry, cascade.conditioner, cascade.sample_rate)
        generation, report = rerank(generate, [args.prompt], [args.seed], args.rerank, scorer)
        extra["rerank"] = {"seed": args.seed, **report[0]}
    else:
        generation = generate(args.seed)
    write_outputs(output, generation.audio[0].numpy(), generation.sample_rate,
                  build_sidecar(generation, output, pipeline=args.pipeline, prime_file=args.prime, extra=extra),
                  plot_title=args.prompt if args.plot else None)
    if not args.quiet:
        length = generation.audio.shape[-1] / generation.sample_rate
        print(f"wrote {output} ({length:g} s at {generation.sample_rate} Hz) and {sidecar_path(output)}",
              file=sys.stderr)
        if prime is not None:
            print(f"note: {'the audio holds only what follows' if args.only_new else 'the audio starts with'} "
                  f"the prime ({generation.prime_seconds:g} s{'' if args.only_new else ', as decoded from its codec tokens'})",
                  file=sys.stderr)
        pulse = generation.steering[0].get("beat") if generation.steering else None
        if pulse:
            print(f"note: {_beat_note(pulse)}", file=sys.stderr)
        if melody is not None:
            print(f"note: followed the melody of {args.melody} ({len(melody.notes)} notes, {melody.seconds:g} s, "
                  f"melody source {melody.source})", file=sys.stderr)
        if args.rerank > 1:
            chosen = extra["rerank"]["candidates"][extra["rerank"]["chosen"]]
            print(f"note: kept candidate {extra['rerank']['chosen'] + 1} of {args.rerank} (seed {chosen['seed']}, "
                  f"{extra['rerank']['metric']} {chosen['score']:.3g})", file=sys.stderr)
        if generation.windows and (args.window is not None or generation.seconds > pipeline.spec.output.seconds):
            print(f"note: long-form generation in {len(generation.windows)} windows of {generation.window:g} s "
                  f"overlapping by {generation.overlap:g} s", file=sys.stderr)
    return 0


def _beat_note(pulse: dict) -> str:
    """The grid's tempo and where it came from, then what the decoded audio measures (the
    sidecar's ``beat.heard``), so the tempo asked for is never mistaken for the tempo heard."""
    source = "as asked" if pulse["from"] == "given" else "the tempo of the opening"
    heard = pulse.get("heard") or {}
    if heard.get("bpm") is None:
        return f"beat grid at {pulse['bpm']:g} BPM ({source}); the audio has no onsets to measure"
    ratio = {"same": "the grid's tempo", "half": "half the grid's", "double": "twice the grid's",
             "two thirds": "two thirds of the grid's", "three halves": "1.5 times the grid's"}.get(
        heard["relation"], "no simple ratio of the grid's")
    share = "none" if heard["on_beat"] is None else f"{heard['on_beat']:.0%}"
    return (f"beat grid at {pulse['bpm']:g} BPM ({source}); measured in the audio: {heard['bpm']:g} BPM "
            f"({ratio}), {share} of its onsets on the grid's beats")
