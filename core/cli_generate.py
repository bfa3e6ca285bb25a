"""``cadenza generate``: one prompt -> an audio file plus a JSON sidecar saying how it was made."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from cadenza.core.errors import InputError

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


def write_outputs(output: Path, audio, sample_rate: int, sidecar: dict) -> None:
    """Write the audio and its sidecar atomically: both appear, or neither does."""
    import soundfile

    from cadenza.core.atomic import atomic_path

    fmt = AUDIO_FORMATS[output.suffix.lower()]
    with atomic_path(output) as tmp_audio, atomic_path(sidecar_path(output)) as tmp_json:
        soundfile.write(str(tmp_audio), audio.T, sample_rate, format=fmt)
        tmp_json.write_text(json.dumps(sidecar, indent=2) + "\n")


def build_sidecar(cascade, generation, pipeline_arg: str, output: Path) -> dict:
    from importlib.metadata import version

    from cadenza.core.spec import spec_to_dict

    pipeline = cascade.pipeline
    return {
        "prompt": generation.prompts[0],
        "seed": generation.seed,
        "seconds": generation.seconds,
        "sample_rate": generation.sample_rate,
        "audio": output.name,
        "pipeline": pipeline_arg,
        "spec_file": str(pipeline.spec.source) if pipeline.spec.source else None,
        "spec": spec_to_dict(pipeline.spec),
        "components": [c.provenance() for c in pipeline.components()],
        "random_weights": cascade.random_components(),
        "stage_seconds": {k: round(v, 4) for k, v in generation.stage_seconds.items()},
        "cadenza_version": version("cadenza"),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def run(args: argparse.Namespace) -> int:
    from cadenza.core.cascade import Cascade, check_seconds
    from cadenza.core.prompts import check_prompts

    check_prompts([args.prompt])
    if args.seconds is not None:
        check_seconds(args.seconds)
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    output = check_output(args.output)
    cascade = Cascade.from_spec(args.pipeline, device=args.device)
    random_slots = cascade.random_components()
    if random_slots and not args.quiet:
        print(f"note: pipeline {args.pipeline!r} runs with random, untrained weights in "
              f"{', '.join(random_slots)}: expect noise, not music.", file=sys.stderr)
    progress = None if args.quiet else _progress_bars
    generation = cascade.generate([args.prompt], seconds=args.seconds, seed=args.seed, progress=progress)
    write_outputs(output, generation.audio[0].numpy(), generation.sample_rate,
                  build_sidecar(cascade, generation, args.pipeline, output))
    if not args.quiet:
        print(f"wrote {output} ({generation.seconds:g} s at {generation.sample_rate} Hz) and {sidecar_path(output)}",
              file=sys.stderr)
    return 0


def _progress_bars(stage: str, total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"stage {stage}", unit="tok", file=sys.stderr, leave=False,
                dynamic_ncols=True, disable=None)  # None: no bars when stderr is not a terminal
