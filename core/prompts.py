"""Prompt checking shared by the cascade and every text conditioner.

One place decides what an acceptable prompt is, so the CLI, the Python API and each
conditioner refuse the same inputs with the same one-line message.
"""

from __future__ import annotations

from collections.abc import Sequence

from cadenza.core.errors import InputError


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """The prompts as a list; an empty batch or a blank prompt is one :class:`InputError`.

    A bare string is a TypeError (a programming error: it would be read as one prompt per
    character); callers that accept a single prompt wrap it first.
    """
    if isinstance(prompts, str):
        raise TypeError("expected a sequence of prompts, not a single string")
    items = list(prompts)
    if not items:
        raise InputError("no prompt given")
    for i, prompt in enumerate(items):
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"prompt {i + 1} is empty: describe the music to generate")
    return items
