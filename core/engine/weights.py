"""Where a component's weights come from: ``random``, a local path, or a Hugging Face hub id.

Resolution of hub ids is lazy (only when a component is built) and tries the local cache
first, so an offline machine with cached weights works and one without gets one clear line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import attrs

from cadenza.core.errors import WeightsError
from cadenza.core.files.atomic import atomic_path
from cadenza.core.engine.checkpoint import read_config

WeightsKind = Literal["random", "path", "hub"]


@attrs.frozen
class Weights:
    """A parsed ``weights:`` value. ``base`` is the folder relative paths are resolved from."""

    source: str
    kind: WeightsKind
    path: Path | None = None

    @property
    def is_random(self) -> bool:
        return self.kind == "random"

    def local_path(self) -> Path:
        """A local file or folder holding the weights; downloads a hub id only if allowed."""
        if self.kind == "random":
            raise WeightsError("random weights have no files")
        if self.kind == "path":
            assert self.path is not None
            if not self.path.exists():
                raise WeightsError(f"weights path {str(self.path)!r} does not exist")
            return self.path
        return _resolve_hub(self.source)

    def hub_file(self, filename: str) -> Path:
        """One file of a hub repo (cache first, then download if allowed); a local path as is."""
        if self.kind != "hub":
            return self.local_path()
        return _resolve_hub(self.source, filename)

    def read_config(self) -> dict[str, Any] | None:
        """The ``config.json`` beside local weights (checked without loading them), None otherwise."""
        if self.kind != "path" or self.path is None:
            return None

        return read_config(self.path)


def parse_weights(value: str, base: Path | None = None) -> Weights:
    """Interpret a spec's ``weights:`` string.

    ``random`` -> random init; something that exists on disk, or starts with ``.``, ``/`` or
    ``~`` -> a local path (relative to ``base``, the spec's folder); else a hub id.
    """
    if not isinstance(value, str) or not value.strip():
        raise WeightsError(f"weights must be 'random', a local path or a hub id, not {value!r}")
    value = value.strip()
    if value == "random":
        return Weights(value, "random")
    expanded = Path(os.path.expanduser(value))
    if not expanded.is_absolute() and base is not None:
        candidate = base / expanded
    else:
        candidate = expanded
    looks_local = value.startswith((".", "/", "~")) or candidate.exists() or value.count("/") > 1
    if looks_local:
        return Weights(value, "path", candidate)
    return Weights(value, "hub")


def network_allowed() -> bool:
    """False when the user said the machine is offline (HF_HUB_OFFLINE or CADENZA_OFFLINE)."""
    return not any(os.environ.get(var, "").lower() in ("1", "true", "yes") for var in ("HF_HUB_OFFLINE", "CADENZA_OFFLINE"))


def fetch_url(url: str, dest: Path, what: str) -> Path:
    """A pretrained file published at ``url`` (not on the hub), cached at ``dest``.

    Used by components whose library downloads its own checkpoints (EnCodec, DAC): the cached
    file is used when present; otherwise it is downloaded (atomically, 30 s connect timeout)
    unless the machine is offline, and failure is one line saying where to put the file.
    """
    if dest.exists():
        return dest
    hint = (f"{what}: {dest} is not cached; download {url} to that path on a connected machine, "
            "or set `weights:` in the spec to a local copy")
    if not network_allowed():
        raise WeightsError(hint + " (offline: HF_HUB_OFFLINE/CADENZA_OFFLINE is set)")
    import shutil
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as response, atomic_path(dest) as tmp:
            with open(tmp, "wb") as out:
                shutil.copyfileobj(response, out)
    except Exception as exc:  # noqa: BLE001 - any network failure is the same to the user
        raise WeightsError(f"{hint} ({type(exc).__name__}: {exc})") from None
    return dest


def _resolve_hub(repo_id: str, filename: str | None = None) -> Path:
    """A hub repo folder (or one file of it): local cache first, download only when allowed.

    ``filename`` fetches that one file instead of the whole repo (some repos hold several
    multi-GB checkpoints of which a component needs one).
    """
    from huggingface_hub import hf_hub_download, snapshot_download

    def fetch(local_only: bool) -> Path:
        if filename is None:
            return Path(snapshot_download(repo_id, local_files_only=local_only))
        return Path(hf_hub_download(repo_id, filename, local_files_only=local_only))

    try:
        return fetch(local_only=True)
    except Exception:  # noqa: BLE001 - not cached (or no such repo/file): say how to get it below
        pass
    offline = not network_allowed()
    what = f"weights {repo_id!r}" + (f" (file {filename!r})" if filename else "")
    hint = (
        f"{what} are not in the local Hugging Face cache"
        + (" and the machine is offline (HF_HUB_OFFLINE/CADENZA_OFFLINE)" if offline else " and could not be downloaded")
        + f": run `cadenza download SPEC` (or `huggingface-cli download {repo_id}{' ' + filename if filename else ''}`) "
        "on a connected machine, or set `weights:` in the spec to a local " + ("copy of the file" if filename else "folder")
    )
    if offline:
        raise WeightsError(hint)
    try:
        os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
        os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
        return fetch(local_only=False)
    except Exception as exc:  # noqa: BLE001 - any network failure reads the same to the user
        raise WeightsError(f"{hint} ({type(exc).__name__})") from None


def load_failure_reason(exc: BaseException) -> str:
    """One line of why a weights file would not load: for ``torch.load(weights_only=True)``
    refusing a pickle, torch's "WeightsUnpickler error" line (its message is a page long)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    picked = next((line for line in lines if "WeightsUnpickler error" in line), lines[0])
    return picked[:300]
