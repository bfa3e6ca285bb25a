"""The ``dac`` tokenizer: Descript Audio Codec (``pip install cadenza[dac]``), registration only.

Light on purpose (no torch, no ``dac`` import: ``import dac`` alone costs ~2.5 s); the model
lives in :mod:`.dac_codec`. The published models' sizes are tabled here (from the package's
``conf/final/*.yml``) so ``describe()`` reports sample rate, frame rate and codebooks without
loading weights; building checks the checkpoint's own metadata against this table.

``weights:`` is one of
  ``pretrained`` (default) - the file ``dac.utils.download(model, bitrate)`` fetches, in its
      cache folder ``~/.cache/descript/dac/weights_<model>_<bitrate>_<tag>.pth``;
  a local path - such a ``.pth`` file (or a folder holding one), or a Cadenza checkpoint
      folder written by ``save_pretrained`` (its ``config.json`` decides the architecture);
  ``random`` - a seeded random ``dac.DAC`` sized by the architecture fields (tests, plumbing).
"""

import math
from pathlib import Path
from typing import Literal

import attrs

from cadenza.core.errors import WeightsError
from cadenza.core.hookspecs import hookimpl
from cadenza.core.spec.params import config_for_weights
from cadenza.core.types import TokenizerInfo
from cadenza.core.spec.validators import optional_at_least

DAC = "dac"

# (model, bitrate) -> the published model's DAC(...) arguments and the release tag
# dac.utils.download picks for "latest" (dac.utils.__MODEL_LATEST_TAGS__).
MODELS = {
    ("16khz", "8kbps"): {"tag": "0.0.5", "sample_rate": 16000, "encoder_dim": 64, "encoder_rates": (2, 4, 5, 8),
                         "decoder_dim": 1536, "decoder_rates": (8, 5, 4, 2), "latent_dim": None,
                         "n_codebooks": 12, "codebook_size": 1024, "codebook_dim": 8},
    ("24khz", "8kbps"): {"tag": "0.0.4", "sample_rate": 24000, "encoder_dim": 64, "encoder_rates": (2, 4, 5, 8),
                         "decoder_dim": 1536, "decoder_rates": (8, 5, 4, 2), "latent_dim": None,
                         "n_codebooks": 32, "codebook_size": 1024, "codebook_dim": 8},
    ("44khz", "8kbps"): {"tag": "0.0.1", "sample_rate": 44100, "encoder_dim": 64, "encoder_rates": (2, 4, 8, 8),
                         "decoder_dim": 1536, "decoder_rates": (8, 8, 4, 2), "latent_dim": None,
                         "n_codebooks": 9, "codebook_size": 1024, "codebook_dim": 8},
    ("44khz", "16kbps"): {"tag": "1.0.0", "sample_rate": 44100, "encoder_dim": 64, "encoder_rates": (2, 4, 8, 8),
                          "decoder_dim": 1536, "decoder_rates": (8, 8, 4, 2), "latent_dim": 128,
                          "n_codebooks": 18, "codebook_size": 1024, "codebook_dim": 8},
}
ARCHITECTURE = ("encoder_dim", "encoder_rates", "decoder_dim", "decoder_rates", "latent_dim",
                "n_codebooks", "codebook_size", "codebook_dim")


def _rates(instance, attribute, value) -> None:
    if value is not None and (not value or any(r < 1 for r in value)):
        raise ValueError(f"{attribute.name} must be a non-empty list of integers >= 1, got {list(value)!r}")


def _bitrate(instance, attribute, value) -> None:
    if (instance.model, value) not in MODELS:
        have = ", ".join(b for m, b in MODELS if m == instance.model)
        raise ValueError(f"bitrate {value!r} is not published for model {instance.model!r} (available: {have})")


def _optional_tuple(value):
    return None if value is None else tuple(value)


