"""Registration and config of the ``mulan`` conditioner (the model is in :mod:`.mulan_model`).

MusicLM conditions on MuLan: an audio tower and a text tower trained contrastively into one
embedding space, so the stages can be trained on the *audio* embedding of each clip (no
captions needed) and driven by the *text* embedding at inference. This module must stay
light (no torch, transformers or tokenizers import): discovery and ``cadenza validate`` only
need the config and ``describe``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import attrs

from cadenza.core.hookspecs import hookimpl
from cadenza.core.spec.params import config_for_weights
from cadenza.core.types import ConditioningInfo
from cadenza.core.spec.validators import at_least, divides, non_negative, positive

MULAN = "mulan"


def _audio_dim(instance, attribute, value) -> None:
    # 2D sin-cos positions give a quarter of the width to each of sin/cos x frequency/time.
    if value < 4 or value % 4 or value % instance.audio_heads:
        raise ValueError(f"{attribute.name} must be a multiple of 4 and of audio_heads ({instance.audio_heads}), got {value!r}")


def _n_fft(instance, attribute, value) -> None:
    if value < instance.hop_length:
        raise ValueError(f"{attribute.name} must be >= hop_length ({instance.hop_length}), got {value!r}")


def _text_length(instance, attribute, value) -> None:
    if not 3 <= value <= 512:  # [CLS] + at least one word piece + [SEP]; BERT has 512 positions
        raise ValueError(f"{attribute.name} must be in 3..512, got {value!r}")


@attrs.frozen
class MulanConfig:
    """A MuLan-style joint embedding model plus its residual-VQ embedding quantiser.

    Audio tower: log-mel (``n_mels`` bins, ``n_fft`` window, ``hop_length`` hop at
    ``sample_rate``) cut into ``patch_mels`` x ``patch_frames`` patches, a transformer of
    ``audio_layers`` x ``audio_dim``, mean-pooled. With ``music_features`` the tower also reads the ``music-features`` DSP
    (chroma, onsets, beat phase, dominant pitch: no weights) as a second row of tokens, so it
    hears key, mode and tempo, which the log-mel patches of a small tower barely resolve
    (``docs/benchmarks/mulan_conditioning.md``). Clips longer than ``clip_seconds`` are
    embedded window by window and averaged (see :mod:`.mulan_model`).
    Text tower: ``text="own"`` -- a small transformer (``text_dim``/``text_layers``/``text_heads``)
    over the MiniLM WordPiece vocabulary; ``text="minilm"`` -- the pretrained MiniLM-L6 encoder
    (384 wide, 6 layers; the ``text_*`` sizes are then unused); ``text="minilm-frozen"`` -- that
    encoder fixed, read from the installed package and never saved (only its projection trains,
    so checkpoints stay small enough to ship). Prompts are cut to
    ``max_text_length`` word pieces. Both towers project to the shared ``dim``.
    Quantiser: ``num_quantizers`` codebooks of ``codebook_size`` (MusicLM: 12 x 1024).
    ``output``: ``tokens`` (the RVQ ids, MusicLM's conditioning), ``quantized`` (the same ids
    summed back into their codebook vectors: the quantiser's bottleneck, read by a stage as one
    pooled vector) or ``pooled`` (the embedding itself).

    Why ``quantized``: a stage trained on the ids of *audio* embeddings and driven by the ids of
    *text* embeddings only works when the two quantise alike, and a small MuLan's do not (the
    bundled default's caption and clip share about a fifth of first-level ids, almost none
    after). A stage reading the summed vector sees text and audio land close instead of on
    unrelated ids, and one learned projection serves every clip, where per-id embeddings need
    many examples each (``docs/benchmarks/mulan_conditioning.md`` has the measurement).
    """

    sample_rate: int = attrs.field(default=16000, validator=at_least(1000))
    n_mels: int = attrs.field(default=128, validator=at_least(1))
    n_fft: int = attrs.field(default=512, validator=_n_fft)
    hop_length: int = attrs.field(default=160, validator=at_least(1))
    patch_mels: int = attrs.field(default=16, validator=divides("n_mels"))
    patch_frames: int = attrs.field(default=16, validator=at_least(1))
    clip_seconds: float = attrs.field(default=10.0, validator=positive)
    audio_dim: int = attrs.field(default=256, validator=_audio_dim)
    audio_layers: int = attrs.field(default=4, validator=at_least(1))
    audio_heads: int = attrs.field(default=4, validator=at_least(1))
    music_features: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    text: Literal["own", "minilm", "minilm-frozen"] = attrs.field(
        default="own", validator=attrs.validators.in_(("own", "minilm", "minilm-frozen")))
    text_dim: int = attrs.field(default=256, validator=at_least(1))
    text_layers: int = attrs.field(default=4, validator=at_least(1))
    text_heads: int = attrs.field(default=4, validator=divides("text_dim"))
    max_text_length: int = attrs.field(default=64, validator=_text_length)
    dim: int = attrs.field(default=128, validator=at_least(1))
    num_quantizers: int = attrs.field(default=12, validator=at_least(1))
    codebook_size: int = attrs.field(default=1024, validator=at_least(2))
    output: Literal["tokens", "quantized", "pooled"] = attrs.field(
        default="tokens", validator=attrs.validators.in_(("tokens", "quantized", "pooled"))
    )
    seed: int = attrs.field(default=0, validator=non_negative)

    USAGE_FIELDS: ClassVar[tuple[str, ...]] = ("output",)  # the spec picks it, whatever the weights were saved with

    @property
    def clip_samples(self) -> int:
        return max(1, round(self.clip_seconds * self.sample_rate))

    def info(self) -> ConditioningInfo:
        if self.output == "tokens":
            return ConditioningInfo(kind="tokens", length=self.num_quantizers, vocab_size=self.codebook_size,
                                    has_audio=True)
        return ConditioningInfo(kind="pooled", dim=self.dim, has_audio=True)

    def describe(self, weights) -> ConditioningInfo:
        return config_for_weights(self, weights).info()


@hookimpl
def register_conditioners(register):
    register(MULAN, "cadenza.plugins.mulan.model:build", config=MulanConfig,
             description="MuLan-style joint audio-text embedding (+ residual-VQ tokens); random until trained")
