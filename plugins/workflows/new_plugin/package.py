"""What ``cadenza new-plugin`` writes: the files of one plugin package providing one or more kinds.

The files come from templates shipped inside Cadenza (``templates/``, package data):
``common/`` for every package, ``<kind>/`` for each kind it provides. Each ``*.tmpl`` file has
``{{placeholder}}`` fields filled from the name and the kinds (see :func:`plugin_names` and
:func:`kind_fields`).

One kind keeps the package flat: ``<module>/__init__.py`` registers it, ``<module>/component.py``
implements it. Several kinds get a subpackage each (``<module>/<kind>/``, the same two files),
and ``<module>/__init__.py`` gathers their hooks, so one entry point, one pyproject and one
README (a section per kind) cover them all. A ``pipeline`` kind is a preset: a spec shipped as
package data and registered with ``register_pipelines``, using the package's own components
where it has them and built-in tiny ones elsewhere.
"""

from __future__ import annotations

import keyword
import re
import sys
from collections.abc import Sequence
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from cadenza.core.errors import InputError

# kind -> the hook that registers it; the order in which a package lists its kinds
HOOKS = {
    "tokenizer": "register_tokenizers",
    "conditioner": "register_conditioners",
    "stage_model": "register_stage_models",
    "sampler": "register_samplers",
    "metric": "register_metrics",
    "pipeline": "register_pipelines",
}
KIND_WORDS = {
    "tokenizer": "acoustic tokenizer (codec)",
    "conditioner": "conditioner",
    "stage_model": "stage model",
    "sampler": "sampler",
    "metric": "metric",
    "pipeline": "pipeline preset",
}
# A kind's subpackage when a package provides several (a preset folder reads better as "presets").
SUBPACKAGES = {**{kind: kind for kind in HOOKS}, "pipeline": "presets"}
# template of a kind's folder -> its path in the package; a template the folder lacks is skipped.
# readme.md.tmpl becomes the kind's README section, pyproject.toml.tmpl is added to pyproject.toml.
KIND_FILES = {
    "__init__.py.tmpl": "{{package_path}}/__init__.py",
    "component.py.tmpl": "{{package_path}}/component.py",
    "preset.yaml.tmpl": "{{package_path}}/{{component}}.yaml",
    "test_component.py.tmpl": "tests/test_{{test_name}}.py",
}
COMMON_FILES = {
    "common/pyproject.toml.tmpl": "pyproject.toml",
    "common/README.md.tmpl": "README.md",
    "common/test_plugin.py.tmpl": "tests/test_{{module}}_plugin.py",
}
# Several kinds: the module the entry point names imports each subpackage's hook.
GATHERING_MODULE = {"common/package_init.py.tmpl": "{{module}}/__init__.py"}
# The preset's slots (kind -> name, params): the package's own component of that kind if it has
# one (its defaults, `{}`), else a built-in tiny one, random weights, so it runs offline.
BUILTIN_PARTS = {
    "tokenizer": ("tiny-codec", "{num_codebooks: 2, codebook_size: 64}"),
    "conditioner": ("byte-text", "{dim: 32, output: pooled}"),
    "stage_model": ("transformer", "{d_model: 32, layers: 1, heads: 2}"),
    "sampler": ("top-k", "{k: 8}"),
}
# A distribution name (PEP 508) that also gives an importable module: starts with a letter.
_NAME = re.compile(r"^[A-Za-z]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_FIELD = re.compile(r"\{\{(\w+)\}\}")


def templates_dir() -> Path:
    return Path(str(resources.files("cadenza.plugins.workflows.new_plugin") / "templates"))


def check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """The kinds in package order, or a one-line InputError for none, an unknown or a repeated one."""
    if isinstance(kinds, str):
        raise TypeError(f"kinds must be a sequence of kind names, got the string {kinds!r}")
    if not kinds:
        raise InputError(f"no kind given; choose one or more of {', '.join(HOOKS)}")
    for kind in kinds:
        if kind not in HOOKS:
            raise InputError(f"unknown kind {kind!r}; choose from {', '.join(HOOKS)}")
        if list(kinds).count(kind) > 1:
            raise InputError(f"kind {kind!r} is given {list(kinds).count(kind)} times; a package provides each kind once")
    return tuple(kind for kind in HOOKS if kind in kinds)


def plugin_names(name: str) -> dict[str, str]:
    """The fields every template shares, from the package name; a one-line InputError if it is not usable."""
    if not _NAME.match(name):
        raise InputError(f"invalid plugin name {name!r}: use letters, digits, '-', '_' or '.', starting with a "
                         "letter and ending with a letter or digit (e.g. cadenza-snac)")
    module = re.sub(r"[-_.]+", "_", name).lower()
    component = re.sub(r"[-_.]+", "-", re.sub(r"^cadenza[-_.]+", "", name.lower()))
    if module == "cadenza" or keyword.iskeyword(module) or module in sys.stdlib_module_names:
        raise InputError(f"invalid plugin name {name!r}: its module {module!r} would shadow "
                         f"{'Cadenza itself' if module == 'cadenza' else 'a Python module'}; pick another name")
    klass = "".join(part.capitalize() for part in component.split("-"))
    try:
        cadenza_version = version("cadenza")
    except PackageNotFoundError:
        cadenza_version = "0.1"
    return {"dist": name, "module": module, "component": component, "entry": component,
            "Class": klass if klass.isidentifier() else f"P{klass}", "cadenza_version": cadenza_version}


def kind_fields(names: dict[str, str], kind: str, kinds: Sequence[str]) -> dict[str, str]:
    """The fields of ``kind``'s templates in a package providing ``kinds``."""
    several = len(kinds) > 1
    package = f"{names['module']}.{SUBPACKAGES[kind]}" if several else names["module"]
    return {**names, **preset_fields(names["component"], kinds), "kind": kind, "kind_words": KIND_WORDS[kind],
            "hook": HOOKS[kind], "package": package, "package_path": package.replace(".", "/"),
            "test_name": f"{names['module']}_{kind}" if several else f"{names['module']}_component"}


def preset_fields(component: str, kinds: Sequence[str]) -> dict[str, str]:
    """What the preset of a package providing ``kinds`` uses in each slot (see BUILTIN_PARTS)."""
    parts = {slot: (component, "{}") if slot in kinds else builtin for slot, builtin in BUILTIN_PARTS.items()}
    fields = {f"{slot}_{key}": value for slot, (name, params) in parts.items()
              for key, value in (("name", name), ("params", params))}
    uses = ", ".join(f"{slot.replace('_', ' ')} {name}" for slot, (name, _) in parts.items())
    own = [slot for slot in BUILTIN_PARTS if slot in kinds]
    fields["preset_uses"] = uses
    fields["preset_description"] = f"one acoustic stage, random weights (noise until trained): {uses}"
    fields["preset_own_kinds"] = ", ".join(map(repr, own))
    return fields


def fill(text: str, fields: dict[str, str]) -> str:
    """Replace every ``{{field}}``; an unknown field is a bug in a template."""

    def one(match: re.Match[str]) -> str:
        if match[1] not in fields:
            raise KeyError(f"template field {{{{{match[1]}}}}} has no value")
        return fields[match[1]]

    return _FIELD.sub(one, text)


def render(name: str, kinds: Sequence[str]) -> dict[str, str]:
    """Relative path -> file text of the plugin package ``name`` providing ``kinds``."""
    kinds = check_kinds(kinds)
    names = plugin_names(name)
    root = templates_dir()
    by_kind = {kind: kind_fields(names, kind, kinds) for kind in kinds}
    files: dict[str, str] = {}
    sections, pyproject_parts = [], []
    for kind, fields in by_kind.items():
        folder = root / kind
        for template, dest in KIND_FILES.items():
            if (folder / template).is_file():
                files[fill(dest, fields)] = fill((folder / template).read_text(), fields)
        sections.append(fill((folder / "readme.md.tmpl").read_text(), fields).strip())
        if (folder / "pyproject.toml.tmpl").is_file():
            pyproject_parts.append(fill((folder / "pyproject.toml.tmpl").read_text(), fields))
    packages = {kind: fields["package"] for kind, fields in by_kind.items()}
    provides = [f"{kind}:{names['component']}" for kind in kinds]
    common = {**names, "summary": summary(names["component"], kinds), "sections": "\n\n".join(sections),
              "provides": ", ".join(provides), "provides_list": ", ".join(f'"{p}"' for p in provides),
              "packages": ", ".join(f'"{p}"' for p in dict.fromkeys([names["module"], *packages.values()])),
              "package_data": "".join(pyproject_parts),
              "entry_module": ("which imports the hook of each kind's subpackage" if len(kinds) > 1 else
                               f"which registers the {KIND_WORDS[kinds[0]]} (its section above)"),
              "hook_imports": "\n".join(f"from {packages[kind]} import {HOOKS[kind]}" for kind in kinds),
              "hook_names": ", ".join(f'"{HOOKS[kind]}"' for kind in kinds)}
    templates = {**COMMON_FILES, **(GATHERING_MODULE if len(kinds) > 1 else {})}
    for template, dest in templates.items():
        files[fill(dest, common)] = fill((root / template).read_text(), common)
    return dict(sorted(files.items()))


def summary(component: str, kinds: Sequence[str]) -> str:
    """``the sampler snac`` / ``the sampler snac and the pipeline preset snac`` (README, pyproject)."""
    parts = [f"the {KIND_WORDS[kind]} {component}" for kind in kinds]
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
