"""The built-in samplers: greedy, temperature, top-k and top-p (nucleus).

This module only registers them: it must not import torch, because every ``cadenza``
command loads all plugins at discovery. The sampling code lives in
:mod:`cadenza.plugins.samplers.functions` and is imported when a spec builds a sampler.

Each config validates its own fields, so a spec with ``temperature: 0`` fails at
validation time (pointing at the YAML line) rather than halfway through a generation.
"""

import math

import attrs

from cadenza.core.components import NoConfig
from cadenza.core.hookspecs import hookimpl
from cadenza.core.spec.validators import at_least

_IMPL = "cadenza.plugins.samplers.functions"


def _positive_float(instance, attribute, value) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def _probability(instance, attribute, value) -> None:
    if not (0 < value <= 1):
        raise ValueError(f"{attribute.name} must be in (0, 1], got {value!r}")


@attrs.frozen
class TemperatureConfig:
    """Sample from ``softmax(logits / temperature)``; below 1 sharpens, above 1 flattens."""

    temperature: float = attrs.field(default=1.0, validator=_positive_float)


@attrs.frozen
class TopKConfig:
    """Sample among the ``k`` most likely tokens (``k`` larger than the vocabulary keeps all)."""

    k: int = attrs.field(default=50, validator=at_least(1))
    temperature: float = attrs.field(default=1.0, validator=_positive_float)


@attrs.frozen
class TopPConfig:
    """Nucleus sampling: the smallest set of tokens whose probability reaches ``p``."""

    p: float = attrs.field(default=0.9, validator=_probability)
    temperature: float = attrs.field(default=1.0, validator=_positive_float)


@hookimpl
def register_samplers(register):
    # needs_weights=False: sampling rules, nothing learned, so never reported as untrained weights.
    register("greedy", f"{_IMPL}:build_greedy", config=NoConfig,
             description="always the most likely token (deterministic)", needs_weights=False)
    register("temperature", f"{_IMPL}:build_temperature", config=TemperatureConfig,
             description="sample from softmax(logits / temperature)", needs_weights=False)
    register("top-k", f"{_IMPL}:build_top_k", config=TopKConfig,
             description="sample among the k most likely tokens", needs_weights=False)
    register("top-p", f"{_IMPL}:build_top_p", config=TopPConfig,
             description="nucleus sampling: the smallest set of tokens reaching probability p", needs_weights=False)
