"""Bounds on a run's numbers (duration, seed) that every entry point checks the same way.

Light on purpose (no torch): the batch reader checks each prompt line with these before any
model is imported. The ceilings are documented in docs/specs.md with the spec's own.
"""

from __future__ import annotations

import math
from typing import Any

from cadenza.core.errors import InputError
from cadenza.core.spec.schema import MAX_SECONDS

MAX_SEED = 2 ** 63 - 1  # torch.Generator.manual_seed takes a signed 64-bit seed


def is_seed(value: Any) -> bool:
    """An integer (not a bool) from 0 to :data:`MAX_SEED`."""
    return not isinstance(value, bool) and isinstance(value, int) and 0 <= value <= MAX_SEED


def check_seed(seed: Any, what: str = "seed") -> int:
    """An integer seed from 0 to :data:`MAX_SEED`; one InputError otherwise."""
    if not is_seed(seed):
        raise InputError(f"{what} must be an integer from 0 to 2^63-1, got {seed!r}")
    return seed


def check_seconds(seconds: Any, what: str = "duration") -> float:
    """A duration from above 0 to :data:`~cadenza.core.spec.schema.MAX_SECONDS` (one hour)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
        raise InputError(f"{what} must be a positive number of seconds, got {seconds!r}")
    if seconds > MAX_SECONDS:
        raise InputError(f"{what} must be at most {MAX_SECONDS:g} s (one hour), got {seconds:g}")
    return float(seconds)
