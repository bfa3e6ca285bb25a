"""Checkpoints of a training run, shared by the stage, MuLan and instrument-classifier trainers.

A run folder keeps its checkpoints as::

    RUN/checkpoints/step-0000500/     one complete checkpoint, itself a weights folder:
        config.json, model.safetensors    the raw weights (a spec's ``weights:`` can name the folder)
        ema.safetensors                   the EMA's state dict, when the run keeps one
        optimizer.pt, scheduler.pt        state dicts
        scaler.pt                         fp16 gradient scaler, when there is one
        rng.pt                            ``{"processes": [...]}``: every process's RNG states
        state.json                        the step and whatever else the trainer resumes from
    RUN/checkpoints/latest            the name of the newest complete checkpoint
    RUN/log.jsonl                     one JSON object per line, each with a ``step``

The ``.pt`` files hold only tensors and plain data (python and numpy RNG states as lists), so
:func:`read_checkpoint` loads them with ``torch.load(weights_only=True)``. A checkpoint folder
is filled in a temporary folder and renamed into place (:func:`cadenza.core.files.atomic.write_folder`),
``latest`` is rewritten atomically only after that, and then all but the last
:data:`KEEP_CHECKPOINTS` are deleted: a run killed at any moment leaves a checkpoint that loads.
:func:`latest_checkpoint` trusts only complete folders (every file there, ``state.json`` naming
the folder's step), so a half-written or garbage folder is never resumed from.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import attrs

from cadenza.core.engine.weights import load_failure_reason
from cadenza.core.files.atomic import write_folder, write_text
from cadenza.core.engine.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from cadenza.core.errors import CadenzaError

CHECKPOINTS = "checkpoints"
LATEST = "latest"
LOG = "log.jsonl"
KEEP_CHECKPOINTS = 3
EMA_FILE = "ema.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
SCALER_FILE = "scaler.pt"
RNG_FILE = "rng.pt"
STATE_FILE = "state.json"  # written last inside a checkpoint folder
CHECKPOINT_FILES = (CONFIG_FILE, WEIGHTS_FILE, OPTIMIZER_FILE, SCHEDULER_FILE, RNG_FILE, STATE_FILE)


# ---- names and finding -------------------------------------------------------------------------

def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


def step_of(folder: Path) -> int | None:
    """The step a ``step-NNNNNNN`` folder name stands for; None for any other name."""
    name = folder.name
    if not name.startswith("step-") or not name[5:].isdigit():
        return None
    return int(name[5:])


def checkpoint_complete(folder: Path) -> bool:
    """Every file a checkpoint needs is there and its ``state.json`` (written last) reads."""
    if not folder.is_dir() or any(not (folder / f).exists() for f in CHECKPOINT_FILES):
        return False
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("step") == step_of(folder)


def latest_checkpoint(run: str | Path) -> Path | None:
    """The checkpoint ``latest`` names; without a pointer, the newest complete one.

    Folders the pointer does not name (a half-written one, or one written just before a
    kill moved the pointer) are never trusted over it.
    """
    root = Path(run) / CHECKPOINTS
    pointer = root / LATEST
    if pointer.exists():
        folder = root / pointer.read_text().strip()
        if checkpoint_complete(folder):
            return folder
    steps = sorted((s, p) for p in root.glob("step-*") if (s := step_of(p)) is not None and checkpoint_complete(p))
    return steps[-1][1] if steps else None


def prune_checkpoints(run: str | Path, current: int, keep: int = KEEP_CHECKPOINTS) -> None:
    """Keep the newest ``keep`` checkpoints up to ``current``; drop later (stale, from before a
    resume) ones."""
    root = Path(run) / CHECKPOINTS
    steps = sorted((s, p) for p in root.glob("step-*") if (s := step_of(p)) is not None)
    kept = [p for s, p in steps if s <= current][-keep:]
    for _, p in steps:
        if p not in kept:
            shutil.rmtree(p, ignore_errors=True)


def remove_temp_folders(run: str | Path) -> None:
    """What a run killed inside :func:`~cadenza.core.files.atomic.write_folder` leaves (never a checkpoint)."""
    for pattern in (".step-*.tmp", ".step-*.old"):
        for p in (Path(run) / CHECKPOINTS).glob(pattern):
            shutil.rmtree(p, ignore_errors=True)


# ---- writing and reading -------------------------------------------------------------------------

def _cpu(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def write_checkpoint(run: str | Path, step: int, *, config: dict[str, Any], model: dict[str, Any],
                     optimizer: dict[str, Any], scheduler: dict[str, Any], rngs: list[dict[str, Any]],
                     state: dict[str, Any], ema: dict[str, Any] | None = None, scaler: dict[str, Any] | None = None,
                     keep: int = KEEP_CHECKPOINTS) -> Path:
    """Write ``RUN/checkpoints/step-N`` atomically, then point ``latest`` at it, then prune to ``keep``.

    ``config`` is the weights folder's ``config.json``; ``model`` and ``ema`` are state dicts
    (saved as safetensors); ``optimizer``, ``scheduler``, ``scaler`` state dicts; ``rngs`` every
    process's :func:`rng_state`, in rank order; ``state`` JSON data for ``state.json`` (its
    ``step`` is ``step``). Main process only. Returns the checkpoint folder.
    """
    import torch
    from safetensors.torch import save_file

    def fill(tmp: Path) -> None:
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_file(_cpu(model), str(tmp / WEIGHTS_FILE))
        if ema is not None:
            save_file(_cpu(ema), str(tmp / EMA_FILE))
        torch.save(optimizer, tmp / OPTIMIZER_FILE)
        torch.save(scheduler, tmp / SCHEDULER_FILE)
        if scaler is not None:
            torch.save(scaler, tmp / SCALER_FILE)
        torch.save({"processes": rngs}, tmp / RNG_FILE)
        state_json = {"step": step, **{k: v for k, v in state.items() if k != "step"}}
        (tmp / STATE_FILE).write_text(json.dumps(state_json, indent=2) + "\n")

    root = Path(run) / CHECKPOINTS
    name = checkpoint_name(step)
    write_folder(root / name, fill)
    write_text(root / LATEST, name + "\n")  # the pointer moves only once the folder is whole
    prune_checkpoints(run, step, keep)
    return root / name


def _load(file: Path) -> Any:
    """One file of a checkpoint, by its kind; a damaged file is one CadenzaError line."""
    try:
        if file.suffix == ".json":
            return json.loads(file.read_text())
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(file))
        import torch

        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file is one line for the user
        raise CadenzaError(f"{file}: cannot read the checkpoint ({type(exc).__name__}: {load_failure_reason(exc)})") from None


def read_state(folder: Path) -> dict[str, Any]:
    """A checkpoint's ``state.json`` (no tensors loaded): enough to decide whether to resume."""
    state = _load(folder / STATE_FILE)
    if not isinstance(state, dict):
        raise CadenzaError(f"{folder / STATE_FILE}: cannot read the checkpoint (not a JSON object)")
    return state


