"""How errors that reach the command line are printed: one line each, and never a flood."""

from __future__ import annotations

from cadenza.core.errors import CadenzaError

MAX_PROBLEM_LINES = 20  # a spec with hundreds of problems shows the first ones and a count


def problem_lines(command: str, exc: CadenzaError) -> list[str]:
    lines = getattr(exc, "problems", None) or [f"cadenza {command}: error: {exc}"]
    if len(lines) > MAX_PROBLEM_LINES:
        lines = lines[:MAX_PROBLEM_LINES] + [f"... and {len(lines) - MAX_PROBLEM_LINES} more problems"]
    return lines


def os_error_line(command: str, exc: OSError) -> str:
    """An OS error that reached the command line (a folder not writable, a full disk): path and reason."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    where = f"{exc.filename}: " if exc.filename else ""
    return f"cadenza {command}: error: {where}{reason}"
