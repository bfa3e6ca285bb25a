"""Discovery: entry points in the ``cadenza`` group -> a :class:`Registry`.

Built-in plugins are found exactly like third-party ones, through the entry points of the
installed ``cadenza`` distribution. Each plugin is imported on its own: one that fails is
recorded with its error and the rest load (unless ``CADENZA_STRICT_PLUGINS=1``).

Environment:
  CADENZA_LOAD_PLUGINS   comma-separated allow-list of plugin (entry-point) or distribution
                         names; set but empty loads no installed plugin.
  CADENZA_STRICT_PLUGINS ``1`` makes a plugin load failure or a name conflict fatal.
  CADENZA_PLUGINS        comma-separated ``module`` or ``module:attr`` plugins loaded from
                         the import path without packaging (for plugin development).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Mapping

import entrypoints

from cadenza.core.errors import RegistryError
from cadenza.core.hookspecs import ENTRY_POINT_GROUP
from cadenza.registry.catalog import Registry

_TRUE = ("1", "true", "yes", "on")


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def discover(environ: Mapping[str, str] | None = None, path: list[str] | None = None) -> Registry:
    """Load every allowed plugin into a fresh registry."""
    env = os.environ if environ is None else environ
    registry = Registry()
    allow = env.get("CADENZA_LOAD_PLUGINS")
    allowed = None if allow is None else set(_split(allow))
    for ep in _entry_points(path):
        distro, version = _distribution(ep)
        if allowed is not None and ep.name not in allowed and distro not in allowed:
            continue
        module = ep.module_name + (f":{ep.object_name}" if ep.object_name else "")
        if ep.name in registry.plugins:
            registry.add_failure(ep.name, module, f"plugin name {ep.name!r} is also used by "
                                 f"{registry.plugins[ep.name].distribution!r}", distro, version)
            continue
        try:
            plugin = ep.load()
        except BaseException as exc:  # noqa: BLE001 - a plugin's import may raise anything
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            registry.add_failure(ep.name, module, exc, distro, version)
            continue
        registry.add_plugin(plugin, ep.name, module, distro, version)
    for spec in _split(env.get("CADENZA_PLUGINS", "")):
        _load_dev_plugin(registry, spec)
    if env.get("CADENZA_STRICT_PLUGINS", "").lower() in _TRUE and registry.problems():
        raise RegistryError("; ".join(registry.problems()) + " (CADENZA_STRICT_PLUGINS is set)")
    return registry


def _entry_points(path: list[str] | None) -> list[entrypoints.EntryPoint]:
    """Entry points of the group, first distribution on the path winning, in a stable order."""
    seen: set[tuple[str, str]] = set()
    out = []
    for ep in entrypoints.get_group_all(ENTRY_POINT_GROUP, path=path):
        key = (ep.distro.name if ep.distro else "", ep.name)
        if key not in seen:
            seen.add(key)
            out.append(ep)
    return out


def _distribution(ep: entrypoints.EntryPoint) -> tuple[str, str]:
    """(name, version) of the distribution that declares ``ep``, as its metadata spells them.

    Folder names are normalised (``cadenza_snac-1.0.dist-info``) and an in-tree
    ``NAME.egg-info`` names no version, so the metadata is asked when it can be.
    """
    if not ep.distro:
        return "", ""
    try:
        meta = importlib.metadata.distribution(ep.distro.name).metadata
        return meta["Name"] or ep.distro.name, meta["Version"] or ep.distro.version or ""
    except importlib.metadata.PackageNotFoundError:
        return ep.distro.name, ep.distro.version or ""


def _load_dev_plugin(registry: Registry, spec: str) -> None:
    module_name, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
    except Exception as exc:
        registry.add_failure(spec, spec, exc, "CADENZA_PLUGINS")
        return
    registry.add_plugin(obj, spec, spec, "CADENZA_PLUGINS")


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, discovered on first use."""
    global _default
    if _default is None:
        _default = discover()
    return _default


def set_registry(registry: Registry | None) -> None:
    """Replace (or with None, forget) the process-wide registry; for tests and embedding."""
    global _default
    _default = registry
