"""The ``encodec`` tokenizer: Meta's EnCodec (``pip install cadenza[encodec]``), registration only.

This module must stay light (no torch, no ``encodec`` or ``transformers`` import) because
discovery imports it; the models live in :mod:`.model` (the ``encodec`` package) and
:mod:`.hf_model` (``transformers``). Everything the spec validator needs - sample rate, frame
rate, number of codebooks for a bandwidth - is computed here (and in :mod:`.hf_format`, from a
checkpoint's ``config.json``) with the same formulas the libraries use, so ``cadenza validate``
sizes the stages right without loading 90 MB of weights.

``weights:`` is one of
  ``pretrained`` (default) - the library's official checkpoint for ``model``, cached exactly
      where the ``encodec`` package caches it (``<torch hub dir>/checkpoints/<file>``);
  a hub id - a transformers-format EnCodec: ``facebook/encodec_24khz`` / ``_32khz`` / ``_48khz``,
      or a MusicGen checkpoint (``facebook/musicgen-small`` ...), whose codec is read alone;
      found in the Hugging Face cache first (see :mod:`.hf_format` for the layouts);
  a local path - a ``.th`` state dict as the library publishes it (or a folder holding one),
      a Cadenza checkpoint folder written by ``save_pretrained`` (its ``config.json`` rules),
      or a transformers-format folder (``EncodecModel.save_pretrained``, or a MusicGen folder);
  ``random`` - a seeded random EnCodec built from the architecture fields below (tests, plumbing).

Transformers-format weights bring their own sample rate, channels and bandwidths
(``config.json``): ``model`` is not used for them, and ``bandwidth`` left out means 6 kbps where
the checkpoint offers it, else its highest (the 32 kHz MusicGen codec offers only 2.2 kbps:
4 codebooks of 2048).

The 48 kHz model (stereo) normalises its input and returns one scale per 1 s segment; codes
cannot carry scales, so Cadenza encodes a whole clip in one segment, normalised to unit RMS as
the library does per segment, and decodes to a fixed RMS level ``rms``. See
:mod:`.model` for why.
"""

import math
from pathlib import Path
from typing import Literal

import attrs

from cadenza.core.components import import_object
from cadenza.core.errors import WeightsError
from cadenza.core.hookspecs import hookimpl
from cadenza.core.spec.params import config_for_weights
from cadenza.core.types import TokenizerInfo
from cadenza.core.spec.validators import at_least, positive
from cadenza.plugins.encodec import hf_format

ENCODEC = "encodec"
CODEBOOK_SIZE = 1024  # bins of every EnCodec quantizer: 10 bits per code

# Per model: what the library's ``encodec_model_24khz`` / ``encodec_model_48khz`` build.
MODELS = {
    "24khz": {"sample_rate": 24000, "channels": 1, "bandwidths": (1.5, 3.0, 6.0, 12.0, 24.0),
              "causal": True, "norm": "weight_norm", "normalize": False,
              "checkpoint": "encodec_24khz-d7cc33bc.th"},
    "48khz": {"sample_rate": 48000, "channels": 2, "bandwidths": (3.0, 6.0, 12.0, 24.0),
              "causal": False, "norm": "time_group_norm", "normalize": True,
              "checkpoint": "encodec_48khz-7e698e3e.th"},
}
ROOT_URL = "https://dl.fbaipublicfiles.com/encodec/v0/"  # encodec.model.ROOT_URL
# SEANet sizes of the published models (the library's defaults); other values need random weights.
ARCHITECTURE = {"n_filters": 32, "dimension": 128, "n_residual_layers": 1, "ratios": (8, 5, 4, 2), "lstm": 2}


def _bandwidth(instance, attribute, value) -> None:
    if value is None:  # the default: 6 kbps (a transformers-format checkpoint may pick its own)
        return
    allowed = MODELS[instance.model]["bandwidths"]
    if value not in allowed:
        raise ValueError(f"bandwidth must be one of {', '.join(f'{b:g}' for b in allowed)} (kbps) "
                         f"for model {instance.model!r}, got {value!r} (leave it out to use a transformers-format "
                         "checkpoint's own)")


def _ratios(instance, attribute, value) -> None:
    rate, hop = MODELS[instance.model]["sample_rate"], math.prod(value) if value else 0
    if not value or any(r < 1 for r in value) or rate % hop:
        raise ValueError(f"ratios must be integers >= 1 whose product divides the sample rate ({rate}), "
                         f"got {list(value)!r}")
    if _total_codebooks(instance.model, rate / hop) < 1:
        raise ValueError(f"ratios give {rate / hop:g} frames/s, too many for one codebook at "
                         f"{max(MODELS[instance.model]['bandwidths']):g} kbps; use a larger product")


