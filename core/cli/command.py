"""A ``cadenza`` subcommand contributed by a package: its parser and, lazily, its handler.

Commands beyond generation (train, prepare, corpus, evaluate, bench, ...) are not known to the
core: each is an object named by an entry point in the ``cadenza.commands`` group, the same
way components are found, so a third-party package can add a subcommand too::

    [project.entry-points."cadenza.commands"]
    mix = "my_pkg.commands:MIX"          # MIX = Command("mix", "my_pkg.mix:run", define_mix)

The module holding the :class:`Command` must stay cheap (argparse only): ``cadenza --help``
imports it. The handler (``"module:attr"``, called with the parsed arguments, returning the exit
code) is imported only when the command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import attrs

COMMANDS_GROUP = "cadenza.commands"
DEFAULT_PIPELINE = "default"


@attrs.frozen
class Command:
    """``define(subparsers)`` adds the command's parser; ``handler`` is ``"module:attr"``."""

    name: str
    handler: str
    define: Callable[[argparse._SubParsersAction], argparse.ArgumentParser]
