"""Component weights on disk: a folder with ``config.json`` and ``model.safetensors``.

Safetensors holds only tensors, so loading a checkpoint can never run code; the config is
plain JSON. Saving goes through :mod:`cadenza.core.files.atomic`, so a crash never leaves a folder
that fails to load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cadenza.core.files.atomic import write_folder
from cadenza.core.errors import WeightsError
from cadenza.core.spec.params import ParamsError, saved_config
from cadenza.core.spec.params import unstructure_config

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


def read_json_object(file: Path) -> dict[str, Any]:
    """A JSON file holding an object (a ``config.json``); a one-line WeightsError naming the file
    when it is unreadable, not JSON, or not an object. Needs no torch."""
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{file}: unreadable config: {exc}") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{file}: expected a JSON object")
    return data


def read_config(path: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint folder (or beside its weights file), checked to be an object."""
    path = Path(path)
    file = (path if path.is_dir() else path.parent) / CONFIG_FILE
    if not file.exists():
        raise WeightsError(f"{file}: missing (a weights folder holds {CONFIG_FILE} and {WEIGHTS_FILE})")
    return read_json_object(file)


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, "torch.Tensor"]]:
    """Read ``(config, state)`` from a checkpoint folder (or its safetensors file).

    Every failure is a :class:`WeightsError` naming the file: missing, unreadable, corrupt.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    weights = path if path.is_file() else path / WEIGHTS_FILE
    config = read_config(path)
    if not weights.exists():
        raise WeightsError(f"{weights}: missing (a weights folder holds {CONFIG_FILE} and {WEIGHTS_FILE})")
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


def build_module(make: Any, config: Any, context: Any, component: str,
                 check_saved: Any = None) -> "torch.nn.Module":
    """Build ``make(config)`` as ``component``: seeded random init, or a checkpoint's weights.

    The one way every built-in component turns ``weights:`` into a module, offered to plugin
    authors too. Random init runs under a forked RNG seeded with ``config.seed``: the same seed
    gives the same weights and the caller's global RNG is left untouched. A checkpoint's own
    ``config.json`` decides the architecture (the tensors were trained for that shape; the
    spec still picks the config class's ``USAGE_FIELDS``);
    ``check_saved(saved_config, path)`` may raise :class:`WeightsError` for further checks
    (a stage model compares the saved layout with the spec's). The module is returned in
    eval mode on ``context.device``.
    """
    import torch

    state = path = None
    if not context.weights.is_random:
        path = context.weights.local_path()
        saved, state = load_checkpoint(path)
        if saved.get("component") != component:
            raise WeightsError(f"{path}: a checkpoint of {saved.get('component')!r}, not {component!r}")
        try:
            config = saved_config(config, saved.get("config", {}))
        except ParamsError as exc:
            raise WeightsError(f"{path}: config.json does not fit {component!r}: {exc}") from None
        if check_saved is not None:
            check_saved(saved, path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        module = make(config)
    if state is not None:
        load_state_into(module, state, str(path))
    return module.to(context.device).eval()


def save_module(module: "torch.nn.Module", folder: str | Path, component: str, **extra: Any) -> Path:
    """Write ``module`` (which has a ``.config``) as a folder :func:`build_module` loads back."""
    config = {"component": component, "config": unstructure_config(module.config), **extra}
    return save_checkpoint(folder, module.state_dict(), config)
