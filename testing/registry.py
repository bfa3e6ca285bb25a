"""A registry for tests: no installed-plugin discovery, only the plugins a test adds."""

from __future__ import annotations

import importlib.metadata
from typing import Any

from cadenza.core.hookspecs import ENTRY_POINT_GROUP
from cadenza.registry.catalog import Registry
from cadenza.registry.records import PluginRecord


def builtin_plugins() -> dict[str, importlib.metadata.EntryPoint]:
    """Cadenza's own plugins (entry-point name -> entry point), e.g. ``tiny``, ``samplers``."""
    dist = importlib.metadata.distribution("cadenza")
    return {ep.name: ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP}


class SandboxRegistry(Registry):
    """A :class:`~cadenza.registry.Registry` that starts empty and never discovers.

    Built-in plugins are added by name (:meth:`add_builtins`); a plugin under test with
    :meth:`add` (or the ``register_plugin`` fixture). A plugin that fails to register raises
    here, where ``discover()`` would only record the failure.
    """

    def add_builtins(self, *names: str) -> SandboxRegistry:
        """Add Cadenza's built-in plugins ``names`` (none given: all of them); idempotent."""
        available = builtin_plugins()
        unknown = [n for n in names if n not in available]
        if unknown:
            raise KeyError(f"no built-in plugin {', '.join(map(repr, unknown))}; built-ins: {', '.join(sorted(available))}")
        version = importlib.metadata.version("cadenza")
        for name in names or tuple(available):
            if name not in self.plugins:
                ep = available[name]
                self._checked(self.add_plugin(ep.load(), name, ep.value, "cadenza", version))
        return self

    def add(self, plugin: Any, name: str | None = None, *, allow_errors: bool = False) -> PluginRecord:
        """Register ``plugin`` (a module, an object with hook methods, or a module's import path)."""
        if isinstance(plugin, str):
            plugin = importlib.import_module(plugin)
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        record = self.add_plugin(plugin, name, distribution="cadenza.testing")
        return record if allow_errors else self._checked(record)

    def _checked(self, record: PluginRecord) -> PluginRecord:
        if record.error:
            raise RuntimeError(f"plugin {record.name!r} failed to register: {record.error}")
        clashes = [p for p in self.problems() if repr(record.name) in p and "more than one plugin" in p]
        if clashes:
            raise RuntimeError(clashes[0])
        return record
