"""The built-in tiny components: ``tiny-codec``, ``mel-kmeans`` and ``byte-text``.

They let a whole cascade run (and be trained) with no downloads: a small neural codec, a
log-mel + k-means semantic tokenizer, and a byte-level text encoder. This module holds only
their registration and config classes and must not import torch (discovery stays light);
the models live in :mod:`.tiny_codec`, :mod:`.mel_kmeans` and :mod:`.byte_text`.

Every config can ``describe(weights)`` its output without torch. When ``weights`` is a local
checkpoint, the architecture comes from the checkpoint's ``config.json`` (its tensors were
trained for exactly that shape), so the description matches what will actually be built.
Building and saving go through :func:`cadenza.core.engine.checkpoint.build_module` and ``save_module``.
"""

import math
from typing import Literal

import attrs

from cadenza.core.hookspecs import hookimpl
from cadenza.core.spec.params import config_for_weights
from cadenza.core.types import ConditioningInfo, SemanticInfo, TokenizerInfo
from cadenza.core.spec.validators import at_least, divides, non_negative

TINY_CODEC = "tiny-codec"
MEL_KMEANS = "mel-kmeans"
BYTE_TEXT = "byte-text"


# -- validators: each message starts with the field name, so the spec validator can point at it.

def _strides(instance, attribute, value) -> None:
    # Stride 1 cannot keep frames == samples / hop with kernel 2*stride (see tiny_codec).
    if not value or any(s < 2 for s in value):
        raise ValueError(f"{attribute.name} must be a non-empty list of integers >= 2, got {list(value)!r}")


def _hop_is_integer(instance, attribute, value) -> None:
    hop = instance.sample_rate / value if value > 0 else 0
    if not (value > 0 and hop >= 1 and abs(hop - round(hop)) < 1e-9):
        raise ValueError(
            f"{attribute.name} must divide sample_rate ({instance.sample_rate}) into a whole hop, got {value!r}"
        )


def _n_fft(instance, attribute, value) -> None:
    hop = instance.sample_rate / instance.frame_rate if instance.frame_rate > 0 else 0
    if value < hop:
        raise ValueError(f"{attribute.name} must be >= the hop ({hop:g} samples), got {value!r}")


# -- configs --------------------------------------------------------------------------------------

@attrs.frozen
class TinyCodecConfig:
    """A SoundStream/EnCodec-style codec; ``hop`` (the product of ``strides``) samples per frame."""

    sample_rate: int = attrs.field(default=16000, validator=at_least(1))
    strides: tuple[int, ...] = attrs.field(default=(4, 4, 4, 5), converter=tuple, validator=_strides)
    channels: int = attrs.field(default=32, validator=at_least(1))
    latent_dim: int = attrs.field(default=64, validator=at_least(1))
    num_codebooks: int = attrs.field(default=4, validator=at_least(1))
    codebook_size: int = attrs.field(default=256, validator=at_least(2))
    seed: int = attrs.field(default=0, validator=non_negative)

    @property
    def hop(self) -> int:
        return math.prod(self.strides)

    def info(self) -> TokenizerInfo:
        return TokenizerInfo(self.sample_rate, self.sample_rate / self.hop, self.num_codebooks, self.codebook_size, 1)

    def describe(self, weights) -> TokenizerInfo:
        return config_for_weights(self, weights).info()


@attrs.frozen
class MelKMeansConfig:
    """Log-mel frames at ``frame_rate`` (window ``n_fft``), each mapped to the nearest centroid."""

    sample_rate: int = attrs.field(default=16000, validator=at_least(1))
    frame_rate: float = attrs.field(default=25.0, validator=_hop_is_integer)
    n_mels: int = attrs.field(default=64, validator=at_least(1))
    vocab_size: int = attrs.field(default=128, validator=at_least(2))
    n_fft: int = attrs.field(default=1024, validator=_n_fft)
    seed: int = attrs.field(default=0, validator=non_negative)

    @property
    def hop(self) -> int:
        return round(self.sample_rate / self.frame_rate)

    def info(self) -> SemanticInfo:
        return SemanticInfo(self.sample_rate, float(self.frame_rate), self.vocab_size)

    def describe(self, weights) -> SemanticInfo:
        return config_for_weights(self, weights).info()


@attrs.frozen
class ByteTextConfig:
    """UTF-8 bytes -> a small transformer; ``pooled`` (one vector) or ``sequence`` output."""

    dim: int = attrs.field(default=64, validator=at_least(1))
    layers: int = attrs.field(default=1, validator=at_least(1))
    heads: int = attrs.field(default=4, validator=divides("dim"))
    max_length: int = attrs.field(default=64, validator=at_least(1))
    output: Literal["pooled", "sequence"] = attrs.field(
        default="pooled", validator=attrs.validators.in_(("pooled", "sequence"))
    )
    seed: int = attrs.field(default=0, validator=non_negative)

    def info(self) -> ConditioningInfo:
        length = self.max_length if self.output == "sequence" else 1
        return ConditioningInfo(kind=self.output, dim=self.dim, length=length)

    def describe(self, weights) -> ConditioningInfo:
        return config_for_weights(self, weights).info()


# -- registration ----------------------------------------------------------------------------------

@hookimpl
def register_tokenizers(register):
    register(TINY_CODEC, "cadenza.plugins.tiny.codec:build", config=TinyCodecConfig,
             description="small convolutional RVQ codec; its random weights make noise until trained")


@hookimpl
def register_semantic_tokenizers(register):
    register(MEL_KMEANS, "cadenza.plugins.tiny.mel_kmeans:build", config=MelKMeansConfig,
             description="log-mel frames -> nearest k-means centroid; random centroids until fitted")


@hookimpl
def register_conditioners(register):
    register(BYTE_TEXT, "cadenza.plugins.tiny.byte_text:build", config=ByteTextConfig,
             description="UTF-8 bytes -> small transformer (pooled or sequence); random until trained")
