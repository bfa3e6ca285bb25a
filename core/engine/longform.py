"""Long-form generation: the window schedule and the chunked codec decode.

A stage model is trained on clips of a few seconds; asking it for minutes in one pass puts it
far outside what it has seen and makes its KV cache grow with the length. Long-form
generation therefore runs the cascade window by window. Every window is at most ``window``
seconds long and starts ``overlap`` seconds before the end of what already exists: the
tokens of those seconds (every stream, so every stage) are the *written prefix* of the new
window, exactly like the prime of a continuation, and only the tokens after them are new.
So each window continues the previous one at token level, at every stage, and there is no
seam to hide; memory depends on the window, not on the total length (the first window after
a long prime is longer: it hears up to :data:`PRIME_CONTEXT` seconds of the prime).

The decoded audio is assembled the same way: the acoustic codes are decoded in chunks of
about one window, each with a margin of context frames on both sides that is decoded and
dropped, so a convolutional codec gives the same samples as one whole decode.

Everything here is plain arithmetic on seconds and frames (and one torch loop), so the
schedule can be tested without any model.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from cadenza.core.errors import InputError

DEFAULT_WINDOW = 10.0  # seconds: the `cadenza prepare --clip-seconds` default stages are trained on
DECODE_MARGIN = 1.0  # seconds of codes decoded (and dropped) on each side of a decode chunk
PRIME_CONTEXT = DEFAULT_WINDOW  # seconds of a long prime the first window continuing it hears (see plan_windows)


@attrs.frozen
class Window:
    """One window of a generation, in seconds from the start of the output (prime included).

    ``start``: where the window's context begins; ``new``: where its new part begins (the end
    of what existed before it); ``end``: where it ends. ``new - start`` seconds of existing
    tokens are its written prefix.
    """

    index: int
    start: float
    new: float
    end: float

    @property
    def context(self) -> float:
        return self.new - self.start

    def to_dict(self) -> dict[str, float]:
        return {"start": round(self.start, 6), "new": round(self.new, 6), "end": round(self.end, 6)}


def default_window(spec_seconds: float, spec_window: float | None = None) -> float:
    """The window when none is given: the spec's ``output.window``; without one 10 s, or the
    spec's ``output.seconds`` if that is longer (one pass)."""
    if spec_window is not None:
        return float(spec_window)
    return max(DEFAULT_WINDOW, float(spec_seconds))


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{what} must be a positive number of seconds, got {value!r}")
    return float(value)


def check_window(window: float | None, overlap: float | None, default: float = DEFAULT_WINDOW) -> tuple[float, float]:
    """``(window, overlap)`` with defaults filled in: ``default`` seconds, half of it overlapping."""
    window = _positive(default if window is None else window, "window")
    if overlap is None:
        return window, window / 2
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not math.isfinite(overlap) or overlap < 0:
        raise InputError(f"overlap must be a number of seconds >= 0, got {overlap!r}")
    if overlap >= window:
        raise InputError(f"overlap ({overlap:g} s) must be shorter than the window ({window:g} s)")
    return window, float(overlap)


def resolve_window(window: float | None, overlap: float | None, output: Any) -> tuple[float, float]:
    """``(window, overlap)`` of a run of a spec whose ``OutputSpec`` is ``output``, given these
    overrides: without either, the spec's window and overlap; otherwise (and where the spec has
    none) half the window overlaps."""
    if window is None and overlap is None:
        overlap = output.overlap
    return check_window(window, overlap, default_window(output.seconds, output.window))


