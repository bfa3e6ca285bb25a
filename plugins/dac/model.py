"""``dac``: the Descript Audio Codec model (``dac.DAC``) behind Cadenza's Tokenizer contract.

Encoding is DAC's own ``preprocess`` (right-pad to a whole hop) + ``encode`` with
``n_quantizers = num_codebooks``; decoding is ``quantizer.from_codes`` + ``decode``. DAC's
transposed convolutions lose ``2*ceil(s/2) - s`` samples per odd stride (8 samples for the
16/24 kHz models), so decoded audio is zero-padded (or trimmed) to exactly ``frames * hop``
samples: the length the cascade and the frame rate promise.

Levels: ``DAC.compress`` loudness-normalises to -16 LUFS and stores the input loudness in its
file; codes alone cannot carry it, so Cadenza uses the plain ``encode``/``decode`` path (as
DAC's ``forward`` does): audio keeps its own level, which for music is near DAC's training level.

Release files are read with ``torch.load(weights_only=True)`` and the model is built as
``dac.DAC(**metadata["kwargs"])``. The library's ``DAC.load`` first tries ``torch.package``
and then an unrestricted ``torch.load``, both of which can execute code from the file.
"""

from __future__ import annotations

import inspect
import math
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

with warnings.catch_warnings():  # dac.nn.layers decorates Snake with torch.jit.script, deprecated in torch 2.10+
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated", category=DeprecationWarning)
    import dac

from cadenza.core.audio.io import to_channels
from cadenza.core.engine.checkpoint import build_module, save_module
from cadenza.core.errors import InputError, WeightsError
from cadenza.core.engine.weights import fetch_url, load_failure_reason
from cadenza.plugins.dac import DAC, DacConfig, weights_source

# dac.utils.__MODEL_URLS__, keyed as dac.utils.download looks them up. The package's own table is
# preferred (the URL it would download); this copy is the fallback if that private name moves.
_URLS = {
    ("44khz", "0.0.1", "8kbps"): "https://github.com/descriptinc/descript-audio-codec/releases/download/0.0.1/weights.pth",
    ("24khz", "0.0.4", "8kbps"): "https://github.com/descriptinc/descript-audio-codec/releases/download/0.0.4/weights_24khz.pth",
    ("16khz", "0.0.5", "8kbps"): "https://github.com/descriptinc/descript-audio-codec/releases/download/0.0.5/weights_16khz.pth",
    ("44khz", "1.0.0", "16kbps"): "https://github.com/descriptinc/descript-audio-codec/releases/download/1.0.0/weights_44khz_16kbps.pth",
}


def release_url(config: DacConfig) -> str:
    key = (config.model, config.published["tag"], config.bitrate)
    try:
        import dac.utils

        return dac.utils.__MODEL_URLS__[key]
    except Exception:  # noqa: BLE001 - a private name; fall back to the copy above
        return _URLS[key]


def cached_release(config: DacConfig) -> Path:
    """Where ``dac.utils.download`` keeps the file (same folder and name)."""
    tag = config.published["tag"]
    return Path.home() / ".cache" / "descript" / "dac" / f"weights_{config.model}_{config.bitrate}_{tag}.pth"


def make_dac(arguments: dict) -> dac.DAC:
    with warnings.catch_warnings():  # DAC uses torch's deprecated (still working) weight_norm
        warnings.filterwarnings("ignore", message=".*weight_norm.*deprecated", category=FutureWarning)
        return dac.DAC(**{k: (list(v) if isinstance(v, tuple) else v) for k, v in arguments.items()})


