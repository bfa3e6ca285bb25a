"""The built-in audio watermark: ``spread-spectrum``, a keyed pattern in the STFT magnitude.

``cadenza generate`` marks what it writes with it, so generated audio can later be told from
other audio (``cadenza detect``), with a p-value the threshold turns into a false-positive
rate, and a 32-bit payload. It needs no weights. This module only registers it and must not
import numpy or torch (discovery stays light); the algorithm and its design notes live in
:mod:`cadenza.plugins.watermarks.spread_spectrum`.

The key decides who can find (and who can forge) the mark. ``key: null`` takes
``CADENZA_WATERMARK_KEY`` from the environment, else a public default key written in the
source: with it anyone can detect the mark *and forge it* onto any audio, so a public-key
mark only says "probably made by some Cadenza". A private key gives provenance; the
component's ``key_id`` (first 8 hex digits of the key's sha256) names it in sidecars.
"""

import math

import attrs

from cadenza.core.hookspecs import hookimpl

_IMPL = "cadenza.plugins.watermarks.spread_spectrum"


def _key(instance, attribute, value) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty string, or null for the environment's "
                         f"or the public key, got {value!r}")


def _open_unit(instance, attribute, value) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value < 1):
        raise ValueError(f"{attribute.name} must be a number in (0, 1), got {value!r}")


def _exponent(instance, attribute, value) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 4):
        raise ValueError(f"{attribute.name} must be a number in [0, 4], got {value!r}")


def _decibels(instance, attribute, value) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 120):
        raise ValueError(f"{attribute.name} must be a number of dB in [0, 120], got {value!r}")


@attrs.frozen
class SpreadSpectrumConfig:
    """Parameters of the ``spread-spectrum`` watermark, as written under ``params:``.

    ``key``: the secret (null: ``CADENZA_WATERMARK_KEY``, else the public key, which anyone
    can detect and forge). ``strength``: the deepest the magnitude modulation goes in any cell,
    ``|X| * (1 +- strength)``. ``min_snr_db``: the SNR the mark is fitted to: each cell's depth
    falls as ``|X| ** -depth_exponent`` (loud cells, which decide the SNR, get shallow marks;
    quieter ones up to ``strength``), scaled so the whole mark leaves exactly this SNR.
    ``depth_exponent``: 0 is a flat depth; 2 is what white noise would make optimal; 1.5 keeps
    codecs, which discard the quietest cells, in view. ``threshold``: the p-value at or below
    which ``detect`` says ``marked`` (the false-positive rate).
    """

    key: str | None = attrs.field(default=None, validator=_key)
    strength: float = attrs.field(default=0.6, validator=_open_unit)
    depth_exponent: float = attrs.field(default=1.5, validator=_exponent)
    min_snr_db: float = attrs.field(default=30.5, validator=_decibels)
    threshold: float = attrs.field(default=1e-6, validator=_open_unit)


@hookimpl
def register_watermarks(register):
    register("spread-spectrum", f"{_IMPL}:build", config=SpreadSpectrumConfig, needs_weights=False,
             description="keyed spread-spectrum mark in the 0.5-5 kHz STFT magnitude, 32-bit payload, no weights")