def plan_windows(seconds: float, window: float, overlap: float, prime: float = 0.0) -> list[Window]:
    """The windows that take ``prime`` existing seconds to ``seconds``.

    While what exists is shorter than a window, the next window starts at 0 and uses all of
    it as context (so a continuation that fits in one window is one pass over the whole
    prime). After that each window starts ``overlap`` seconds before the end of what exists
    and is ``window`` long (the last one stops at ``seconds``).

    One exception: the first window continuing a prime longer than a window hears the last
    :data:`PRIME_CONTEXT` seconds of it (all of a shorter one, never less than ``overlap``)
    and adds the usual ``window - overlap``. Why: a stage takes its sound from its context and
    its conditioning, and the conditioning is the text, so from ``overlap`` seconds of someone
    else's recording it went to its own level for the prompt; the seam's jump followed the gap
    between the prime's level and the pipeline's own (correlation 0.71 below 300 Hz, 0.81 above
    2 kHz). ``benchmarks/continuation_seam.py`` measured the bundled default (2.5 s windows, 0.5 s
    overlap) continuing 30 primes of 4 s: the mean size of the band-energy jump across the
    boundary fell from 5.7 / 3.2 / 5.5 dB (below 300 Hz / 300-2000 Hz / above 2 kHz) to
    3.3 / 2.4 / 4.3 dB, against 2.4 / 1.4 / 1.6 dB for the recordings themselves at the same point
    (8 s primes: 5.6 / 4.3 / 4.2 to 3.7 / 2.7 / 3.2 dB), and the new part kept moving. Tried on
    the same 30 primes and rejected: a first window of 2 s of prime and 0.5 s new (6.0 / 3.1 /
    4.7 dB: the next window hears none of the prime), and conditioning on the text mixed with
    the prime's MuLan audio embedding, as piece memory does (5.5 / 3.5 / 4.8 dB). One pass over
    prime and continuation did as well on those 3 s (3.7 / 2.3 / 4.0 dB), but a pass longer than
    the spec's window stills the music (docs/benchmarks/movement_over_time.md); after this first
    window the windows are the spec's again. The cap keeps that window's memory bounded: 10 s, the
    clip length stages are prepared on by default.
    """
    if not 0 <= prime < seconds:
        raise ValueError(f"need 0 <= prime < seconds, got prime={prime}, seconds={seconds}")
    if not 0 <= overlap < window:
        raise ValueError(f"need 0 <= overlap < window, got overlap={overlap}, window={window}")
    windows, done = [], prime
    while done < seconds - 1e-9:
        if done >= window and not windows:  # continuing a long prime: hear as much of it as PRIME_CONTEXT
            start = max(0.0, done - max(overlap, PRIME_CONTEXT))
            end = min(done + window - overlap, seconds)
        else:
            start = 0.0 if done < window else done - overlap
            end = min(start + window, seconds)
        windows.append(Window(len(windows), start, done, end))
        done = end
    return windows


def frames_before(seconds: float, frame_rate: float) -> int:
    """Frames of a stream at ``frame_rate`` that cover ``seconds`` (rounded up, like a stage's
    ``num_frames``): the length a stream has once ``seconds`` of it exist."""
    return max(0, math.ceil(seconds * frame_rate - 1e-9))


def window_frames(window: Window, have: int, frame_rate: float) -> tuple[int, int]:
    """``(context_start, new_frames)`` of one stream that already has ``have`` frames.

    The context is frames ``context_start..have`` (the window's start rounded to the nearest
    frame, so streams at different rates stay aligned); ``new_frames`` more take the stream
    to ``window.end``.
    """
    start = min(max(0, round(window.start * frame_rate)), have)
    return start, max(0, frames_before(window.end, frame_rate) - have)


def decode_chunked(tokenizer: Any, codes: Any, frame_rate: float, sample_rate: int, chunk_frames: int,
                   margin_frames: int) -> Any:
    """Decode ``[B, Q, T]`` codes to ``[B, C, S]`` float audio on the CPU, ``chunk_frames`` at a time.

    Each chunk is decoded with up to ``margin_frames`` of neighbouring codes on each side and
    only its own samples are kept, so peak memory follows the chunk, not ``T``. Codes that fit
    in one chunk (plus margins) are decoded in one call, exactly as a plain decode.
    """
    import torch

    total = codes.shape[2]
    if total <= chunk_frames + margin_frames:
        return tokenizer.decode(codes).float().cpu()
    hop = sample_rate / frame_rate
    out = None
    for a in range(0, total, chunk_frames):
        b = min(a + chunk_frames, total)
        lo, hi = max(0, a - margin_frames), min(total, b + margin_frames)
        audio = tokenizer.decode(codes[:, :, lo:hi]).float().cpu()
        if out is None:
            out = torch.zeros(audio.shape[0], audio.shape[1], round(total * hop), dtype=audio.dtype)
        offset, begin, stop = round(lo * hop), round(a * hop), min(round(b * hop), out.shape[-1])
        piece = audio[..., begin - offset : stop - offset]
        out[..., begin : begin + piece.shape[-1]] = piece
        del audio
    return out
