"""Token streams and stage layouts: which tokens a stage reads and which it writes.

A cascade has two kinds of token stream: ``semantic`` (one codebook of semantic ids) and
``acoustic`` (the codec's codebooks). A stage reads zero or more slices of them and writes
exactly one slice, e.g. MusicLM's coarse stage reads ``semantic`` and writes
``acoustic[0:4]``. The layout is derived from the spec and the components' infos before any
model is built, and saved with a stage's weights so a checkpoint can be checked against a spec.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

import attrs

from cadenza.core.types import ConditioningInfo

STREAMS: tuple[str, ...] = ("semantic", "acoustic")
ROLES: tuple[str, ...] = ("semantic", "coarse", "fine", "acoustic")
CONDITIONING_MODES: tuple[str, ...] = ("prefix", "cross", "none")
ConditioningMode = Literal["prefix", "cross", "none"]

_SLICE = re.compile(r"^\s*(?P<stream>[a-z_]+)\s*(\[\s*(?P<start>\d*)\s*:\s*(?P<stop>\d*)\s*\])?\s*$")


@attrs.frozen
class StreamRef:
    """A parsed stream reference from a spec: ``semantic``, ``acoustic``, ``acoustic[0:4]``.

    ``stop`` None means "to the last codebook"; it is resolved against the tokenizer.
    """

    stream: str
    start: int = 0
    stop: int | None = None

    @classmethod
    def parse(cls, text: str) -> "StreamRef":
        """Parse a reference; raises ValueError with the allowed forms."""
        match = _SLICE.match(text) if isinstance(text, str) else None
        if not match or match["stream"] not in STREAMS:
            raise ValueError(
                f"{text!r} is not a stream: expected one of {', '.join(STREAMS)}, "
                "optionally with a codebook range such as acoustic[0:4]"
            )
        start = int(match["start"]) if match["start"] else 0
        stop = int(match["stop"]) if match["stop"] else None
        if stop is not None and stop <= start:
            raise ValueError(f"{text!r} is an empty codebook range")
        return cls(match["stream"], start, stop)

    def __str__(self) -> str:
        if self.stream == "semantic" and self.start == 0 and self.stop in (None, 1):
            return "semantic"
        return f"{self.stream}[{self.start}:{'' if self.stop is None else self.stop}]"


@attrs.frozen
class StreamSlice:
    """A resolved range of codebooks ``[start, stop)`` of one stream, with its vocabulary."""

    stream: str
    start: int
    stop: int
    codebook_size: int
    frame_rate: float

    @property
    def num_codebooks(self) -> int:
        return self.stop - self.start

    def __str__(self) -> str:
        if self.stream == "semantic":
            return "semantic"
        return f"{self.stream}[{self.start}:{self.stop}]"

    def num_frames(self, seconds: float) -> int:
        """Frames covering ``seconds`` of audio: rounded up (the cascade trims the decoded
        audio), so a frame rate like 86.13 Hz never yields a clip shorter than asked."""
        return max(1, math.ceil(seconds * self.frame_rate - 1e-9))


@attrs.frozen
class StageLayout:
    """Everything a stage model needs to know about its inputs and outputs to be built.

    Stage-model plugins size their embeddings and output heads from this, never from
    hand-copied numbers in the spec, so that a codec swap resizes every stage consistently.
    """

    role: str
    reads: tuple[StreamSlice, ...]
    writes: StreamSlice
    conditioning: ConditioningInfo | None = None
    conditioning_mode: ConditioningMode = "none"

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self, recurse=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StageLayout":
        cond = data.get("conditioning")
        return cls(
            role=data["role"],
            reads=tuple(StreamSlice(**r) for r in data.get("reads", ())),
            writes=StreamSlice(**data["writes"]),
            conditioning=ConditioningInfo(**cond) if cond else None,
            conditioning_mode=data.get("conditioning_mode", "none"),
        )

    def differences(self, other: "StageLayout") -> list[str]:
        """Human-readable differences between two layouts (empty when they match)."""
        out = []
        mine, theirs = self.to_dict(), other.to_dict()
        for key in mine:
            if mine[key] != theirs.get(key):
                out.append(f"{key}: {theirs.get(key)!r} in the weights, {mine[key]!r} in the spec")
        return out
