"""attrs validators shared by the component config classes (a spec's ``params:``).

Every message starts with the field name (``f"{attribute.name} must be ..."``):
:func:`cadenza.core.spec.params.structure_config` reads that leading name to point a spec problem
at the right YAML line, so a new validator here must keep that form.

This module is imported at plugin discovery and by ``cadenza validate``: keep it light
(no torch, no numpy).
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable

import attrs

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def at_least(minimum: int) -> Validator:
    """``value >= minimum``."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value < minimum:
            raise ValueError(f"{attribute.name} must be >= {minimum}, got {value!r}")

    return check


def optional_at_least(minimum: int) -> Validator:
    """None (left to a default), or ``value >= minimum``."""
    return attrs.validators.optional(at_least(minimum))


def non_negative(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """``value >= 0`` (e.g. a seed)."""
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def positive(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A finite number ``> 0`` (NaN and infinity fail)."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def divides(field: str) -> Validator:
    """``value >= 1`` and a divisor of the instance's ``field`` (declared before this one),
    e.g. attention heads dividing the model width."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        whole = getattr(instance, field)
        if value < 1 or whole % value:
            raise ValueError(f"{attribute.name} must be >= 1 and divide {field} ({whole}), got {value!r}")

    return check


def physical_memory() -> int | None:
    """Bytes of RAM on this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def memory_problem(parameters: float, what: str, bytes_per_parameter: int = 4) -> str | None:
    """Why a model of ``parameters`` weights cannot be built here, or None.

    Called by configs' ``check`` before anything is built, so a spec asking for a 2^70-wide
    model is refused with the figure instead of failing in the allocator (or swapping for an
    hour). Weights alone must fit in 80% of RAM; activations are not counted.
    """
    have = physical_memory()
    need = parameters * bytes_per_parameter
    if have is None or need <= 0.8 * have:
        return None
    return f"{what} needs about {_size(need)} for its weights alone; this machine has {_size(have)} of memory"


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if count < 1000:
            return f"{count:.3g} {unit}"
        count /= 1000
    return f"{count:.3g} EB"
