"""Data passed between cascade components.

These are the shapes every plugin agrees on; they are plain attrs classes over tensors so
that a plugin author can read the whole contract in one file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import attrs

if TYPE_CHECKING:  # torch is imported lazily: `cadenza --help` must not pay for it.
    import torch

ConditioningKind = Literal["pooled", "sequence", "tokens"]
CONDITIONING_KINDS: tuple[str, ...] = ("pooled", "sequence", "tokens")


@attrs.frozen
class TokenizerInfo:
    """What an acoustic tokenizer (a neural codec) produces, known before it is built."""

    sample_rate: int
    frame_rate: float
    num_codebooks: int
    codebook_size: int
    channels: int = 1


@attrs.frozen
class SemanticInfo:
    """What a semantic tokenizer produces: one stream of ids at ``frame_rate``."""

    sample_rate: int
    frame_rate: float
    vocab_size: int


@attrs.frozen
class ConditioningInfo:
    """What a conditioner produces, known before it is built.

    ``pooled``: one vector of width ``dim`` per prompt (MuLan/CLAP embeddings).
    ``sequence``: ``length`` (or fewer, masked) vectors of width ``dim`` (T5 token states).
    ``tokens``: ``length`` discrete ids below ``vocab_size`` (a residual-VQ quantised embedding).
    """

    kind: ConditioningKind
    dim: int = 0
    length: int = 1
    vocab_size: int = 0
    has_audio: bool = False  # a joint model that can also embed audio (the MuLan trick)


@attrs.frozen
class Conditioning:
    """A batch of conditioning, as produced by a conditioner.

    ``values`` is ``[B, D]`` (pooled), ``[B, L, D]`` (sequence) or ``[B, L]`` int64 (tokens).
    ``mask`` is ``[B, L]`` bool, True where a sequence position is real; None when all are.
    """

    kind: ConditioningKind
    values: "torch.Tensor"
    mask: "torch.Tensor | None" = None

    @property
    def batch_size(self) -> int:
        return int(self.values.shape[0])

    def repeat(self, times: int) -> "Conditioning":
        """The batch repeated ``times`` over (row order: all rows, then all rows again)."""
        shape = (times,) + (1,) * (self.values.dim() - 1)
        mask = None if self.mask is None else self.mask.repeat(times, 1)
        return Conditioning(self.kind, self.values.repeat(*shape), mask)


@attrs.frozen
class Audio:
    """A batch of waveforms ``[B, C, S]`` (float32, nominally in [-1, 1]) at ``sample_rate``."""

    samples: "torch.Tensor"
    sample_rate: int

    @property
    def seconds(self) -> float:
        return self.samples.shape[-1] / self.sample_rate


@attrs.frozen
class Detection:
    """What a watermark detector found in one clip.

    ``p_value``: the chance that audio never marked with this key scores ``score`` or more
    (the detector's null distribution); ``payload``: the bits recovered (None when they did
    not decode, e.g. their error check failed); ``marked``: ``p_value <= threshold``, the
    threshold the watermark was asked to use.
    """

    score: float
    p_value: float
    payload: int | None = None
    marked: bool = False
    threshold: float = 1e-6

