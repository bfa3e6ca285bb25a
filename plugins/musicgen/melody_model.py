"""The ``musicgen-melody`` stage: transformers' ``MusicgenMelodyForCausalLM`` behind Cadenza's protocol.

MusicGen-melody has no cross-attention. Its decoder reads one sequence: the melody's chroma
(one-hot pitch classes, projected to the decoder's width and repeated or cut to
``chroma_length`` frames), then the projected T5 states (zero where padded), then the codes.
That prefix goes into the KV cache once, at ``prefill``; every step after it feeds one frame
of codes, as ``musicgen`` does, through the same delayed decode loop.

The conditioning is the library's, in its order and with its null condition: without a melody
the chroma is one frame of class 0 (C), repeated; under guidance the unconditional rows get
zero text states and that same all-C chroma, as long as the conditional rows' chroma. No
attention mask is given, as ``generate`` gives none: padded text positions are zero vectors
the decoder still reads.

A melody reaches the stage through :meth:`MusicgenMelodyStage.with_melody` (the cascade calls
it for stage models that have ``melody_sample_rate``): audio in, a view of the stage whose
prefix holds that audio's chroma (:mod:`cadenza.plugins.musicgen.chroma`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cadenza.core.components import BuildContext, StageRequest
from cadenza.core.engine.delayed_decode import NO_TOKEN
from cadenza.core.errors import InputError, WeightsError
from cadenza.core.layout import StageLayout
from cadenza.plugins.hf.composite import build_part, load_part
from cadenza.plugins.hf.hub import local_folder, quiet_transformers
from cadenza.plugins.musicgen import MUSICGEN_MELODY, MusicgenMelodyConfig
from cadenza.plugins.musicgen.chroma import Chroma, ChromaSettings
from cadenza.plugins.musicgen.model import DecodeState, MusicgenStage, projection, random_decoder_settings


class MusicgenMelodyStage(MusicgenStage):
    """Decoder + text and chroma projections; the conditioning is a prefix of the decoder's input."""

    def __init__(self, decoder: nn.Module, text_projection: nn.Module | None, chroma_projection: nn.Module | None,
                 layout: StageLayout, chroma_length: int, settings: ChromaSettings):
        super().__init__(decoder, text_projection, layout)
        self.chroma_projection = None if chroma_projection is None else chroma_projection.eval().requires_grad_(False)
        self.chroma_length = int(chroma_length)
        self.chroma = Chroma(settings)
        self.melody_sample_rate = settings.sample_rate

    def with_melody(self, audio: torch.Tensor) -> "MelodyConditioned":
        """This stage conditioned by ``audio`` ``[B, S]`` (mono, at :attr:`melody_sample_rate`): its chroma."""
        if audio.dim() != 2 or not audio.is_floating_point() or audio.shape[-1] < 1:
            raise InputError(f"{MUSICGEN_MELODY}: the melody must be mono float audio [batch, samples], "
                             f"got {list(audio.shape)}")
        return MelodyConditioned(self, self.chroma(audio.to(self.chroma.window.device)))

    def _prefix(self, request: StageRequest, chroma: torch.Tensor | None) -> torch.Tensor:
        """``[B, chroma_length + L, H]``: the projected chroma, then the projected (masked) text states."""
        rows = request.batch_size
        device = next(self.decoder.parameters()).device
        width = self.chroma.settings.num_chroma
        if chroma is None:
            chroma = torch.zeros(rows, 1, width, device=device)
            chroma[:, :, 0] = 1
        chroma = chroma.to(device).repeat(rows // chroma.shape[0], 1, 1)
        if request.drop_conditioning is not None:  # the library's null melody: all C, as long as the melody
            drop = request.drop_conditioning.to(device, torch.bool).reshape(-1)
            null = torch.zeros_like(chroma)
            null[:, :, 0] = 1
            chroma = torch.where(drop[:, None, None], null, chroma)
        dtype = next(self.decoder.parameters()).dtype
        audio = chroma.to(dtype)
        if self.chroma_projection is not None:
            audio = self.chroma_projection(audio)
        audio = audio.repeat(1, math.ceil(self.chroma_length / audio.shape[1]), 1)[:, : self.chroma_length]
        states, _ = self._text(request)
        return audio if states is None else torch.cat([audio, states.to(audio.dtype)], dim=1)

    def _melody_run(self, ids: torch.Tensor, prefix: torch.Tensor | None, cache: Any = None) -> Any:
        return self.decoder(input_ids=ids, encoder_hidden_states=prefix, cache=cache, use_cache=cache is not None)

    @torch.no_grad()
    def forward(self, request: StageRequest, written: torch.Tensor, chroma: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing over step tokens ``[B, Q, S]``: logits ``[B, S + 1, Q, V]`` (the prefix's dropped)."""
        B = request.batch_size
        start = torch.full((B, self.num_codebooks, 1), NO_TOKEN, dtype=torch.long, device=written.device)
        ids = self._ids(torch.cat([start, written], dim=2))
        logits = self._logits(self._melody_run(ids, self._prefix(request, chroma)), B)
        return logits[:, -ids.shape[-1]:]

    @torch.no_grad()
    def prefill(self, request: StageRequest, max_new_tokens: int, chroma: torch.Tensor | None = None) -> DecodeState:
        from transformers.cache_utils import DynamicCache

        B = request.batch_size
        start = torch.full((B, self.num_codebooks, 1), NO_TOKEN, dtype=torch.long)
        output = self._melody_run(self._ids(start), self._prefix(request, chroma), DynamicCache(config=self.decoder.config))
        return DecodeState(output.cache, None, None, self._logits(output, B)[:, -1])

    @torch.no_grad()
    def step(self, state: DecodeState, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one step's tokens ``[B, Q]`` (the prefix is in the cache); logits ``[B, Q, V]``."""
        output = self._melody_run(self._ids(tokens[:, :, None]), None, state.cache)
        state.cache = output.cache
        state.logits = self._logits(output, tokens.shape[0])[:, -1]
        return state.logits


class MelodyConditioned:
    """A :class:`MusicgenMelodyStage` whose prefix holds one melody's chroma ``[B, T, C]``."""

    def __init__(self, stage: MusicgenMelodyStage, chroma: torch.Tensor):
        self.stage, self.chroma = stage, chroma
        self.layout, self.codebook_delays = stage.layout, stage.codebook_delays

    def forward(self, request: StageRequest, written: torch.Tensor) -> torch.Tensor:
        return self.stage.forward(request, written, self.chroma)

    __call__ = forward

    def prefill(self, request: StageRequest, max_new_tokens: int) -> DecodeState:
        return self.stage.prefill(request, max_new_tokens, self.chroma)

    def step(self, state: DecodeState, tokens: torch.Tensor) -> torch.Tensor:
        return self.stage.step(state, tokens)


def chroma_settings(folder: Path | None, num_chroma: int) -> ChromaSettings:
    """The checkpoint's feature extractor (``preprocessor_config.json``), else the published defaults."""
    defaults = ChromaSettings(num_chroma=num_chroma)
    file = None if folder is None else folder / "preprocessor_config.json"
    if file is None or not file.exists():
        return defaults
    try:
        saved = json.loads(file.read_text())
        settings = ChromaSettings(int(saved.get("sampling_rate", defaults.sample_rate)),
                                  int(saved.get("n_fft", defaults.n_fft)), int(saved.get("hop_length", defaults.hop)),
                                  int(saved.get("num_chroma", num_chroma)),
                                  float(saved.get("chunk_length", defaults.max_seconds)))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise WeightsError(f"{MUSICGEN_MELODY}: {file}: unreadable feature extractor config ({exc})") from None
    if settings.num_chroma != num_chroma:
        raise WeightsError(f"{MUSICGEN_MELODY}: {file} computes {settings.num_chroma} chroma bins but the decoder "
                           f"takes {num_chroma}")
    return settings


def _random_stage(config: MusicgenMelodyConfig, layout: StageLayout) -> MusicgenMelodyStage:
    from transformers import MusicgenMelodyDecoderConfig, MusicgenMelodyForCausalLM

    width = layout.conditioning.dim if layout.conditioning is not None else config.hidden_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        decoder = MusicgenMelodyForCausalLM(MusicgenMelodyDecoderConfig(**random_decoder_settings(config, layout)))
        text = projection(width, config.hidden_size)
        chroma = projection(config.num_chroma, config.hidden_size)
    return MusicgenMelodyStage(decoder, text, chroma, layout, config.chroma_length,
                               ChromaSettings(num_chroma=config.num_chroma))


def _pretrained_stage(config: MusicgenMelodyConfig, layout: StageLayout, weights: Any) -> MusicgenMelodyStage:
    from transformers import MusicgenMelodyDecoderConfig, MusicgenMelodyForCausalLM

    folder = local_folder(weights, MUSICGEN_MELODY)
    with quiet_transformers():
        decoder = build_part(folder, "decoder", lambda sub: MusicgenMelodyForCausalLM(MusicgenMelodyDecoderConfig(**sub)),
                             MUSICGEN_MELODY)
    sizes = config.decoder_config(weights) or {}
    width, hidden = sizes.get("text_width"), int(decoder.config.hidden_size)
    num_chroma, length = int(sizes.get("num_chroma") or 12), int(sizes.get("chroma_length") or 235)
    text = None
    if width is not None and width != hidden:
        text = load_part(folder, "enc_to_dec_proj", nn.Linear(int(width), hidden), MUSICGEN_MELODY)
    chroma = None
    if num_chroma != hidden:
        chroma = load_part(folder, "audio_enc_to_dec_proj", nn.Linear(num_chroma, hidden), MUSICGEN_MELODY)
    return MusicgenMelodyStage(decoder, text, chroma, layout, length, chroma_settings(folder, num_chroma))


def build_musicgen_melody(config: MusicgenMelodyConfig, context: BuildContext) -> MusicgenMelodyStage:
    layout = context.layout
    if layout is None:
        raise ValueError(f"the {MUSICGEN_MELODY} stage model needs context.layout (built for a cascade stage)")
    problems = config.check(layout, context.weights)
    if problems:
        raise WeightsError(f"{MUSICGEN_MELODY}: {problems[0]}")
    weights = context.weights
    stage = (_random_stage(config, layout) if weights is None or weights.is_random
             else _pretrained_stage(config, layout, weights))
    return stage.to(context.device)
