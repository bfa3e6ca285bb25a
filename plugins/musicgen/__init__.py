"""The ``musicgen`` stage model: MusicGen's decoder LM, run by Cadenza's decode loop.

MusicGen (Copet et al. 2023; audiocraft, and ``transformers``' ``MusicgenForConditionalGeneration``)
is a single stage that writes all four EnCodec codebooks, cross-attending to T5 token states.
Here it is one cascade stage like any other: the ``t5`` conditioner reads the checkpoint's text
encoder, the ``encodec`` tokenizer its audio codec, and this stage its decoder and the projection
from the text width to the decoder's. It predicts every codebook at each step, codebook ``k``
``k`` steps behind (``codebook_delays``), so the core runs it with the delayed decode loop
(:mod:`cadenza.core.engine.delayed_decode`): guidance, samplers, long-form windows and
continuations are Cadenza's.

``weights:`` a MusicGen checkpoint: a hub id (``facebook/musicgen-small``, ``-medium``,
``-large``), found in the Hugging Face cache (offline: ``HF_HUB_OFFLINE=1``), or a folder saved
by ``save_pretrained``; ``random`` builds a small decoder of this config's sizes for tests.
This module is imported at plugin discovery: no torch, no transformers here.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from cadenza.core.errors import WeightsError
from cadenza.core.hookspecs import hookimpl
from cadenza.core.layout import StageLayout
from cadenza.core.spec.validators import at_least, divides, memory_problem
from cadenza.plugins.hf.composite import composite_part_config
from cadenza.plugins.hf.hub import hf_config

MUSICGEN = "musicgen"
MUSICGEN_MELODY = "musicgen-melody"
MELODY_TYPE = "musicgen_melody"

# The published checkpoints' sizes, so `cadenza validate` checks a spec offline before download.
_T5_BASE = {"model_type": "t5", "d_model": 768}
KNOWN_MUSICGEN: dict[str, dict[str, Any]] = {
    f"facebook/musicgen-{size}": {"model_type": "musicgen", "text_encoder": _T5_BASE,
                                  "decoder": {"model_type": "musicgen_decoder", "hidden_size": hidden,
                                              "num_hidden_layers": layers, "num_attention_heads": heads,
                                              "ffn_dim": 4 * hidden, "num_codebooks": 4, "vocab_size": 2048,
                                              "audio_channels": 1}}
    for size, (hidden, layers, heads) in {"small": (1024, 24, 16), "medium": (1536, 48, 24),
                                          "large": (2048, 48, 32)}.items()
}


@attrs.frozen
class MusicgenConfig:
    """Sizes of the decoder built for ``weights: random`` (a checkpoint brings its own)."""

    hidden_size: int = attrs.field(default=64, validator=at_least(8))
    layers: int = attrs.field(default=2, validator=at_least(1))
    heads: int = attrs.field(default=4, validator=divides("hidden_size"))
    ffn_dim: int = attrs.field(default=128, validator=at_least(1))
    max_positions: int = attrs.field(default=2048, validator=at_least(16))
    seed: int = attrs.field(default=0, validator=at_least(0))

    component: ClassVar[str] = MUSICGEN
    model_type: ClassVar[str] = "musicgen"
    checkpoint_kind: ClassVar[str] = "MusicGen"
    conditioning_mode: ClassVar[str] = "cross"
    conditioning_how: ClassVar[str] = "cross-attends to"
    known: ClassVar[dict[str, dict[str, Any]]] = KNOWN_MUSICGEN

    def decoder_config(self, weights: Any) -> dict[str, Any] | None:
        """The checkpoint's decoder sub-config (``config.json`` only, no tensors), None for random."""
        if weights is None or weights.is_random:
            return None
        config = hf_config(weights, self.known)
        if config is None:
            raise WeightsError(f"{weights.source!r}: not in the Hugging Face cache; fetch it once with "
                               f"`cadenza download` or `huggingface-cli download {weights.source}`")
        decoder = composite_part_config(config, "decoder")
        if decoder is None or config.get("model_type") != self.model_type:
            hint = {MELODY_TYPE: f": use model {MUSICGEN_MELODY!r}", "musicgen": f": use model {MUSICGEN!r}"}
            raise WeightsError(f"weights {weights.source!r} are not a {self.checkpoint_kind} checkpoint "
                               f"(model_type {config.get('model_type')!r}, expected {self.model_type!r})"
                               f"{hint.get(config.get('model_type'), '')}")
        return {**decoder, "text_width": (composite_part_config(config, "text_encoder") or {}).get("d_model"),
                "num_chroma": config.get("num_chroma"), "chroma_length": config.get("chroma_length")}

    def check(self, layout: StageLayout, weights: Any) -> list[str]:
        """What would fail later, found from the spec and the checkpoint's config.json alone."""
        name, mode_wanted, how = self.component, self.conditioning_mode, self.conditioning_how
        problems = []
        if layout.reads:
            problems.append(f"{name} reads no other stream (it is a single text-to-codes stage): drop 'reads'")
        if layout.writes.stream != "acoustic" or layout.writes.start != 0:
            problems.append(f"{name} writes all the codec's codebooks (acoustic), not {layout.writes}")
        cond, mode = layout.conditioning, layout.conditioning_mode
        if mode not in (mode_wanted, "none"):
            problems.append(f"{name} {how} its conditioning: use conditioning: {mode_wanted}, not {mode!r}")
        if cond is not None and mode == mode_wanted and cond.kind != "sequence":
            problems.append(f"{name} {how} token states ('sequence', as t5 gives), not {cond.kind!r}")
        try:
            decoder = self.decoder_config(weights)
        except WeightsError as exc:
            return problems + [str(exc)]
        if decoder is None:
            too_big = memory_problem(self.layers * 16.0 * self.hidden_size ** 2, f"this random {name} decoder")
            return problems + ([too_big] if too_big else [])
        source = weights.source
        if decoder.get("num_codebooks") != layout.writes.num_codebooks:
            problems.append(f"weights {source!r} write {decoder.get('num_codebooks')} codebooks, but the tokenizer "
                            f"has {layout.writes.num_codebooks}")
        if decoder.get("vocab_size") != layout.writes.codebook_size:
            problems.append(f"weights {source!r} predict codebooks of {decoder.get('vocab_size')} entries, but the "
                            f"tokenizer's have {layout.writes.codebook_size}")
        width = decoder.get("text_width") or decoder.get("hidden_size")
        if cond is not None and mode == mode_wanted and cond.dim != width:
            problems.append(f"weights {source!r} expect {width}-wide text states, but the conditioner "
                            f"gives {cond.dim} (use the t5 conditioner with the same weights)")
        if decoder.get("audio_channels", 1) != 1:
            problems.append(f"weights {source!r} are a stereo {self.checkpoint_kind}; only mono checkpoints are "
                            "supported yet")
        return problems + self.chroma_problems(decoder, source)

    def chroma_problems(self, decoder: dict[str, Any], source: str) -> list[str]:
        """Checks of the melody model's chroma (none here)."""
        return []