class DacTokenizer(nn.Module):
    """``encode`` ``[B, C, S]`` -> ``[B, Q, ceil(S / hop)]``; ``decode`` -> ``[B, 1, T * hop]``."""

    def __init__(self, config: DacConfig, model: dac.DAC | None = None):
        super().__init__()
        self.config = config
        self.info = config.info()
        self.model = model if model is not None else make_dac(config.architecture())
        self.hop = int(self.model.hop_length)

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() != 3:
            raise InputError(f"dac encodes audio [batch, channels, samples], got shape {tuple(audio.shape)}")
        x = self.model.preprocess(to_channels(audio.float(), 1), self.info.sample_rate)
        _, codes, *_ = self.model.encode(x, n_quantizers=self.info.num_codebooks)
        return codes

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        q, k = self.info.num_codebooks, self.info.codebook_size
        if codes.dim() != 3 or codes.shape[1] != q:
            raise InputError(f"dac decodes codes [batch, {q}, frames], got shape {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= k):
            raise InputError(f"dac codes must be in [0, {k}), got {int(codes.min())}..{int(codes.max())}")
        z = self.model.quantizer.from_codes(codes.long())[0]
        audio = self.model.decode(z)
        length = codes.shape[-1] * self.hop
        return F.pad(audio, (0, length - audio.shape[-1])) if audio.shape[-1] < length else audio[..., :length]

    def save_pretrained(self, folder):
        """A Cadenza checkpoint folder (config.json + safetensors) that ``weights:`` can point at."""
        return save_module(self, folder, DAC)


def release_file(config: DacConfig, weights) -> Path:
    """The DAC ``.pth`` for ``weights`` (``pretrained``: cached, or downloaded if allowed)."""
    if weights_source(weights) == "pretrained":
        return fetch_url(release_url(config), cached_release(config), f"DAC {config.model} {config.bitrate} weights")
    path = weights.local_path()
    if path.is_dir():
        found = sorted(path.glob("*.pth"))
        if len(found) != 1:
            raise WeightsError(f"{path}: expected exactly one DAC .pth file in this folder, found {len(found) or 'none'}")
        path = found[0]
    return path


def load_release(path: Path) -> tuple[dict, dict]:
    """``(DAC kwargs, state dict)`` from a release file, loaded without unpickling code."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        kwargs, state = dict(data["metadata"]["kwargs"]), data["state_dict"]
    except Exception as exc:  # noqa: BLE001 - corrupt, not a DAC file, or pickles more than tensors
        first = load_failure_reason(exc)
        raise WeightsError(f"{path}: not a loadable DAC weights file ({type(exc).__name__}: {first})") from None
    accepted = inspect.signature(dac.DAC).parameters
    return {k: v for k, v in kwargs.items() if k in accepted}, state


def _load_strict_enough(model: nn.Module, state: dict, where: str) -> None:
    """Every parameter the model has must come from the file with its shape; extra keys are ignored
    (``DAC.load`` ignores them too)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or shapes:
        detail = (f"missing {', '.join(missing[:5])}" if missing else "") + \
                 ("; " if missing and shapes else "") + \
                 (f"shape mismatch {', '.join(shapes[:5])}" if shapes else "")
        raise WeightsError(f"{where}: weights do not fit the DAC built from its metadata ({detail})")
    model.load_state_dict({k: state[k] for k in own})


def build(config: DacConfig, context) -> DacTokenizer:
    """Random or Cadenza-checkpoint weights go through ``build_module``; release files load here."""
    if weights_source(context.weights) in ("random", "checkpoint"):
        return build_module(DacTokenizer, config, context, DAC)
    config = config.resolved(context.weights)
    file = release_file(config, context.weights)
    kwargs, state = load_release(file)
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten; keep the caller's RNG as it was
        model = make_dac(kwargs)
    expected, rate, hop = config.info(), int(model.sample_rate), int(model.hop_length)
    if (rate != expected.sample_rate or not math.isclose(rate / hop, expected.frame_rate)
            or model.n_codebooks < expected.num_codebooks or model.codebook_size != expected.codebook_size):
        raise WeightsError(
            f"{file}: a DAC at {rate} Hz, {rate / hop:g} frames/s, {model.n_codebooks} codebooks of "
            f"{model.codebook_size}, not the {expected.sample_rate} Hz, {expected.frame_rate:g} frames/s, "
            f"{expected.num_codebooks} x {expected.codebook_size} of model {config.model!r} ({config.bitrate}); "
            "set params.model/bitrate to match the file")
    _load_strict_enough(model, state, str(file))
    return DacTokenizer(config, model).to(context.device).eval()
