"""The ``dac`` tokenizer: Descript Audio Codec (``pip install cadenza[dac]``), registration only.

Light on purpose (no torch, no ``dac`` or ``transformers`` import: ``import dac`` alone costs
~2.5 s, and so does transformers); the models live in :mod:`.model` (the ``dac`` package) and
:mod:`.hf_model` (``transformers.DacModel``). The published models' sizes are tabled here (from
the package's ``conf/final/*.yml``) so ``describe()`` reports sample rate, frame rate and
codebooks without loading weights; the checkpoint's own metadata (a release file's, or a
transformers ``config.json``) is checked against this table.

``weights:`` is one of
  ``pretrained`` (default) - the file ``dac.utils.download(model, bitrate)`` fetches, in its
      cache folder ``~/.cache/descript/dac/weights_<model>_<bitrate>_<tag>.pth``;
  a hub id - a transformers-format DAC (``descript/dac_16khz``, ``_24khz``, ``_44khz``), found
      in the Hugging Face cache first, downloaded only when the machine is online;
  a local path - such a ``.pth`` file (or a folder holding one), a Cadenza checkpoint folder
      written by ``save_pretrained`` (its ``config.json`` decides the architecture), or a folder
      written by ``transformers.DacModel.save_pretrained``;
  ``random`` - a seeded random ``dac.DAC`` sized by the architecture fields (tests, plumbing).

``model`` and ``bitrate`` say which published DAC the spec expects, whatever the format of the
weights: a transformers checkpoint must be that model (its sample rate, hop and codebook size,
and at least the codebooks used), as a release file must. So switching a spec between
``weights: pretrained`` and ``weights: descript/dac_24khz`` (with ``model: 24khz``) changes
nothing else in it, and a mismatch is found by ``cadenza validate`` from ``config.json`` alone.
"""

import math
from pathlib import Path
from typing import Literal

import attrs

from cadenza.core.components import import_object
from cadenza.core.engine.checkpoint import read_json_object
from cadenza.core.errors import WeightsError
from cadenza.core.hookspecs import hookimpl
from cadenza.core.spec.params import config_for_weights
from cadenza.core.types import TokenizerInfo
from cadenza.core.spec.validators import optional_at_least
from cadenza.plugins.hf.hub import hf_config

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
# The transformers-format releases (transformers' DacModel conversion of the 8 kbps release files).
HUB_MODELS = {"descript/dac_16khz": ("16khz", "8kbps"), "descript/dac_24khz": ("24khz", "8kbps"),
              "descript/dac_44khz": ("44khz", "8kbps")}
# transformers' DacConfig defaults, for fields a config.json leaves out.
HF_DEFAULTS = {"sampling_rate": 16000, "downsampling_ratios": [2, 4, 8, 8], "n_codebooks": 9, "codebook_size": 1024}


def _hf_fields(published: dict) -> dict:
    """A published model as transformers' ``DacConfig`` names its fields (the part describe reads)."""
    return {"model_type": "dac", "sampling_rate": published["sample_rate"],
            "downsampling_ratios": list(published["encoder_rates"]), "n_codebooks": published["n_codebooks"],
            "codebook_size": published["codebook_size"], "codebook_dim": published["codebook_dim"],
            "encoder_hidden_size": published["encoder_dim"], "decoder_hidden_size": published["decoder_dim"]}