KNOWN_MUSICGEN_MELODY: dict[str, dict[str, Any]] = {
    "facebook/musicgen-melody": {"model_type": MELODY_TYPE, "text_encoder": _T5_BASE, "num_chroma": 12,
                                 "chroma_length": 235,
                                 "decoder": {**KNOWN_MUSICGEN["facebook/musicgen-medium"]["decoder"],
                                             "model_type": "musicgen_melody_decoder"}},
}


@attrs.frozen
class MusicgenMelodyConfig(MusicgenConfig):
    """MusicGen-melody: the decoder takes the melody's chroma and the text as a prefix of its input.

    Sizes for ``weights: random`` as for ``musicgen``, plus the chroma: ``num_chroma`` pitch
    classes (a multiple of 12) and ``chroma_length`` frames of it in the prefix (the library's
    ``chroma_length``: 235 frames, 30 s at 32 kHz with a 4096-sample hop).
    """

    num_chroma: int = attrs.field(default=12, validator=at_least(12))
    chroma_length: int = attrs.field(default=16, validator=at_least(1))

    component: ClassVar[str] = MUSICGEN_MELODY
    model_type: ClassVar[str] = MELODY_TYPE
    conditioning_mode: ClassVar[str] = "prefix"
    conditioning_how: ClassVar[str] = "takes as its prefix"
    checkpoint_kind: ClassVar[str] = "MusicGen-melody"
    known: ClassVar[dict[str, dict[str, Any]]] = KNOWN_MUSICGEN_MELODY
    conditions_on_melody: ClassVar[bool] = True  # a melody is this stage's chroma, not semantic tokens

    def check(self, layout: StageLayout, weights: Any) -> list[str]:
        problems = super().check(layout, weights)
        if self.num_chroma % 12:
            problems.append(f"params.num_chroma must be a multiple of 12 (pitch classes), got {self.num_chroma}")
        return problems

    def chroma_problems(self, decoder: dict[str, Any], source: str) -> list[str]:
        chroma = decoder.get("num_chroma")
        if isinstance(chroma, int) and chroma >= 12 and not chroma % 12:
            return []
        return [f"weights {source!r} take a chroma of {chroma!r} bins; Cadenza computes chroma in multiples "
                "of 12 pitch classes"]


@hookimpl
def register_stage_models(register: Any) -> None:
    register(MUSICGEN, "cadenza.plugins.musicgen.model:build_musicgen", config=MusicgenConfig,
             description="MusicGen's decoder LM (all codebooks per step, delay pattern, cross-attention to T5)")
    register(MUSICGEN_MELODY, "cadenza.plugins.musicgen.melody_model:build_musicgen_melody",
             config=MusicgenMelodyConfig,
             description="MusicGen-melody's decoder LM (the melody's chroma and T5 states as its prefix; "
                         "all codebooks per step, delay pattern)")
