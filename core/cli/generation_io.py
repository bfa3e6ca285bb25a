"""What single-prompt and batch generation share: argument checks, reading a prime, and writing
the audio, its JSON sidecar and the optional spectrogram.

Its own module so that :mod:`cadenza.core.cli.generate` (one prompt) and
:mod:`cadenza.core.cli.batch` (``--prompts FILE``) both import it and neither imports the other
the wrong way round.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
from pathlib import Path
from typing import Any

from cadenza.core.errors import InputError
from cadenza.core.files.user_text import check_regular_file, describe_os_error

AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}


def sidecar_path(output: Path) -> Path:
    return output.with_suffix(".json")


def check_output(path: str) -> Path:
    """Fail before any model runs when the output cannot be written."""
    output = Path(path)
    if output.suffix.lower() not in AUDIO_FORMATS:
        raise InputError(f"{output}: unsupported audio format {output.suffix or '(none)'!r}; "
                         f"use one of {', '.join(AUDIO_FORMATS)}")
    if output.is_dir():
        raise InputError(f"{output}: is a folder; give a file name such as {output / 'out.wav'}")
    if output.parent.exists() and not output.parent.is_dir():
        raise InputError(f"{output.parent}: is not a folder")
    return output


def write_outputs(output: Path, audio, sample_rate: int, sidecar: dict, plot_title: str | None = None) -> None:
    """Write the audio, its sidecar and (with ``plot_title``, ``--plot``) a spectrogram PNG
    atomically: all appear, or none does.

    Each file is rendered in memory first, so an encoder error or a disk that fills up fails
    before anything is replaced, and the OS error (no space, file too large, permission) is
    the one reported, with the path: libsndfile would only say "System error".
    """
    import io

    import soundfile

    from cadenza.core.files.atomic import atomic_path

    files: dict[Path, bytes] = {}
    if plot_title is not None:
        from cadenza.core.audio.plot import spectrogram_png

        plot = output.with_suffix(".png")
        files[plot] = spectrogram_png(audio, sample_rate, plot_title)
        sidecar = {**sidecar, "plot": plot.name}
    encoded = io.BytesIO()
    soundfile.write(encoded, audio.T, sample_rate, format=AUDIO_FORMATS[output.suffix.lower()])
    files[output] = encoded.getvalue()
    files[sidecar_path(output)] = (json.dumps(sidecar, indent=2) + "\n").encode()
    current = output
    try:
        with contextlib.ExitStack() as stack:
            for current, data in files.items():
                stack.enter_context(atomic_path(current)).write_bytes(data)
    except OSError as exc:
        raise InputError(f"{current}: cannot write: {describe_os_error(exc)}") from None


def build_sidecar(cascade, generation, pipeline_arg: str, output: Path, row: int = 0, prime_file: str | None = None,
                  extra: dict | None = None) -> dict:
    """How row ``row`` of ``generation`` was made: prompt, seed, spec, components, prime, windows."""
    from importlib.metadata import version

    from cadenza.core.spec.schema import spec_to_dict

    pipeline = cascade.pipeline
    sidecar = {
        "prompt": generation.prompts[row],
        "seed": generation.row_seeds[row],
        "seconds": generation.seconds,
        "sample_rate": generation.sample_rate,
        "audio": output.name,
        "pipeline": pipeline_arg,
        "spec_file": str(pipeline.spec.source) if pipeline.spec.source else None,
        "spec": spec_to_dict(pipeline.spec),
        "components": [c.provenance() for c in pipeline.components()],
        "random_weights": cascade.random_components(),
        "watermark": generation.watermark,
        "stage_seconds": {k: round(v, 4) for k, v in generation.stage_seconds.items()},
        "cadenza_version": version("cadenza"),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if prime_file is not None:
        sidecar["prime"] = {
            "file": prime_file,
            "seconds": round(generation.prime_seconds, 6),
            "in_audio": not generation.only_new,
            "note": ("the audio holds only what follows the prime" if generation.only_new else
                     "the audio starts with the prime as decoded from its codec tokens, not its original samples"),
        }
    if generation.windows:
        sidecar["long_form"] = {"window": generation.window, "overlap": generation.overlap,
                                "windows": [dict(w) for w in generation.windows]}
    if generation.hold is not None:
        sidecar["hold"] = generation.hold
    if generation.beats:
        sidecar["beat"] = {"strength": generation.beat, **generation.beats[row]}
    if generation.melody:
        strength = generation.melody_strength
        sidecar["melody"] = {**generation.melody[row], "mode": "forced" if strength is None else "guided",
                             "strength": strength}
    if len(generation.prompts) > 1:
        sidecar["batch"] = {"size": len(generation.prompts), "row": row}
    sidecar.update(extra or {})
    return sidecar


def check_long_form(window: float | None, overlap: float | None, output: Any = None,
                    hold: float | None = None, beat: float | None = None, bpm: float | None = None) -> None:
    """Refuse a bad --window, --overlap, --hold, --beat or --bpm before any model is built. ``output`` is the
    spec's ``OutputSpec`` once it is loaded (it sets the default window); before, without
    --window, the overlap is only checked for sign: the default window is not known yet."""
    from cadenza.core.steering.beat_grid import check_strength as check_beat
    from cadenza.core.engine.longform import check_window, resolve_window
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
    from cadenza.core.engine.rerank import check_count

    if args.melody_source is not None and args.melody is None and getattr(args, "prompts", None) is None:
        raise InputError("--melody-source needs --melody FILE")
    if args.melody is not None and args.prime is not None:
        raise InputError("--melody cannot be combined with --prime: continue audio or follow a melody, not both")
    if args.melody is not None:
        check_regular_file(args.melody, "melody file")
    check_count(args.rerank)


def melody_problem(pipeline) -> str | None:
    """Why ``pipeline`` cannot follow a melody (no semantic stage or tokenizer), or None."""
    if not any(stage.layout.writes.stream == "semantic" for stage in pipeline.stages):
        return (f"pipeline {pipeline.spec.name!r} has no semantic stage for a melody to steer "
                "(a melody needs a MusicLM-style cascade with a semantic tokenizer)")
    if pipeline.semantic_tokenizer is None:
        return f"pipeline {pipeline.spec.name!r} has no semantic tokenizer to turn a melody into semantic tokens"
    return None


def load_prime(path: str | Path):
    """``(audio [C, S], rate)`` of a prime file; an unreadable one is a one-line InputError."""
    from cadenza.core.audio.io import load_audio

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
