"""What one ``cadenza evaluate`` run is asked to do: a typed, frozen config a notebook can build.

Its values are checked when it is made, with the command line's one-line messages;
:func:`config_from_args` is the only place a command line becomes one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import attrs

from cadenza.core.cli.command import DEFAULT_PIPELINE
from cadenza.core.engine.limits import check_seconds
from cadenza.core.errors import InputError


@attrs.frozen(kw_only=True)
class EvaluateConfig:
    """Generate ``seeds`` clips for each labelled prompt of ``prompts`` into ``out``, then score them
    (defaults: the ``cadenza evaluate`` flags')."""

    prompts: Path = attrs.field(converter=Path)
    out: Path = attrs.field(converter=Path)
    pipeline: str = attrs.field(default=DEFAULT_PIPELINE, converter=str)
    limit: int | None = None  # only the first N prompts
    seeds: int = 1
    seconds: float | None = None  # None: the reference clips' length, else the spec's
    fad_embedding: str = "mel-stats"
    batch_size: int = 8
    resume: bool = False
    device: str = "cpu"
    quiet: bool = False

    def __attrs_post_init__(self) -> None:
        for name in ("limit", "seeds", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.seconds is not None:
            check_seconds(self.seconds)


def config_from_args(args: argparse.Namespace) -> EvaluateConfig:
    """The evaluation a parsed ``cadenza evaluate`` command line asks for."""
    return EvaluateConfig(**{field.name: getattr(args, field.name) for field in attrs.fields(EvaluateConfig)})
