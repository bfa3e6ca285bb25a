"""``cadenza new-plugin NAME --kind KIND [--out DIR]``: write a ready-to-install plugin package.

The files come from templates shipped inside Cadenza (``cadenza/plugins/workflows/new_plugin/templates/``, package
data): ``common/`` for every kind, ``<kind>/`` for the component. Each ``*.tmpl`` file has
``{{placeholder}}`` fields filled from the name (see :func:`plugin_names`). The package is
written to a temporary folder and renamed into place, so a failure leaves nothing behind,
and an existing folder is never overwritten.
"""

from __future__ import annotations

import argparse
import keyword
import os
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from cadenza.core.errors import InputError

HOOKS = {
    "tokenizer": "register_tokenizers",
    "conditioner": "register_conditioners",
    "stage_model": "register_stage_models",
    "sampler": "register_samplers",
    "metric": "register_metrics",
}
KIND_WORDS = {
    "tokenizer": "acoustic tokenizer (codec)",
    "conditioner": "conditioner",
    "stage_model": "stage model",
    "sampler": "sampler",
    "metric": "metric",
}
# template file -> path in the package ({{module}} filled in); README's {{usage}} is usage.md.tmpl
FILES = {
    "common/pyproject.toml.tmpl": "pyproject.toml",
    "common/README.md.tmpl": "README.md",
    "common/test_plugin.py.tmpl": "tests/test_{{module}}_plugin.py",
    "{kind}/__init__.py.tmpl": "{{module}}/__init__.py",
    "{kind}/component.py.tmpl": "{{module}}/component.py",
    "{kind}/test_component.py.tmpl": "tests/test_{{module}}_component.py",
}
# A distribution name (PEP 508) that also gives an importable module: starts with a letter.
_NAME = re.compile(r"^[A-Za-z]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_FIELD = re.compile(r"\{\{(\w+)\}\}")


def templates_dir() -> Path:
    return Path(str(resources.files("cadenza.plugins.workflows.new_plugin") / "templates"))


def plugin_names(name: str, kind: str) -> dict[str, str]:
    """The template fields for ``name``, or a one-line InputError if it is not usable."""
    if not _NAME.match(name):
        raise InputError(f"invalid plugin name {name!r}: use letters, digits, '-', '_' or '.', starting with a "
                         "letter and ending with a letter or digit (e.g. cadenza-snac)")
    module = re.sub(r"[-_.]+", "_", name).lower()
    component = re.sub(r"[-_.]+", "-", re.sub(r"^cadenza[-_.]+", "", name.lower()))
    if module == "cadenza" or keyword.iskeyword(module) or module in sys.stdlib_module_names:
        raise InputError(f"invalid plugin name {name!r}: its module {module!r} would shadow "
                         f"{'Cadenza itself' if module == 'cadenza' else 'a Python module'}; pick another name")
    klass = "".join(part.capitalize() for part in component.split("-"))
    from importlib.metadata import PackageNotFoundError, version

    try:
        cadenza_version = version("cadenza")
    except PackageNotFoundError:
        cadenza_version = "0.1"
    return {"dist": name, "module": module, "component": component, "entry": component, "kind": kind,
            "kind_words": KIND_WORDS[kind], "hook": HOOKS[kind], "Class": klass if klass.isidentifier() else f"P{klass}",
            "cadenza_version": cadenza_version}


def fill(text: str, fields: dict[str, str]) -> str:
    """Replace every ``{{field}}``; an unknown field is a bug in a template."""

    def one(match: re.Match[str]) -> str:
        if match[1] not in fields:
            raise KeyError(f"template field {{{{{match[1]}}}}} has no value")
        return fields[match[1]]

    return _FIELD.sub(one, text)


def render(name: str, kind: str) -> dict[str, str]:
    """Relative path -> file text of the plugin package for ``name`` and ``kind``."""
    if kind not in HOOKS:
        raise InputError(f"unknown kind {kind!r}; choose one of {', '.join(HOOKS)}")
    fields = plugin_names(name, kind)
    root = templates_dir()
    fields["usage"] = fill((root / kind / "usage.md.tmpl").read_text(), fields).strip()
    return {fill(dest, fields): fill((root / src.format(kind=kind)).read_text(), fields)
            for src, dest in FILES.items()}


def write_plugin(name: str, kind: str, out: str | Path = ".") -> Path:
    """Write the package into ``out/name`` and return that folder; never overwrites."""
    files = render(name, kind)
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
    fields = plugin_names(args.name, args.kind)
    print(f"wrote {dest}/: {fields['kind_words']} {fields['component']!r} in module {fields['module']}")
    print(f"next: pip install -e {dest} && python -m pytest {dest}")
    return 0
