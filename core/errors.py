"""Errors that reach the user as one clear line.

Everything a user can get wrong (a spec, a prompt, a weights file, an audio file) raises a
subclass of :class:`CadenzaError`. The CLI prints ``str(error)`` and exits non-zero; no traceback.
"""

from __future__ import annotations


class CadenzaError(Exception):
    """Base class of errors caused by user input; ``str()`` is the whole message.

    The command line exits 2 for all of them (as for a usage error): the input needs fixing.
    Exit 1 is left for what is not the user's doing, a bug reported as "internal error".
    """

    exit_code = 2


class SpecError(CadenzaError):
    """A pipeline spec is invalid; carries every problem found, one ``FILE:LINE: message`` each."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class RegistryError(CadenzaError):
    """A plugin failed to load in strict mode, or a component name is unknown or ambiguous."""


class WeightsError(CadenzaError):
    """Weights could not be found, read, or do not fit the component's configuration."""


class InputError(CadenzaError):
    """Bad runtime input: an empty prompt, a negative duration, an unreadable audio file."""
