"""What single-prompt and batch generation share: argument checks, reading a prime, and the
``--loudness`` override (writing the files is :mod:`cadenza.core.engine.outputs`, shared with
``Generation.save``).

Its own module so that :mod:`cadenza.core.cli.generate` (one prompt) and
:mod:`cadenza.core.cli.batch` (``--prompts FILE``) both import it and neither imports the other
the wrong way round.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import attrs

from cadenza.core.errors import InputError
from cadenza.core.files.user_text import check_regular_file
from cadenza.core.engine.longform import check_window, resolve_window
from cadenza.core.engine.rerank import check_count
from cadenza.core.audio.io import load_audio


def with_loudness(pipeline: Any, loudness: float | str | None) -> Any:
    """``pipeline`` with ``--loudness`` in its spec's output stage: a LUFS target (keeping the
    spec's other level settings; a peak-normalising spec switches to loudness), ``"none"`` for
    no output stage at all (no gain, no limiter: the level the model made, clipped to [-1, 1]),
    None to keep the spec's."""
    if loudness is None:
        return pipeline
    output = pipeline.spec.output
    if loudness == "none":
        output = attrs.evolve(output, peak_dbfs=None, loudness=None, true_peak=None)
    else:
        true_peak = -1.0 if output.peak_dbfs is not None and output.true_peak is None else output.true_peak
        output = attrs.evolve(output, peak_dbfs=None, loudness=float(loudness), true_peak=true_peak)
    return attrs.evolve(pipeline, spec=attrs.evolve(pipeline.spec, output=output))


def check_long_form(window: float | None, overlap: float | None, output: Any = None,
                    hold: float | None = None, beat: float | None = None, bpm: float | None = None) -> None:
    """Refuse a bad --window, --overlap, --hold, --beat or --bpm before any model is built. ``output`` is the
    spec's ``OutputSpec`` once it is loaded (it sets the default window); before, without
    --window, the overlap is only checked for sign: the default window is not known yet."""
    from cadenza.core.steering.beat_grid import check_strength as check_beat
    from cadenza.core.steering.piece_memory import check_strength

    try:
        check_strength(hold)
        check_beat(beat)
        check_tempo(bpm, beat)
    except InputError as exc:
        raise InputError(f"--{exc.args[0]}") from None
    try:
        if output is None:
            check_window(1e300 if window is None else window, overlap)
        else:
            resolve_window(window, overlap, output)
    except InputError as exc:
        raise InputError(f"--{exc.args[0]}") from None


def check_tempo(bpm: float | None, beat: float | None) -> float | None:
    """A --bpm (the command's or a batch line's) checked, and refused with ``--beat 0``, which
    turns off the grid it needs; messages start with "bpm" for the caller to name its source."""
    from cadenza.core.steering.beat_grid import check_bpm

    bpm = check_bpm(bpm)
    if bpm is not None and beat == 0:
        raise InputError("bpm needs the beat grid: --beat 0 turns it off")
    return bpm


def check_melody_args(args: argparse.Namespace) -> None:
    """--melody, --melody-source and --rerank problems that need no model (one line each)."""
    if args.melody_source is not None and args.melody is None and getattr(args, "prompts", None) is None:
        raise InputError("--melody-source needs --melody FILE")
    if args.melody is not None and args.prime is not None:
        raise InputError("--melody cannot be combined with --prime: continue audio or follow a melody, not both")
    if args.melody is not None:
        check_regular_file(args.melody, "melody file")
    check_count(args.rerank)


def melody_problem(pipeline) -> str | None:
    """Why ``pipeline`` cannot follow a melody (no stage model conditioned by one, no semantic
    stage or tokenizer to steer), or None. A stage model whose config declares
    ``conditions_on_melody`` (MusicGen-melody) hears the melody itself."""
    if any(getattr(stage.model.config, "conditions_on_melody", False) for stage in pipeline.stages):
        return None
    if not any(stage.layout.writes.stream == "semantic" for stage in pipeline.stages):
        return (f"pipeline {pipeline.spec.name!r} has no semantic stage for a melody to steer "
                "(a melody needs a MusicLM-style cascade with a semantic tokenizer)")
    if pipeline.semantic_tokenizer is None:
        return f"pipeline {pipeline.spec.name!r} has no semantic tokenizer to turn a melody into semantic tokens"
    return None


def load_prime(path: str | Path):
    """``(audio [C, S], rate)`` of a prime file; an unreadable one is a one-line InputError."""
    return load_audio(path, what="prime audio file")


def prime_duration(path: str | Path) -> float:
    """Seconds of audio in a prime file, from its header (no samples are read)."""
    import soundfile

    check_regular_file(path, "prime audio file")
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, OSError, soundfile.LibsndfileError) as exc:  # type: ignore[attr-defined]
        raise InputError(f"{path}: cannot read audio ({exc})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise InputError(f"{path}: audio file has no samples")
    return info.frames / info.samplerate


def check_prime_length(path: str | Path, audio, rate: int, seconds: float, what: str = "--seconds") -> None:
    """The prime must leave something to generate: ``seconds`` is the total, prime included.
    ``audio`` may be None when ``rate`` is the duration in seconds already."""
    duration = rate if audio is None else audio.shape[-1] / rate
    if duration >= seconds:
        raise InputError(f"{path}: the prime is {duration:g} s long, not shorter than {what} ({seconds:g} s); "
                         "the duration includes the prime")
