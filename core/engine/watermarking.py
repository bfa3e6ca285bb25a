"""The last step of every generation: the watermark that says the audio was generated.

The cascade marks what it returns (one pass, long-form windows joined, a continuation, every
row of a batch), so no path can write an unmarked file by forgetting a step; ``--no-watermark``
(``generate(watermark=False)``) is the one way out. The payload names the pipeline (32 bits of
the spec's name), so a detected mark says which pipeline made the clip; the sidecar records the
watermark, its key id (never the key) and the payload.
"""

from __future__ import annotations

import zlib
from typing import Any


def pipeline_payload(spec_name: str) -> int:
    """32 bits that name the pipeline: the CRC-32 of its spec name."""
    return zlib.crc32(spec_name.encode("utf-8")) & 0xFFFFFFFF


def mark_batch(watermark: Any, audio: Any, sample_rate: int, payload: int) -> Any:
    """Every row of ``[B, C, S]`` audio marked, and kept within [-1, 1]."""
    import torch

    marked = torch.stack([watermark.embed(row, sample_rate, payload) for row in audio])
    return torch.clamp(marked.to(audio.dtype), -1.0, 1.0)


def describe(name: str, watermark: Any, payload: int) -> dict[str, Any]:
    """What a sidecar records of the mark: which watermark, which key (by id), which payload."""
    return {"name": name, "key_id": getattr(watermark, "key_id", None), "payload": f"0x{payload:08x}"}
