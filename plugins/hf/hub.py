"""Helpers shared by the Hugging Face plugins (``hf_text``, ``hf_semantic``).

The first two are used while *describing* a component (spec validation), so they read JSON
only: no torch, no transformers. :func:`quiet_transformers` and :func:`local_folder` are
used when a component is built.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cadenza.core.engine.checkpoint import read_json_object
from cadenza.core.errors import WeightsError
from cadenza.core.engine.weights import Weights


def hf_config(weights: Weights, known: Mapping[str, Mapping[str, Any]] | None = None,
              subfolders: tuple[str, ...] = ()) -> dict | None:
    """The ``config.json`` of Hugging Face weights, read without loading them.

    A local folder must have one (in the folder or one of ``subfolders``). A hub id is looked up
    in the local Hugging Face cache, then in ``known`` (the architecture of the default ids,
    so an offline machine can validate a spec before downloading). None for random weights
    or an uncached hub id nobody described.
    """
    if weights.is_random:
        return None
    if weights.kind == "path":
        folder = Path(weights.path)
        folder = folder if folder.is_dir() else folder.parent
        for sub in ("",) + subfolders:
            file = folder / sub / "config.json"
            if file.exists():
                return read_json_object(file)
        raise WeightsError(f"{folder}: no config.json (expected a Hugging Face model folder, "
                           "as saved by save_pretrained or downloaded from the hub)")
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(weights.source, "config.json")
    except Exception:  # noqa: BLE001 - an invalid id or an unreadable cache: fall back to `known`
        cached = None
    if isinstance(cached, str):
        return read_json_object(Path(cached))
    found = (known or {}).get(weights.source)
    return dict(found) if found is not None else None


def local_folder(weights: Weights, component: str) -> Path:
    """The folder ``from_pretrained`` loads: a local path, or a hub id from cache (or download).

    Failures are one-line :class:`WeightsError` s naming the component, the id and the fix.
    """
    try:
        path = weights.local_path()
    except WeightsError as exc:
        raise WeightsError(f"{component}: {exc}") from None
    return path if path.is_dir() else path.parent


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' loading chatter (unused-weight warnings, progress bars) for a block.

    Loading ``T5EncoderModel`` from a full T5 checkpoint, for instance, warns about every
    decoder tensor it skips; that is expected here and would bury real messages.
    """
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def load_pretrained(component: str, folder: Path, load: Any) -> Any:
    """``load(folder)`` (a ``from_pretrained`` call) with its failures as one-line WeightsErrors."""
    try:
        with quiet_transformers():
            return load(folder)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{component}: cannot load weights from {folder}: {first}") from None
