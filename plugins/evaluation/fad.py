"""Fréchet Audio Distance with a pluggable embedding.

FAD (Kilgour et al., 2019) fits a Gaussian to the embeddings of a set of generated clips and
another to those of a reference set, and reports the Fréchet distance between the two:
``|mu_g - mu_r|^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2))``. Lower is better; it compares
*distributions*, so it is a set metric (``scope = "set"``), called once per set.

The number depends on the embedding, so results are only comparable under the same one. The
``embedding`` setting picks it:

* ``mel-stats`` - needs no weights: per 1 s window (0.5 s hop) at 16 kHz, the mean and
  standard deviation of 64 log-mel bands (128 numbers). It sees timbre, loudness and spectral
  balance, not musical structure; use it to compare codecs and pipelines offline.
* ``conditioner`` - the pipeline's own conditioner (given as the ``conditioner`` input), when
  it embeds audio (MuLan, CLAP): one embedding per clip.
* ``KIND:NAME`` or ``KIND:NAME@WEIGHTS`` - any registered component that embeds audio, built
  with its default parameters: a conditioner with ``audio_embedding`` / ``embed_audio`` (one
  vector per clip), or a semantic tokenizer with ``features`` (one vector per frame), e.g.
  ``conditioner:clap@/models/clap.pt`` or ``semantic_tokenizer:music-features``.

With fewer embeddings than dimensions the covariances are singular; a small ridge keeps the
matrix square root defined, and ``fad_embeddings`` is reported so such results can be read
with care.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cadenza.core.audio.dsp import mel_spectrogram
from cadenza.core.audio.io import resample
from cadenza.core.errors import InputError
from cadenza.core.components import BuildContext
from cadenza.core.engine.weights import parse_weights
from cadenza.registry import get_registry

MEL_RATE = 16000
MEL_BANDS = 64
MEL_WINDOW_S, MEL_HOP_S = 1.0, 0.5
RIDGE = 1e-6


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to embeddings ``a`` ``[N, D]`` and ``b`` ``[M, D]``."""
    from scipy import linalg

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InputError(f"embeddings must be [N, D] with one D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise InputError(f"FAD needs at least 2 embeddings per set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    ridge = RIDGE * np.eye(len(cov_a))
    root = np.real(linalg.sqrtm((cov_a + ridge) @ (cov_b + ridge)))
    distance = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(root))
    return max(distance, 0.0)  # rounding can leave a tiny negative for identical sets


def _mono(clip: Any, what: str) -> torch.Tensor:
    x = clip.detach().to("cpu") if isinstance(clip, torch.Tensor) else torch.from_numpy(np.asarray(clip))
    x = x.float()
    if x.dim() == 2:
        x = x.mean(0)
    if x.dim() != 1:
        raise InputError(f"{what}: each clip must be [channels, samples], got shape {tuple(x.shape)}")
    return x


class MelStatsEmbedding:
    """Mean and spread of log-mel bands per second of audio: a weight-free embedding."""

    name = "mel-stats"

    def __call__(self, clip: Any, sample_rate: int) -> np.ndarray:
        x = resample(_mono(clip, "audio")[None], sample_rate, MEL_RATE)[0].double()
        n_fft, hop = 1024, 256
        mel = torch.log10(mel_spectrogram(x, MEL_RATE, n_fft, hop, MEL_BANDS).clamp_min(1e-10))
        per_s = MEL_RATE / hop
        width, step = max(1, round(MEL_WINDOW_S * per_s)), max(1, round(MEL_HOP_S * per_s))
        starts = range(0, max(1, mel.shape[1] - width + 1), step)
        return np.stack([torch.cat([mel[:, s:s + width].mean(1), mel[:, s:s + width].std(1, unbiased=False)]).numpy()
                         for s in starts])


class ComponentEmbedding:
    """A built component that embeds audio: ``audio_embedding``/``embed_audio`` (per clip) or ``features`` (per frame)."""

    def __init__(self, component: Any, name: str):
        self.component, self.name = component, name
        if not any(hasattr(component, m) for m in ("audio_embedding", "embed_audio", "features")):
            raise InputError(f"FAD embedding {name!r} cannot embed audio (it has no audio_embedding, embed_audio "
                             "or features method)")

    def __call__(self, clip: Any, sample_rate: int) -> np.ndarray:
        audio = _mono(clip, "audio")[None, None]
        with torch.inference_mode():
            if hasattr(self.component, "audio_embedding"):
                out = self.component.audio_embedding(audio, sample_rate)
            elif hasattr(self.component, "embed_audio"):
                out = self.component.embed_audio(audio, sample_rate).values
                if not out.is_floating_point():
                    raise InputError(f"FAD embedding {self.name!r} gives discrete tokens, not vectors")
            else:
                out = self.component.features(audio, sample_rate)
        return out.reshape(-1, out.shape[-1]).double().cpu().numpy()


def component_embedding(spec: str, registry: Any = None) -> ComponentEmbedding:
    """``KIND:NAME[@WEIGHTS]`` -> that component, built with its default params."""
    kind, sep, rest = spec.partition(":")
    name, _, weights = rest.partition("@")
    if not sep or not name:
        raise InputError(f"FAD embedding {spec!r}: expected 'mel-stats', 'conditioner' or KIND:NAME[@WEIGHTS]")
    if registry is None:
        registry = get_registry()
    entry = registry.get(kind, name)
    context = BuildContext(weights=parse_weights(weights or entry.default_weights))
    return ComponentEmbedding(entry.build(entry.config(), context), spec)


class FadMetric:
    """``fad(audio_clips, sample_rate=SR, reference=reference_clips, reference_rate=RR) -> {"fad": ...}``.

    ``audio_clips`` and ``reference``: sequences of ``[C, S]`` clips (or ``[N, C, S]`` arrays).
    """

    scope = "set"

    def __init__(self, config: Any, registry: Any = None):
        self.config = config
        self._registry = registry
        self._embedding: Any = None

    def embedding(self, conditioner: Any = None) -> Any:
        choice = self.config.embedding
        if choice == "conditioner":
            if conditioner is None:
                raise InputError("FAD embedding 'conditioner' needs the pipeline's conditioner (input `conditioner`)")
            return ComponentEmbedding(conditioner, "conditioner")
        if self._embedding is None:
            self._embedding = MelStatsEmbedding() if choice == "mel-stats" else component_embedding(choice, self._registry)
        return self._embedding

    def embed(self, clips: Sequence[Any], sample_rate: int, conditioner: Any = None) -> np.ndarray:
        """All clips' embeddings stacked ``[N, D]``."""
        embed = self.embedding(conditioner)
        if len(clips) == 0:
            raise InputError("FAD needs at least one clip in each set")
        return np.concatenate([embed(clip, sample_rate) for clip in clips])

    def __call__(self, audio: Sequence[Any], sample_rate: int | None = None, reference: Sequence[Any] | None = None,
                 reference_rate: int | None = None, conditioner: Any = None, **inputs: Any) -> dict[str, float]:
        if reference is None:
            raise InputError("FAD needs `reference` clips to compare with")
        rate = int(sample_rate or self.config.sample_rate)
        generated = self.embed(audio, rate, conditioner)
        ref = self.embed(reference, int(reference_rate or rate), conditioner)
        return {"fad": frechet_distance(generated, ref), "fad_embeddings": float(len(generated)),
                "fad_reference_embeddings": float(len(ref))}


def build_fad(config: Any, context: Any = None) -> FadMetric:
    return FadMetric(config)
