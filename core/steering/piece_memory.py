"""Piece memory: the later windows of a long piece keep to its opening.

Long-form generation continues each window from only the tail of the one before (see
:mod:`cadenza.core.engine.longform`), so nothing holds the piece to its opening. Each window can move
the key a little, and over minutes it wanders. ``benchmarks/longform_stability.py`` measured
the default going from G major to C minor after a minute.

Piece memory holds two things to the piece's opening: the prime, and from the second window
on, the first window too.

* **Its tokens.** While a window's tokens are sampled, every token id that the piece's opening
  did not use, in that stream and codebook, gets ``-strength`` added to its logit. The opening's
  own vocabulary stays free. With the music-features semantic tokenizer the tokens carry pitch
  classes and beat phase; with a codec they carry spectra. So this holds the material without
  dictating the order of the tokens. It needs no training and works with any tokenizer, because
  it only looks at token ids.
* **Its sound, in the conditioning.** The stages were trained on the conditioner's *audio*
  embeddings, as in MusicLM. When the conditioner can embed audio (MuLan, CLAP) and conditions
  with one pooled vector, the later windows are conditioned on the text's vector plus the
  opening's audio embedding, normalised: the text as the opening realised it.

The two were measured (180 s of the default, seed 0). With the token penalty alone the
semantic stream kept its key but the acoustic stages still drifted: the audio's correlation
with G major went from 0.68 to 0.45, and with C minor from 0.46 to 0.66. With the opening's
conditioning alone the key fell apart. With both, G major stayed ahead of C minor in every
30 s segment.

The price is movement. Over 180 s and 3 seeds (``benchmarks/longform_stability.py``), strength 4
held the key of the pitch profile in every 30 s segment, against 78% without memory. But the
sound's change from one half second to the next fell from 0.105 to 0.059 after the first
segment; the first 10 s score 0.178. So memory is off unless asked for.

Why a vocabulary and not token frequencies: a cache language model (Kuhn & De Mori 1990) adds
``strength * log p_memory``, with a unigram or bigram model of the piece. That was measured and
rejected. On the default at strength 1 to 4 (120 s, seed 1), the semantic stage collapsed onto
one to three tokens: a frozen drone that "holds" its key by playing nothing. Favouring the
frequent tokens feeds on itself; a plain yes/no on each token does not.

A first window without a prime has no opening, so it is generated unchanged. Under
classifier-free guidance both halves of the doubled batch get the same penalty, so the guided
logits get it once; the null condition stays null.
"""

from __future__ import annotations

from typing import Any

import torch

from cadenza.core.steering.logit_bias import BiasedModel, check_scale
from cadenza.core.types import Conditioning


def check_strength(strength: float | None) -> float | None:
    """None or 0 (off), or a finite logit penalty > 0."""
    return check_scale(strength, "hold", "a logit penalty")


def unused_tokens(tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``[B, Q, N]`` written tokens -> ``[B, Q, V]`` float on their device: 1 where codebook ``q``
    of row ``b`` never used id ``v`` in ``tokens``, else 0."""
    batch, width, _ = tokens.shape
    used = torch.zeros(batch, width, vocab_size, dtype=torch.bool, device=tokens.device)
    used.scatter_(2, tokens.long(), True)
    return (~used).float()


def memory_model(model: Any, history: torch.Tensor, strength: float) -> BiasedModel:
    """``model`` with ``-strength`` on every id its codebook has not used in ``history``
    ``[B, Q, N]`` (written position ``p`` is codebook ``p % Q``)."""
    width = model.layout.writes.num_codebooks
    penalty = -strength * unused_tokens(history, model.layout.writes.codebook_size)
    return BiasedModel(model, lambda position: penalty[:, position % width])


def hears_openings(conditioner: Any, text: Conditioning | None) -> bool:
    """Whether ``text`` can be mixed with an opening's sound: the conditioner embeds audio and
    conditions with one pooled vector (token ids and sequences cannot be mixed this way)."""
    return text is not None and text.kind == "pooled" and callable(getattr(conditioner, "embed_audio", None))


def opening_conditioning(conditioner: Any, text: Conditioning | None, audio: torch.Tensor,
                         sample_rate: int) -> Conditioning | None:
    """The text's pooled conditioning plus the audio embedding of the opening ``[B, C, S]``,
    normalised; ``text`` unchanged when they cannot be mixed (:func:`hears_openings`)."""
    from torch.nn import functional as F

    if not hears_openings(conditioner, text):
        return text
    heard = conditioner.embed_audio(audio, sample_rate)
    if heard.kind != "pooled" or heard.values.shape != text.values.shape:
        return text
    return Conditioning("pooled", F.normalize(text.values.float() + heard.values.to(text.values).float(), dim=-1)
                        .to(text.values.dtype))
