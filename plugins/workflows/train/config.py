"""What each ``cadenza train`` run is asked to do, as typed, frozen configs a notebook can build.

The stage trainer takes a :class:`TrainConfig`, the MuLan trainer a :class:`MulanTrainConfig`,
the instrument classifier an :class:`InstrumentTrainConfig`. All three share the schedule of
:class:`Schedule` (the defaults are the CLI's) and check it when they are made, with the CLI's
one-line messages, so a bad value fails the same way from Python and from the command line.
:func:`config_from_args` is the only place a command line becomes a config.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

import attrs

from cadenza.core.errors import InputError
from cadenza.plugins.workflows.train.common import check_schedule_args

MixedPrecision = Literal["no", "fp16", "bf16"]
MIXED_PRECISION = ("no", "fp16", "bf16")


def _text(value: str | Path | None) -> str | None:
    """Paths are kept as text: run.json and state.json record them as given."""
    return None if value is None else str(value)


def _check_choices(config: Any) -> None:
    """The values argparse's ``choices`` refuse on the command line, refused from Python too."""
    if config.mixed_precision not in MIXED_PRECISION:
        raise InputError(f"--mixed-precision must be one of {', '.join(MIXED_PRECISION)}, got {config.mixed_precision!r}")
    conditioning = getattr(config, "conditioning", None)
    if conditioning not in (None, "audio", "text"):
        raise InputError(f"--conditioning must be audio or text, got {conditioning!r}")


@attrs.frozen(kw_only=True)
class Schedule:
    """Optimisation and bookkeeping every trainer shares (defaults: the ``cadenza train`` flags')."""

    out: str = attrs.field(converter=str)
    steps: int = 1000
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.01
    clip_grad: float = 1.0
    ema_decay: float = 0.999
    seconds: float | None = None
    valid_every: int = 200
    checkpoint_every: int = 500
    resume: bool = False
    mixed_precision: MixedPrecision = "no"
    num_workers: int = 0
    seed: int = 0


@attrs.frozen(kw_only=True)
class TrainConfig(Schedule):
    """One stage of ``pipeline`` (a spec file or preset) trained on a ``cadenza prepare`` cache."""

    pipeline: str = attrs.field(converter=str)
    stage: str
    cache: str | None = attrs.field(default=None, converter=_text)
    conditioning: Literal["audio", "text"] | None = None

    def __attrs_post_init__(self) -> None:
        check_schedule_args(self)
        _check_choices(self)
        if not self.cache:
            raise InputError("--cache is required to train a stage: a token cache written by `cadenza prepare`")


@attrs.frozen(kw_only=True)
class MulanTrainConfig(Schedule):
    """The ``mulan`` conditioner of ``pipeline`` trained on a captioned manifest ``data``."""

    pipeline: str = attrs.field(converter=str)
    data: str | None = attrs.field(default=None, converter=_text)
    valid_fraction: float | None = None  # None: mulan.VALID_FRACTION

    def __attrs_post_init__(self) -> None:
        if not self.data:
            raise InputError("--stage mulan needs --data: a .jsonl/.csv manifest of audio paths with captions")
        check_schedule_args(self, every_low=0)
        _check_choices(self)


@attrs.frozen(kw_only=True)
class InstrumentTrainConfig(Schedule):
    """The ``instrument`` metric's classifier trained on a ``cadenza corpus`` folder or manifest ``data``."""

    data: str | None = attrs.field(default=None, converter=_text)

    def __attrs_post_init__(self) -> None:
        if not self.data:
            raise InputError("--stage instrument needs --data: a `cadenza corpus` folder or a manifest with 'audio' "
                             "and 'instrument' fields")
        check_schedule_args(self)
        _check_choices(self)


SCHEDULE_FIELDS = tuple(f.name for f in attrs.fields(Schedule))


def config_from_args(args: argparse.Namespace) -> TrainConfig | MulanTrainConfig | InstrumentTrainConfig:
    """The config a parsed ``cadenza train`` command line asks for (``--stage`` picks the kind)."""
    common: dict[str, Any] = {name: getattr(args, name) for name in SCHEDULE_FIELDS}
    if args.stage == "instrument":
        return InstrumentTrainConfig(data=args.data, **common)
    if args.stage == "mulan":
        return MulanTrainConfig(pipeline=args.pipeline, data=args.data,
                                valid_fraction=getattr(args, "valid_fraction", None), **common)
    return TrainConfig(pipeline=args.pipeline, stage=args.stage, cache=args.cache, conditioning=args.conditioning,
                       **common)