@attrs.frozen
class Checkpoint:
    """Everything in a checkpoint folder, on the CPU."""

    folder: Path
    state: dict[str, Any]  # state.json
    config: dict[str, Any]  # config.json
    model: dict[str, Any]
    ema: dict[str, Any] | None
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any] | None
    rngs: list[dict[str, Any]]  # per process, in rank order


def read_checkpoint(folder: Path) -> Checkpoint:
    """Load a checkpoint :func:`write_checkpoint` wrote, on the CPU (``.pt`` files weights_only)."""

    def optional(name: str) -> Any:
        return _load(folder / name) if (folder / name).exists() else None

    return Checkpoint(folder=folder, state=read_state(folder), config=_load(folder / CONFIG_FILE),
                      model=_load(folder / WEIGHTS_FILE), ema=optional(EMA_FILE),
                      optimizer=_load(folder / OPTIMIZER_FILE), scheduler=_load(folder / SCHEDULER_FILE),
                      scaler=optional(SCALER_FILE), rngs=list(_load(folder / RNG_FILE)["processes"]))


# ---- RNG states as weights_only-loadable data -------------------------------------------------------

def _is_cuda(device: Any) -> bool:
    return device is not None and getattr(device, "type", str(device)) == "cuda"


def rng_state(device: Any = None) -> dict[str, Any]:
    """This process's RNG states: torch (and ``device``'s, when it is a GPU) as tensors, python and
    numpy as plain lists."""
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss],
                             "numpy": [str(name), keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    if _is_cuda(device):
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: Any = None) -> None:
    """Restore what :func:`rng_state` captured (the GPU's only when ``device`` is a GPU)."""
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    if "cuda" in state and _is_cuda(device):
        torch.cuda.set_rng_state(state["cuda"], device)


def gather_rng_states(accelerator: Any) -> list[dict[str, Any]]:
    """Every process's :func:`rng_state` on its device, in rank order (a collective: all processes call it)."""
    state = rng_state(accelerator.device)
    if accelerator.num_processes == 1:
        return [state]
    from accelerate.utils import gather_object

    return gather_object([state])


# ---- the run log ------------------------------------------------------------------------------------

class RunLog:
    """``RUN/log.jsonl``: one whole JSON line per write; only an ``enabled`` (main) process writes."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def rewind(self, step: int) -> None:
        """Keep the records up to ``step`` (a resumed run redoes what came after), dropping any line
        torn by a kill."""
        if not self.enabled or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(line)
        write_text(self.path, "".join(f"{line}\n" for line in kept))

    def reset(self) -> None:
        """An empty log (a fresh run)."""
        if self.enabled:
            write_text(self.path, "")

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
