"""Writing a generation to disk: the audio, its JSON sidecar and an optional spectrogram.

One module serves ``Generation.save`` (the Python API), ``cadenza generate`` (one prompt and
batch) and the demo, so a file written from a notebook carries the same sidecar as one written
by the command line: prompt, seed, spec, components, levels, watermark, windows.

Every file is rendered in memory first and then written atomically, all or none: an encoder
error or a disk that fills up fails before anything is replaced, and the OS's own reason (no
space, file too large, permission) is what the user reads, with the path.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

from cadenza.core.audio.plot import spectrogram_png
from cadenza.core.errors import InputError
from cadenza.core.files.atomic import atomic_path
from cadenza.core.files.user_text import describe_os_error

AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}


def sidecar_path(output: Path) -> Path:
    return output.with_suffix(".json")


def check_output(path: str | Path) -> Path:
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


def write_outputs(output: Path, audio: Any, sample_rate: int, sidecar: dict, plot_title: str | None = None) -> None:
    """Write ``audio`` ``[C, S]`` (numpy), its sidecar and (with ``plot_title``) a spectrogram PNG
    beside it, atomically: all appear, or none does."""
    import soundfile

    files: dict[Path, bytes] = {}
    if plot_title is not None:
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


def build_sidecar(generation: Any, output: Path, row: int = 0, pipeline: str | None = None,
                  prime_file: str | None = None, extra: dict | None = None) -> dict:
    """How row ``row`` of ``generation`` was made: prompt, seed, spec, components, levels, prime,
    windows, steering. ``pipeline``: what the user named (a preset or a spec file; default the spec's name)."""
    made = generation.provenance
    sidecar = {
        "prompt": generation.prompts[row],
        "seed": generation.row_seeds[row],
        "seconds": generation.seconds,
        "sample_rate": generation.sample_rate,
        "audio": output.name,
        "pipeline": made.get("pipeline") if pipeline is None else pipeline,
        "spec_file": made.get("spec_file"),
        "spec": made.get("spec"),
        "components": made.get("components", []),
        "random_weights": made.get("random_weights", []),
        "watermark": generation.watermark,
        "levels": generation.levels[row] if generation.levels else None,
        "stage_seconds": {k: round(v, 4) for k, v in generation.stage_seconds.items()},
        "cadenza_version": version("cadenza"),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if prime_file is not None or generation.prime_seconds:
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
    if generation.steering:  # what each steering recorded of this row: "melody", "beat", "hold", ...
        sidecar.update(generation.steering[row])
    if len(generation.prompts) > 1:
        sidecar["batch"] = {"size": len(generation.prompts), "row": row}
    sidecar.update(extra or {})
    return sidecar