def _total_codebooks(model: str, frame_rate: float) -> int:
    """Codebooks the quantizer holds: enough for the highest bandwidth (``EncodecModel._get_model``)."""
    return int(1000 * max(MODELS[model]["bandwidths"]) // (frame_rate * 10))


def codebooks_for(bandwidth: float, frame_rate: float) -> int:
    """Codebooks used at ``bandwidth`` kbps: ``ResidualVectorQuantizer.get_num_quantizers_for_bandwidth``."""
    return int(max(1, math.floor(bandwidth / (math.log2(CODEBOOK_SIZE) * frame_rate / 1000))))


@attrs.frozen
class EncodecConfig:
    """EnCodec at ``bandwidth`` kbps (default 6); the architecture fields apply only to ``weights: random``."""

    model: Literal["24khz", "48khz"] = attrs.field(default="24khz", validator=attrs.validators.in_(tuple(MODELS)))
    bandwidth: float | None = attrs.field(default=None, validator=_bandwidth)
    rms: float = attrs.field(default=0.15, validator=positive)  # 48khz: RMS level of decoded audio
    n_filters: int = attrs.field(default=32, validator=at_least(1))
    dimension: int = attrs.field(default=128, validator=at_least(1))
    n_residual_layers: int = attrs.field(default=1, validator=at_least(1))
    ratios: tuple[int, ...] = attrs.field(default=(8, 5, 4, 2), converter=tuple, validator=_ratios)
    lstm: int = attrs.field(default=2, validator=at_least(0))
    seed: int = attrs.field(default=0, validator=at_least(0))

    @property
    def target_bandwidth(self) -> float:
        """The bandwidth the library models run at: ``bandwidth``, or 6 kbps when left out."""
        return hf_format.DEFAULT_BANDWIDTH if self.bandwidth is None else self.bandwidth

    @property
    def sample_rate(self) -> int:
        return MODELS[self.model]["sample_rate"]

    @property
    def hop(self) -> int:
        return math.prod(self.ratios)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def total_codebooks(self) -> int:
        return _total_codebooks(self.model, self.frame_rate)

    def custom_architecture(self) -> list[str]:
        return [k for k, v in ARCHITECTURE.items() if getattr(self, k) != v]

    def info(self) -> TokenizerInfo:
        return TokenizerInfo(self.sample_rate, self.frame_rate, codebooks_for(self.target_bandwidth, self.frame_rate),
                             CODEBOOK_SIZE, MODELS[self.model]["channels"])

    def describe(self, weights) -> TokenizerInfo:
        config = self.resolved(weights)
        if weights_source(weights) == "transformers":
            found = hf_format.checkpoint_config(weights)
            return hf_format.describe_checkpoint(found, self.bandwidth, weights.source)[0]
        return config.info()

    def resolved(self, weights) -> "EncodecConfig":
        """The config that will actually be built for ``weights`` (a checkpoint's own, if any)."""
        source = weights_source(weights)
        if source == "checkpoint":
            return config_for_weights(self, weights)
        if source != "random" and self.custom_architecture():
            what = "bring their own architecture (config.json)" if source == "transformers" else \
                "have the published architecture"
            raise WeightsError(f"params {', '.join(self.custom_architecture())} size a random EnCodec; "
                               f"weights {weights.source!r} {what} (drop them, or use weights: random)")
        return self


def weights_source(weights) -> Literal["random", "pretrained", "transformers", "checkpoint", "state_dict"]:
    """Classify a ``weights:`` value: which loader reads it (reads at most a ``config.json``)."""
    if weights.is_random:
        return "random"
    if weights.kind == "hub":
        return "pretrained" if weights.source == "pretrained" else "transformers"
    path = Path(weights.path)
    if (path.is_dir() or path.suffix == ".safetensors") and \
            hf_format.folder_layout(path if path.is_dir() else path.parent) is not None:
        return "transformers"
    return "checkpoint" if is_cadenza_checkpoint(path) else "state_dict"


def is_cadenza_checkpoint(path: Path) -> bool:
    """A folder with ``config.json`` (or its ``.safetensors`` file), as ``save_module`` writes."""
    return path.suffix == ".safetensors" or (path.is_dir() and (path / "config.json").exists())


# Which module builds the codec depends on the weights' format, and each imports only its own
# library: the encodec package (``.model``) or transformers (``.hf_model``, ~2.5 s to import), so
# loading one format never pays for the other. Named as strings, resolved as the registry resolves
# a factory, so this module stays light.
BUILDERS = {"transformers": "cadenza.plugins.encodec.hf_model:build"}
LIBRARY_BUILDER = "cadenza.plugins.encodec.model:build"


def build(config: EncodecConfig, context):
    """The factory: the builder for the format of ``context.weights``."""
    return import_object(BUILDERS.get(weights_source(context.weights), LIBRARY_BUILDER))(config, context)


@hookimpl
def register_tokenizers(register):
    register(ENCODEC, build, config=EncodecConfig, default_weights="pretrained",
             description="Meta EnCodec 24 kHz mono / 48 kHz stereo at 1.5-24 kbps (encodec package), or a "
                         "transformers EncodecModel (facebook/encodec_*, MusicGen's 32 kHz codec)")
