"""The wheel contains every package and preset; a missed folder would only fail after install."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_python_package_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *rel.parts]))
    assert found == listed


def test_presets_and_templates_are_package_data():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "*.yaml" in data["cadenza.plugins.presets"]
    assert list((ROOT / "plugins" / "presets").glob("*.yaml"))
    assert "templates/*/*.tmpl" in data["cadenza.plugins.workflows.new_plugin"]
    assert list((ROOT / "plugins" / "workflows" / "new_plugin" / "templates").glob("*/*.tmpl"))


def test_shipped_weights_are_package_data():
    """Every file under plugins/weights (codebooks, classifier, default pipeline) is in the wheel."""
    from fnmatch import fnmatch

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["cadenza.plugins"]
    files = [p.relative_to(ROOT / "plugins").as_posix() for p in (ROOT / "plugins" / "weights").rglob("*") if p.is_file()]
    assert files and not [f for f in files if not any(fnmatch(f, pattern) and f.count("/") == pattern.count("/")
                                                       for pattern in patterns)]