# So an offline machine validates a spec naming a hub id before it is downloaded.
KNOWN_HF = {hub_id: _hf_fields(MODELS[key]) for hub_id, key in HUB_MODELS.items()}

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
        config = self.resolved(weights)
        if weights_source(weights) == "transformers":
            config.check_transformers(transformers_config(weights), weights.source)
        return config.info()

    def check_transformers(self, hf: dict, source: str) -> None:
        """A transformers ``DacConfig`` (as a dict) must be the published model ``model``/``bitrate`` name."""
        try:
            rate = int(hf.get("sampling_rate") or HF_DEFAULTS["sampling_rate"])
            hop = math.prod(int(r) for r in hf.get("downsampling_ratios") or HF_DEFAULTS["downsampling_ratios"])
            have = int(hf.get("n_codebooks") or HF_DEFAULTS["n_codebooks"])
            bins = int(hf.get("codebook_size") or HF_DEFAULTS["codebook_size"])
        except (TypeError, ValueError) as exc:
            raise WeightsError(f"weights {source!r}: unreadable DAC config.json ({exc})") from None
        expected, a = self.info(), self.architecture()
        shape = (rate, hop, bins)
        if shape == (expected.sample_rate, math.prod(a["encoder_rates"]), expected.codebook_size):
            if have >= expected.num_codebooks:
                return
            raise WeightsError(f"weights {source!r} hold {have} codebooks, fewer than the {expected.num_codebooks} "
                               f"used; set num_codebooks to at most {have}")
        fits = [f"model: {m}, bitrate: {b}" for (m, b), p in MODELS.items()
                if (p["sample_rate"], math.prod(p["encoder_rates"]), p["codebook_size"]) == shape]
        raise WeightsError(
            f"weights {source!r}: a DAC at {rate} Hz, {rate / hop:g} frames/s, {have} codebooks of {bins}, not the "
            f"{expected.sample_rate} Hz, {expected.frame_rate:g} frames/s, {expected.num_codebooks} x "
            f"{expected.codebook_size} of model {self.model!r} ({self.bitrate}); "
            + (f"set params {fits[0]}" if fits else "no published DAC has that shape"))

    def resolved(self, weights) -> "DacConfig":
        """The config that will be built for ``weights`` (a Cadenza checkpoint's own, if any)."""
        source = weights_source(weights)
        if source == "checkpoint":
            return config_for_weights(self, weights)
        if source != "random" and self.custom_architecture():
            raise WeightsError(f"params {', '.join(self.custom_architecture())} size a random DAC; weights "
                               f"{weights.source!r} bring their own architecture (drop them, or use weights: random)")
        return self


def weights_source(weights) -> Literal["random", "pretrained", "transformers", "checkpoint", "release"]:
    """Classify ``weights:``: which loader reads it (reads at most a ``config.json``)."""
    if weights.is_random:
        return "random"
    if weights.kind == "hub":
        return "pretrained" if weights.source == "pretrained" else "transformers"
    path = Path(weights.path)
    config = (path if path.is_dir() else path.parent) / "config.json"
    if (path.is_dir() or path.suffix == ".safetensors") and config.exists():
        saved = read_json_object(config)
        # transformers names its model_type; a Cadenza checkpoint names its component
        return "transformers" if "model_type" in saved and "component" not in saved else "checkpoint"
    return "checkpoint" if path.suffix == ".safetensors" else "release"


def transformers_config(weights) -> dict:
    """The ``config.json`` of transformers-format DAC weights, without loading them (cache, then
    :data:`KNOWN_HF`); one line naming the id when neither has it."""
    config = hf_config(weights, KNOWN_HF)
    if config is None:
        raise WeightsError(f"weights {weights.source!r}: not in the local Hugging Face cache, so what it holds is "
                           f"unknown; run `huggingface-cli download {weights.source}` on a connected machine, or set "
                           "`weights:` to a local folder saved by DacModel.save_pretrained (or to 'pretrained', the "
                           "dac package's release file)")
    if config.get("model_type") != "dac":
        raise WeightsError(f"weights {weights.source!r} are a transformers {config.get('model_type')!r} checkpoint, "
                           "not a DAC (expected model_type 'dac')")
    return config


# Which module builds the codec depends on the weights' format, and each imports only its own
# library: the dac package (``.model``, ~2.5 s to import) or transformers (``.hf_model``), so
# loading one format never pays for the other. Named as strings, resolved as the registry
# resolves a factory, so this module stays light.
BUILDERS = {"transformers": "cadenza.plugins.dac.hf_model:build"}
LIBRARY_BUILDER = "cadenza.plugins.dac.model:build"


def build(config: DacConfig, context):
    """The factory: the builder for the format of ``context.weights``."""
    return import_object(BUILDERS.get(weights_source(context.weights), LIBRARY_BUILDER))(config, context)


@hookimpl
def register_tokenizers(register):
    register(DAC, build, config=DacConfig, default_weights="pretrained",
             description="Descript Audio Codec 16/24/44.1 kHz mono, 9-32 codebooks of 1024 (descript-audio-codec, "
                         "or transformers DacModel: descript/dac_*)")
