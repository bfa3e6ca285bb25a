"""Files of JSON lines written by users (prompt files, labelled manifests): a bad line is
reported as ``FILE:LINE: message`` and skipped, and the good ones still run.

Shared by ``cadenza generate --prompts`` and ``cadenza evaluate``, so both read, report and
de-duplicate lines the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cadenza.core.errors import InputError
from cadenza.core.files.user_text import MiB, read_user_text

MAX_PROMPTS_BYTES = 16 * MiB  # some 100,000 prompts: beyond that, split the file

T = TypeVar("T")


def parse_object(text: str, not_an_object: str) -> dict[str, Any]:
    """One line -> its JSON object; a ValueError with the message otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError("not valid here: JSON nested too deeply") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise ValueError(f"not valid here: {str(exc).split(';')[0]}") from None
    if not isinstance(value, dict):
        raise ValueError(not_an_object)
    return value


def read_lines(path: Path, parse: Callable[[str, int], T], name_of: Callable[[T], str],
               repeated: Callable[[str, int], str], limit: int | None = None) -> tuple[list[T], list[str]]:
    """``parse(text, line_number)`` every non-blank line (the first ``limit`` good ones).

    Returns the parsed lines and one ``FILE:LINE: message`` per line whose ``parse`` raised
    ValueError or whose ``name_of`` repeats an earlier good line's (``repeated(name, first_line)``
    is the message). An unreadable file is an InputError.
    """
    if not os.path.lexists(path):  # (False, never an exception, for a name too long)
        raise InputError(f"{path}: prompts file not found")
    text = read_user_text(path, "prompts file", MAX_PROMPTS_BYTES)
    items: list[T] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        if limit is not None and len(items) >= limit:
            break
        try:
            item = parse(raw, number)
            name = name_of(item)
            if name in first_line:
                raise ValueError(repeated(name, first_line[name]))
        except ValueError as exc:
            problems.append(f"{path}:{number}: {exc}")
            continue
        first_line[name] = number
        items.append(item)
    return items, problems


def read_objects(path: Path, what: str, max_bytes: int) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line; the first bad line is one InputError.

    For files read whole or not at all (a training manifest, a results file): unlike
    :func:`read_lines`, a bad line stops the run, as a manifest half-read would mislead.
    """
    rows = []
    for number, raw in enumerate(read_user_text(path, what, max_bytes).splitlines(), start=1):
        if raw.strip():
            try:
                rows.append((number, parse_object(raw, "expected a JSON object")))
            except ValueError as exc:
                raise InputError(f"{path}:{number}: {exc}") from None
    return rows
