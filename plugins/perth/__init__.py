"""The ``perth`` watermark: Resemble AI's Perth-Net implicit watermark (``pip install resemble-perth``).

Perth-Net is a pair of small convolutional networks trained together: an encoder that nudges
the magnitude spectrogram below 2 kHz (at 32 kHz) and a decoder that says how sure it is the
nudge is there. Its pretrained weights ship inside the ``resemble-perth`` wheel, so it needs no
download. It carries no payload: ``embed`` ignores ``payload`` and ``detect`` always reports
``payload=None``.

The decoder gives a confidence, not a p-value. :mod:`cadenza.plugins.perth.model` turns it
into one against a stored null sample (the scores of clean clips that were never marked):
``p_value`` is the share of that sample scoring at or above the clip, counted as ``(1 + k) /
(n + 1)``, so it is never below ``1 / (n + 1)`` and a ``threshold`` under that marks nothing.
How the null sample was measured, and how well it holds on other clips, is in
``docs/benchmarks/watermark_robustness.md``.

This module holds only the config and the registration: importing it imports neither torch
nor perth (every ``cadenza`` command imports it).
"""

from __future__ import annotations

import math

import attrs

from cadenza.core.hookspecs import hookimpl

PERTH = "perth"
PACKAGED = "packaged"
MISSING = "the perth watermark needs the optional extra: pip install resemble-perth"


def _probability(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 < value < 1:
        raise ValueError(f"{attribute.name} must be a probability in (0, 1), got {value!r}")


@attrs.frozen
class PerthConfig:
    """``threshold``: a clip is ``marked`` when its p-value (against the stored null sample of
    clean-clip scores) is at or below it. The smallest p-value the sample can give is
    ``1 / (n + 1)`` (n = 1,000 clean clips per duration bucket), so a threshold below 1/1001
    marks nothing. The default, 0.01, promises at most 1% false positives on audio like the
    null sample's (rendered music and noise); measured figures are in the benchmark."""

    threshold: float = attrs.field(default=0.01, validator=_probability)


@hookimpl
def register_watermarks(register):
    register(PERTH, "cadenza.plugins.perth.model:build", config=PerthConfig, default_weights=PACKAGED,
             description="Perth-Net implicit watermark (Resemble AI, weights in the resemble-perth wheel); "
             "no payload, p-value from a stored null sample of clean-clip scores")
