"""Text-audio similarity: how close a clip is to its prompt in a joint audio-text model's space.

The score MusicLM reranks candidates with (its "MuLan score") and the "CLAP score" text-to-music
papers report: the cosine between the audio embedding of the clip and the text embedding of the
prompt, both from the pipeline's own conditioner when it is a joint model (MuLan, CLAP).
Higher is better; it means something only when that conditioner's weights are trained.
"""

from __future__ import annotations

from typing import Any

import torch

from cadenza.core.errors import InputError


def _embeddings(conditioner: Any, audio: torch.Tensor, sample_rate: int, prompts: list[str]) -> tuple:
    """Continuous (unquantised) audio and text embeddings ``[B, D]`` each, L2-normalised."""
    if hasattr(conditioner, "audio_embedding") and hasattr(conditioner, "text_embedding"):
        return conditioner.audio_embedding(audio, sample_rate), conditioner.text_embedding(prompts)
    info = getattr(conditioner, "info", None)
    if hasattr(conditioner, "embed_audio") and getattr(info, "kind", None) == "pooled":
        return conditioner.embed_audio(audio, sample_rate).values, conditioner.embed_text(prompts).values
    raise InputError(f"the conditioner ({type(conditioner).__name__}) does not embed audio and text in one space: "
                     "text-similarity needs a joint model such as mulan or clap")


class TextSimilarity:
    """``metric(audio, sample_rate=SR, prompt=..., conditioner=...) -> {"text_similarity": cosine}``.

    ``audio`` ``[C, S]`` with one prompt, or ``[B, C, S]`` with one prompt per clip (or one for all).
    """

    def __init__(self, config: Any):
        self.config = config

    def __call__(self, audio: Any, sample_rate: int | None = None, prompt: Any = None, conditioner: Any = None,
                 **inputs: Any) -> dict[str, Any]:
        if conditioner is None:
            raise InputError("text-similarity needs the pipeline's `conditioner` (a joint audio-text model)")
        if prompt is None:
            raise InputError("text-similarity needs the `prompt` the audio was made from")
        x = audio if isinstance(audio, torch.Tensor) else torch.as_tensor(audio)
        single = x.dim() == 2
        x = x[None] if single else x
        if x.dim() != 3:
            raise InputError(f"audio must be [C, S] or [B, C, S], got shape {tuple(x.shape)}")
        prompts = [prompt] * len(x) if isinstance(prompt, str) else list(prompt)
        if len(prompts) != len(x):
            raise InputError(f"got {len(prompts)} prompts for {len(x)} clips")
        with torch.inference_mode():
            audio_emb, text_emb = _embeddings(conditioner, x.float(), int(sample_rate or self.config.sample_rate), prompts)
            cosine = torch.nn.functional.cosine_similarity(audio_emb.float(), text_emb.float().to(audio_emb.device), dim=-1)
        values = [float(c) for c in cosine.cpu()]
        return {"text_similarity": values[0] if single else values}


def build_text_similarity(config: Any, context: Any = None) -> TextSimilarity:
    return TextSimilarity(config)
