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
        problem = text_problem(prompt)
        if problem:
            raise InputError(f"prompt {i + 1} {problem}")
    return items


MAX_PROMPT_CHARS = 4000  # text encoders read 256-512 tokens; far longer is a pasted file


def text_problem(prompt: str) -> str | None:
    """Why ``prompt`` is not text a conditioner (and a terminal, and a JSON sidecar) can take, or None.

    A command line that is not UTF-8 arrives as unpaired surrogates; control characters
    (other than tab and newline) would be printed back into the user's terminal.
    """
    if len(prompt) > MAX_PROMPT_CHARS:
        return f"is {len(prompt):,} characters long; at most {MAX_PROMPT_CHARS:,}"
    for position, char in enumerate(prompt):
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            return f"is not valid text: an unpaired surrogate U+{code:04X} at character {position + 1} (not UTF-8?)"
        if (code < 0x20 and char not in "\t\n\r") or 0x7F <= code < 0xA0:
            return f"holds control character U+{code:04X} at character {position + 1}"
    return None
