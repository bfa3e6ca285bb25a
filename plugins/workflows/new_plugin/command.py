"""``cadenza new-plugin NAME --kind KIND [--kind KIND ...] [--out DIR]``: write a ready-to-install plugin package.

What the package holds is :mod:`cadenza.plugins.workflows.new_plugin.package`. It is written
to a temporary folder and renamed into place, so a failure leaves nothing behind, and an
existing folder is never overwritten.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cadenza.core.errors import InputError
from cadenza.plugins.workflows.new_plugin.package import KIND_WORDS, check_kinds, plugin_names, render


def write_plugin(name: str, kinds: Sequence[str], out: str | Path = ".") -> Path:
    """Write the package ``name`` providing ``kinds`` into ``out/name`` and return that folder; never overwrites."""
    files = render(name, kinds)
    dest = Path(out) / name
    if dest.exists():
        raise InputError(f"{dest} already exists; not overwriting it (choose another name or --out)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=dest.parent))
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)
        for rel, text in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        if dest.exists():
            raise InputError(f"{dest} already exists; not overwriting it (choose another name or --out)")
        os.rename(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def run(args: argparse.Namespace) -> int:
    dest = write_plugin(args.name, args.kind, args.out)
    names = plugin_names(args.name)
    provided = ", ".join(f"{KIND_WORDS[kind]} {names['component']!r}" for kind in check_kinds(args.kind))
    print(f"wrote {dest}/: {provided} in module {names['module']}")
    print(f"next: pip install -e {dest} && python -m pytest {dest}")
    return 0
