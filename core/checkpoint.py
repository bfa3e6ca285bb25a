"""Component weights on disk: a folder with ``config.json`` and ``model.safetensors``.

Safetensors holds only tensors, so loading a checkpoint can never run code; the config is
plain JSON. Saving goes through :mod:`cadenza.core.atomic`, so a crash never leaves a folder
that fails to load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cadenza.core.atomic import write_folder
from cadenza.core.errors import WeightsError

if TYPE_CHECKING:
    import torch

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_checkpoint(folder: str | Path, state: dict[str, "torch.Tensor"], config: dict[str, Any]) -> Path:
    """Write ``config`` and ``state`` (a state dict) to ``folder`` atomically."""
    from safetensors.torch import save_file

    def fill(tmp: Path) -> None:
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
        save_file(tensors, str(tmp / WEIGHTS_FILE))

    write_folder(folder, fill)
    return Path(folder)


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, "torch.Tensor"]]:
    """Read ``(config, state)`` from a checkpoint folder (or its safetensors file).

    Every failure is a :class:`WeightsError` naming the file: missing, unreadable, corrupt.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    weights = path if path.is_file() else folder / WEIGHTS_FILE
    config_file = folder / CONFIG_FILE
    for file in (config_file, weights):
        if not file.exists():
            raise WeightsError(f"{file}: missing (a weights folder holds {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{config_file}: unreadable config: {exc}") from None
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{weights}: not a readable safetensors file ({exc})") from None
    return config, state


def load_state_into(module: "torch.nn.Module", state: dict[str, "torch.Tensor"], where: str) -> None:
    """``module.load_state_dict`` with a one-line error naming missing/unexpected/mis-shaped keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:5])}")
        if shapes:
            parts.append(
                "shape mismatch " + ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shapes[:5])
            )
        raise WeightsError(f"{where}: weights do not fit the configured model ({'; '.join(parts)})")
    module.load_state_dict(state)