@attrs.frozen
class DacConfig:
    """A DAC model; ``num_codebooks`` of its codebooks are used (default: all).

    The architecture fields (``encoder_dim`` ... ``codebook_dim``) size a ``weights: random``
    model; left out (None) they are the published model's.
    """

    model: Literal["16khz", "24khz", "44khz"] = attrs.field(
        default="44khz", validator=attrs.validators.in_(("16khz", "24khz", "44khz")))
    bitrate: Literal["8kbps", "16kbps"] = attrs.field(default="8kbps", validator=_bitrate)
    num_codebooks: int | None = attrs.field(default=None, validator=optional_at_least(1))
    encoder_dim: int | None = attrs.field(default=None, validator=optional_at_least(1))
    encoder_rates: tuple[int, ...] | None = attrs.field(default=None, converter=_optional_tuple, validator=_rates)
    decoder_dim: int | None = attrs.field(default=None, validator=optional_at_least(1))
    decoder_rates: tuple[int, ...] | None = attrs.field(default=None, converter=_optional_tuple, validator=_rates)
    latent_dim: int | None = attrs.field(default=None, validator=optional_at_least(1))
    n_codebooks: int | None = attrs.field(default=None, validator=optional_at_least(1))
    codebook_size: int | None = attrs.field(default=None, validator=optional_at_least(2))
    codebook_dim: int | None = attrs.field(default=None, validator=optional_at_least(1))
    seed: int = attrs.field(default=0, validator=optional_at_least(0))

    def __attrs_post_init__(self) -> None:
        # Cross-field checks; each message starts with the field it concerns.
        a = self.architecture()
        if math.prod(a["encoder_rates"]) != math.prod(a["decoder_rates"]):
            raise ValueError(f"decoder_rates must multiply to the encoder hop ({math.prod(a['encoder_rates'])}), "
                             f"got {list(a['decoder_rates'])!r}")
        if a["decoder_dim"] < 2 ** len(a["decoder_rates"]):
            raise ValueError(f"decoder_dim must be >= 2**len(decoder_rates) ({2 ** len(a['decoder_rates'])}), "
                             f"got {a['decoder_dim']}")
        if self.num_codebooks is not None and self.num_codebooks > a["n_codebooks"]:
            raise ValueError(f"num_codebooks must be <= the model's {a['n_codebooks']} codebooks, "
                             f"got {self.num_codebooks}")

    @property
    def published(self) -> dict:
        return MODELS[(self.model, self.bitrate)]

    def custom_architecture(self) -> list[str]:
        return [k for k in ARCHITECTURE if getattr(self, k) is not None]

    def architecture(self) -> dict:
        """``dac.DAC(**...)`` arguments: the published model's, with any architecture field set here."""
        out = {k: self.published[k] for k in ARCHITECTURE}
        out.update({k: getattr(self, k) for k in self.custom_architecture()})
        out["sample_rate"] = self.published["sample_rate"]
        return out

    def info(self) -> TokenizerInfo:
        a = self.architecture()
        used = self.num_codebooks or a["n_codebooks"]
        return TokenizerInfo(a["sample_rate"], a["sample_rate"] / math.prod(a["encoder_rates"]), used,
                             a["codebook_size"], 1)

    def describe(self, weights) -> TokenizerInfo:
        return self.resolved(weights).info()

    def resolved(self, weights) -> "DacConfig":
        """The config that will be built for ``weights`` (a Cadenza checkpoint's own, if any)."""
        source = weights_source(weights)
        if source == "checkpoint":
            return config_for_weights(self, weights)
        if source != "random" and self.custom_architecture():
            raise WeightsError(f"params {', '.join(self.custom_architecture())} size a random DAC; weights "
                               f"{weights.source!r} bring their own architecture (drop them, or use weights: random)")
        return self


def weights_source(weights) -> Literal["random", "pretrained", "checkpoint", "release"]:
    """Classify ``weights:``; a hub id other than ``pretrained`` is a one-line error."""
    if weights.is_random:
        return "random"
    if weights.kind == "hub":
        if weights.source == "pretrained":
            return "pretrained"
        raise WeightsError(f"weights {weights.source!r}: hub ids are not loaded by 'dac'; use 'pretrained' "
                           "(the dac package's release file), 'random', or a local path (a DAC .pth file, "
                           "or a folder saved by Cadenza)")
    path = Path(weights.path)
    cadenza = path.suffix == ".safetensors" or (path.is_dir() and (path / "config.json").exists())
    return "checkpoint" if cadenza else "release"


@hookimpl
def register_tokenizers(register):
    register(DAC, "cadenza.plugins.dac.model:build", config=DacConfig, default_weights="pretrained",
             description="Descript Audio Codec 16/24/44.1 kHz mono, 9-32 codebooks of 1024 (descript-audio-codec)")
