"""Perth's null sample: the detector's scores of clean clips, kept as data in ``null_scores.json``.

Perth-Net's decoder gives a confidence, not a p-value; :mod:`cadenza.plugins.perth.model`
counts a clip's score against these stored scores of clips that were never marked. They are
measurements, not code, so they live in a JSON file beside this module (package data, shipped
in the wheel), written only by ``benchmarks/watermark_robustness.py --calibrate-perth`` through
:func:`write_null_scores` and read once per process by :func:`null_scores`.

The scores come in buckets by the clip's duration (Perth-Net's score of clean audio depends on
its length: short clips reach high scores far more often). A clip is compared with the bucket
its duration falls in, the last for anything longer than ``BUCKETS[-2]`` seconds; in the file
that last bucket's ``up_to_seconds`` is ``null`` (JSON has no infinity).

Importing this module imports neither torch nor perth.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
import os

from cadenza.core.errors import WeightsError
from cadenza.core.files.atomic import write_text

BUCKETS = (1.5, 3.0, 7.0, math.inf)  # upper ends, in seconds, of the duration buckets
FILE_NAME = "null_scores.json"


def null_scores_file():
    """Where the packaged null sample lies (a ``Traversable``: a path in a source tree or an install)."""
    return importlib.resources.files(__package__) / FILE_NAME


@functools.cache
def null_scores() -> dict[float, tuple[float, ...]]:
    """``{upper end in seconds: sorted scores}`` from the packaged file, read once per process."""
    return read_null_scores(null_scores_file())


def read_null_scores(source) -> dict[float, tuple[float, ...]]:
    """``{upper end in seconds: sorted scores}`` from a file :func:`write_null_scores` wrote
    (a path or a ``Traversable``); a file that is not one fails with one line naming it."""
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
        return {math.inf if bucket["up_to_seconds"] is None else float(bucket["up_to_seconds"]):
                tuple(sorted(float(s) for s in bucket["scores"])) for bucket in document["buckets"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WeightsError(f"{source}: not perth's null sample ({type(exc).__name__}: {exc}); "
                           "reinstall cadenza or rerun benchmarks/watermark_robustness.py --calibrate-perth") from None


def null_scores_text(null: dict[float, list[float]], measured: str) -> str:
    """The file's text for ``null`` (``{upper end: scores}``), with ``measured`` saying how they were taken."""
    buckets = [{"up_to_seconds": None if math.isinf(upper) else upper, "scores": sorted(scores)}
               for upper, scores in sorted(null.items())]
    document = {"about": "Perth-Net detector scores of clean, never-marked clips, sorted, per duration bucket; "
                         "written by benchmarks/watermark_robustness.py --calibrate-perth",
                "measured": measured, "buckets": buckets}
    return json.dumps(document, indent=1) + "\n"


def write_null_scores(path: str | os.PathLike[str], null: dict[float, list[float]], measured: str) -> None:
    """Write the null sample to ``path`` atomically (a reader never sees half a file)."""
    write_text(path, null_scores_text(null, measured))
