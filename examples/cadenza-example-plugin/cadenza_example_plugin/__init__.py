"""Cadenza plugin registering the ``min-p`` sampler (discovery imports only this light module)."""

from __future__ import annotations

import attrs

from cadenza.core.hookspecs import hookimpl


def _in_unit_interval(instance, attribute, value):
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{attribute.name} must be in (0, 1], got {value}")


def _positive(instance, attribute, value):
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


@attrs.frozen
class MinPConfig:
    """Parameters of the min-p sampler, as written under ``params:`` in a spec."""

    min_p: float = attrs.field(default=0.1, validator=_in_unit_interval)
    temperature: float = attrs.field(default=1.0, validator=_positive)


@hookimpl
def register_samplers(register):
    register("min-p", "cadenza_example_plugin.sampler:MinPSampler", config=MinPConfig,
             description="sample among tokens at least min_p times as likely as the best one",
             needs_weights=False)
