"""How far a generation has come: one count of token steps across every window and stage.

Why one count: a 10 s clip of the bundled default is five windows of three stages each, fifteen
separate loops; a bar per loop restarts fifteen times and never says how long is left. The cascade
knows before the first step how many tokens each stage of each window will sample
(:func:`planned_steps`), so a display can show one bar with an ETA for the whole run.

:class:`Progress` is what the cascade calls; :class:`BarProgress` draws one tqdm bar on a terminal,
:class:`LineProgress` writes a plain line per stage where there is no terminal (a log, CI, a pipe),
and :func:`progress_display` picks between them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any, Protocol, TextIO

from tqdm import tqdm

from cadenza.core.engine.longform import Window, frames_before


class Progress(Protocol):
    """The calls a generation makes, in order: ``begin`` once, then per stage of each window
    ``stage``, ``advance`` (once per token sampled) and ``stage_done``; ``stage_done("decode", s)``
    for the codec; ``end`` last, also when the run fails."""

    def begin(self, total: int) -> None: ...

    def stage(self, label: str, steps: int) -> None: ...

    def advance(self, steps: int = 1) -> None: ...

    def stage_done(self, label: str, seconds: float) -> None: ...

    def end(self) -> None: ...


def planned_steps(plan: Sequence[Window], have: dict[str, int], rates: dict[str, float],
                  widths: Sequence[tuple[str, int]]) -> int:
    """Token steps a run will take: for each window, each stage ``(stream, codebooks)`` of
    ``widths`` samples its stream's new frames once per codebook. ``have``: frames each stream
    already holds (a prime's, a melody's); windows add frames up to their end, as the cascade's
    loop does (:func:`cadenza.core.engine.longform.window_frames`)."""
    have = dict(have)
    total = 0
    for window in plan:
        new = {stream: max(0, frames_before(window.end, rate) - have.get(stream, 0)) for stream, rate in rates.items()}
        total += sum(new[stream] * codebooks for stream, codebooks in widths)
        for stream, count in new.items():
            have[stream] = have.get(stream, 0) + count
    return total


class BarProgress:
    """One tqdm bar for the whole run, its label the stage at work (``coarse 2/5``)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.bar: Any = None

    def begin(self, total: int) -> None:
        self.bar = tqdm(total=total, unit="tok", file=self.stream, leave=False, dynamic_ncols=True)

    def stage(self, label: str, steps: int) -> None:
        if self.bar is not None:
            self.bar.set_description(label, refresh=False)

    def advance(self, steps: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(steps)

    def stage_done(self, label: str, seconds: float) -> None:
        pass

    def end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LineProgress:
    """A plain line per finished stage, with the share done and the time left, for output that
    is not a terminal (where a bar's carriage returns would fill a log with noise)."""

    def __init__(self, stream: TextIO | None = None, clock: Any = time.monotonic):
        self.stream = stream or sys.stderr
        self.clock = clock
        self.total = self.done = self.stage_steps = 0
        self.started = 0.0

    def begin(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, self.clock()

    def stage(self, label: str, steps: int) -> None:
        self.stage_steps = steps

    def advance(self, steps: int = 1) -> None:
        self.done += steps

    def stage_done(self, label: str, seconds: float) -> None:
        if label == "decode":
            line = f"decode: {seconds:.1f} s"
        else:
            share = self.done / self.total if self.total else 1.0
            elapsed = self.clock() - self.started
            left = elapsed * (1 - share) / share if share > 0 else float("nan")
            line = (f"stage {label}: {self.stage_steps} tokens in {seconds:.1f} s "
                    f"({share:.0%} of the run, about {left:.0f} s left)")
        print(f"cadenza: {line}", file=self.stream, flush=True)

    def end(self) -> None:
        pass


def progress_display(stream: TextIO | None = None) -> BarProgress | LineProgress:
    """A bar where ``stream`` (default stderr) is a terminal, plain lines otherwise."""
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    return BarProgress(stream) if isatty is not None and isatty() else LineProgress(stream)
