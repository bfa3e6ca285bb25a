"""Semantic tokenizers from self-supervised speech models: ``hubert`` and ``w2v-bert``.

AudioLM/MusicLM semantic tokens: the hidden states of one layer of a self-supervised model,
each mapped to its nearest k-means centroid. Both models take 16 kHz audio and give 50 frames
per second (HuBERT: a conv stack with a 320-sample hop; w2v-BERT 2.0: 80-bin fbank frames
every 160 samples, stacked in pairs by its feature extractor).

Registration and configs only (no torch/transformers import); the models are in
:mod:`cadenza.plugins.hf.semantic_model`. Parameters:

``layer``      hidden layer whose output is tokenised (1 = the first transformer layer). Default:
               9 for HuBERT (the hubert-base-ls960 L9 / 500-cluster recipe used by AudioLM
               reproductions), 17 for w2v-BERT 2.0 (the layer semantic codecs such as MaskGCT
               cluster); for ``weights: random`` the last layer of the tiny model.
``vocab_size`` number of centroids (500 / 1024 by default: MusicLM uses 1024 w2v-BERT clusters).
``kmeans``     ``random`` (seeded N(0, 1) placeholders, until fitted) or a safetensors file with
               ``centroids`` ``[vocab_size, hidden]`` as written by ``cadenza fit-kmeans``; a
               relative path is resolved from the current directory.
``seed``       random init of the tiny model and of random centroids.
``hidden_size``, ``num_layers``, ``num_heads``, ``intermediate_size`` (and ``conv_dim`` for
               HuBERT's waveform convolutions) size the model built for ``weights: random`` only.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import attrs

from cadenza.core.errors import WeightsError
from cadenza.core.hookspecs import hookimpl
from cadenza.core.types import SemanticInfo
from cadenza.core.spec.validators import at_least, divides
from cadenza.plugins.hf.hub import hf_config

HUBERT = "hubert"
W2V_BERT = "w2v-bert"
HUBERT_DEFAULT = "facebook/hubert-base-ls960"
W2V_BERT_DEFAULT = "facebook/w2v-bert-2.0"
SAMPLE_RATE = 16000
FRAME_RATE = 50.0

KNOWN = {
    HUBERT_DEFAULT: {"hidden_size": 768, "num_hidden_layers": 12},
    "facebook/hubert-large-ll60k": {"hidden_size": 1024, "num_hidden_layers": 24},
    W2V_BERT_DEFAULT: {"hidden_size": 1024, "num_hidden_layers": 24},
}


def _layer(instance, attribute, value) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be >= 1 (the first transformer layer), got {value!r}")


def centroids_shape(path: str | Path) -> tuple[int, int]:
    """``(K, D)`` of the ``centroids`` tensor of a safetensors file, from its header alone.

    The format is an 8-byte little-endian header size, then a JSON header giving each tensor's
    dtype and shape; reading it needs neither torch nor numpy (``safe_open`` would import one),
    so ``cadenza validate`` stays light.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"kmeans file {str(path)!r} does not exist (write one with `cadenza fit-kmeans`)")
    try:
        with open(path, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            if size > 100_000_000:
                raise ValueError("header too large")
            header = json.loads(handle.read(size))
        shape = header["centroids"]["shape"]
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise WeightsError(f"kmeans file {str(path)!r} is not a safetensors file with a 'centroids' tensor "
                           f"({type(exc).__name__}: {exc})") from None
    if len(shape) != 2:
        raise WeightsError(f"kmeans file {str(path)!r}: centroids must be [K, D], got shape {shape}")
    return int(shape[0]), int(shape[1])


class _Describe:
    """What both configs share: layer and k-means checks made before anything is built."""

    name: str
    default_layer: int
    known: dict

    def architecture(self, weights) -> dict | None:
        """``{"hidden_size", "num_hidden_layers"}`` of the model to build, when known without loading it."""
        if weights.is_random:
            return {"hidden_size": self.hidden_size, "num_hidden_layers": self.num_layers}
        return hf_config(weights, self.known)

    def resolved_layer(self, weights) -> int:
        if self.layer is not None:
            return self.layer
        return self.num_layers if weights.is_random else self.default_layer

    def check(self, weights, arch: dict | None) -> int:
        """The layer to read; raises a one-line WeightsError for a layer or centroids that cannot fit."""
        layer = self.resolved_layer(weights)
        layers = (arch or {}).get("num_hidden_layers")
        if isinstance(layers, int) and layer > layers:
            raise WeightsError(f"params.layer {layer} is beyond the model's {layers} layers ({weights.source}): "
                               f"choose 1..{layers}")
        if self.kmeans != "random":
            k, dim = centroids_shape(self.kmeans)
            if k != self.vocab_size:
                raise WeightsError(f"kmeans file {self.kmeans!r} has {k} centroids but params.vocab_size is "
                                   f"{self.vocab_size}: set vocab_size: {k}")
            hidden = (arch or {}).get("hidden_size")
            if isinstance(hidden, int) and dim != hidden:
                raise WeightsError(f"kmeans file {self.kmeans!r} has {dim}-d centroids but the model's features "
                                   f"are {hidden}-d (fitted for another model?)")
        return layer

    def describe(self, weights) -> SemanticInfo:
        self.check(weights, self.architecture(weights))
        return SemanticInfo(SAMPLE_RATE, FRAME_RATE, self.vocab_size)


@attrs.frozen
class HubertSemanticConfig(_Describe):
    name = HUBERT
    default_layer = 9
    known = KNOWN

    layer: int | None = attrs.field(default=None, validator=_layer)
    vocab_size: int = attrs.field(default=500, validator=at_least(2))
    kmeans: str = "random"
    seed: int = attrs.field(default=0, validator=at_least(0))
    hidden_size: int = attrs.field(default=64, validator=at_least(1))
    num_layers: int = attrs.field(default=2, validator=at_least(1))
    num_heads: int = attrs.field(default=2, validator=divides("hidden_size"))
    intermediate_size: int = attrs.field(default=128, validator=at_least(1))
    conv_dim: int = attrs.field(default=32, validator=at_least(1))


@attrs.frozen
class W2VBertSemanticConfig(_Describe):
    name = W2V_BERT
    default_layer = 17
    known = KNOWN

    layer: int | None = attrs.field(default=None, validator=_layer)
    vocab_size: int = attrs.field(default=1024, validator=at_least(2))
    kmeans: str = "random"
    seed: int = attrs.field(default=0, validator=at_least(0))
    hidden_size: int = attrs.field(default=64, validator=at_least(1))
    num_layers: int = attrs.field(default=2, validator=at_least(1))
    num_heads: int = attrs.field(default=2, validator=divides("hidden_size"))
    intermediate_size: int = attrs.field(default=128, validator=at_least(1))


@hookimpl
def register_semantic_tokenizers(register):
    register(HUBERT, "cadenza.plugins.hf.semantic_model:build_hubert", config=HubertSemanticConfig,
             default_weights=HUBERT_DEFAULT,
             description="HuBERT layer features -> nearest k-means centroid (16 kHz, 50 Hz); hubert-base-ls960")
    register(W2V_BERT, "cadenza.plugins.hf.semantic_model:build_w2v_bert", config=W2VBertSemanticConfig,
             default_weights=W2V_BERT_DEFAULT,
             description="w2v-BERT 2.0 layer features -> nearest k-means centroid (16 kHz, 50 Hz), as in MusicLM")
