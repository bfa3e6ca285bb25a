"""A Hugging Face cache laid out as ``huggingface_hub`` lays out a download, for offline tests.

``models--ORG--NAME/snapshots/<revision>/<files>`` plus ``refs/main`` naming the revision: the
path a user's cached download takes, so a test that loads ``ORG/NAME`` by hub id with
``HF_HUB_OFFLINE=1`` exercises the same lookup as a real machine (imported by name: pytest puts
tests/ on the path).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cached_snapshot(cache: Path, repo_id: str, save: Callable[[Path], None]) -> Path:
    """Write a snapshot of ``repo_id`` into ``cache`` with ``save(folder)``; returns the folder."""
    revision = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    folder = repo / "snapshots" / revision
    folder.mkdir(parents=True, exist_ok=True)
    save(folder)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return folder


def use_cache(monkeypatch, cache: Path) -> None:
    """Point huggingface_hub (and Cadenza) at ``cache``, offline."""
    import huggingface_hub.constants

    monkeypatch.setenv("CADENZA_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def generated_codes(model, inputs: dict, frames: int, guidance: float) -> Any:
    """A transformers MusicGen(-melody) model's ``generate(do_sample=False)`` codes ``[B, Q, frames]``,
    caught on their way into the library's own codec: the reference the stage tests compare with."""
    caught = {}
    decode = model.audio_encoder.decode

    def spy(codes, *args, **kwargs):
        caught["codes"] = codes
        return decode(codes, *args, **kwargs)

    model.audio_encoder.decode = spy
    try:
        delays = model.decoder.config.num_codebooks - 1  # codebook k lags k steps
        model.generate(**inputs, do_sample=False, guidance_scale=guidance, max_new_tokens=frames + delays)
    finally:
        model.audio_encoder.decode = decode
    return caught["codes"][0]
