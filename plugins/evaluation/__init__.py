"""Evaluation metrics: prompt adherence, FAD, codec fidelity and text-audio similarity.

Registration only (no numpy or torch here, so discovery stays light); the metrics live in
:mod:`cadenza.plugins.evaluation.adherence`, :mod:`cadenza.plugins.evaluation.fad`, :mod:`cadenza.plugins.evaluation.fidelity`
and :mod:`cadenza.plugins.evaluation.text_similarity`. Call conventions (docs/evaluation.md): per-clip
metrics are ``metric(audio, sample_rate=SR, **inputs)`` and use the inputs they need
(``attributes``, ``reference``, ``prompt``, ``conditioner``); ``fad`` has ``scope = "set"``
and is called once with all clips and a reference set.
"""

import re

import attrs

from cadenza.core.hookspecs import hookimpl
from cadenza.core.spec.validators import at_least

ADHERENCE_ATTRIBUTES = ("tempo_class", "key", "mode", "register", "dynamics", "drums", "instrument")
_COMPONENT = re.compile(r"^[a-z_]+:[a-z0-9][a-z0-9._-]*(@.+)?$")


def _sample_rate():
    return attrs.field(default=24000, validator=at_least(1))


def _attribute_names(instance, attribute, value) -> None:
    unknown = [v for v in value if v not in ADHERENCE_ATTRIBUTES]
    if unknown or not value:
        raise ValueError(f"{attribute.name} must list some of {', '.join(ADHERENCE_ATTRIBUTES)}; got {list(value)!r}")


def _embedding_name(instance, attribute, value) -> None:
    if value not in ("mel-stats", "conditioner") and not _COMPONENT.match(value):
        raise ValueError(f"{attribute.name} must be 'mel-stats', 'conditioner' or KIND:NAME[@WEIGHTS], got {value!r}")


@attrs.frozen
class AdherenceConfig:
    """Which prompt attributes to check; ``sample_rate`` when a call gives none."""

    sample_rate: int = _sample_rate()
    attributes: tuple[str, ...] = attrs.field(default=ADHERENCE_ATTRIBUTES, converter=tuple, validator=_attribute_names)


@attrs.frozen
class FadConfig:
    """The audio ``embedding`` FAD is computed in (see :mod:`cadenza.plugins.evaluation.fad`)."""

    sample_rate: int = _sample_rate()
    embedding: str = attrs.field(default="mel-stats", validator=_embedding_name)


@attrs.frozen
class RateConfig:
    """``sample_rate`` when a call gives none."""

    sample_rate: int = _sample_rate()


@hookimpl
def register_metrics(register):
    register("adherence", "cadenza.plugins.evaluation.adherence:build_adherence", config=AdherenceConfig,
             description="share of the prompt's attributes (tempo, key, mode, register, dynamics, drums, instrument) "
             "measured in the audio; input: attributes, or a prompt to read them from")
    register("fad", "cadenza.plugins.evaluation.fad:build_fad", config=FadConfig, needs_weights=False,
             description="Frechet audio distance to a reference set (lower is better); set metric, input: reference")
    register("mel-distance", "cadenza.plugins.evaluation.fidelity:build_mel_distance", config=RateConfig,
             needs_weights=False,
             description="multi-resolution log-mel L1 distance to the reference (lower is better); input: reference")
    register("si-sdr", "cadenza.plugins.evaluation.fidelity:build_si_sdr", config=RateConfig, needs_weights=False,
             description="scale-invariant SDR against the reference in dB (higher is better); input: reference")
    register("text-similarity", "cadenza.plugins.evaluation.text_similarity:build_text_similarity", config=RateConfig,
             needs_weights=False,
             description="cosine of audio and prompt in the joint conditioner's space (MuLan/CLAP score); "
             "inputs: prompt, conditioner")
