"""The name tables: which component (and preset) names exist, and which plugin owns each.

Each plugin's registration hooks are called one plugin at a time, so a plugin that raises
is reported on its own and contributes nothing, while the others keep working. They are
called through pluggy's hook machinery (``pm.hook.register_x(register=...)``), on a plugin
manager that holds that plugin alone: pluggy's own way to call a hook on a subset of plugins,
``subset_hook_caller``, keeps the plugins it leaves out in a set, and a plugin object need not
be hashable (a ``types.SimpleNamespace`` of hook functions is not). A
registered by two plugins is a conflict: it is removed from the table and using it raises
an error naming both plugins.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import pluggy

from cadenza.core import hookspecs
from cadenza.core.components import KINDS, ComponentEntry, NoConfig
from cadenza.core.errors import RegistryError
from cadenza.registry.records import PipelinePreset, PluginRecord

# registration hook name -> component kind
REGISTRATION_HOOKS: dict[str, str] = {
    "register_tokenizers": "tokenizer",
    "register_semantic_tokenizers": "semantic_tokenizer",
    "register_conditioners": "conditioner",
    "register_stage_models": "stage_model",
    "register_samplers": "sampler",
    "register_metrics": "metric",
    "register_melody_sources": "melody_source",
    "register_watermarks": "watermark",
    "register_steering": "steering",
}
PIPELINE_HOOK = "register_pipelines"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class Registry:
    """A pluggy plugin manager plus the component and preset tables built from it."""

    def __init__(self) -> None:
        self.pm = _manager()
        self.plugins: dict[str, PluginRecord] = {}
        self._components: dict[tuple[str, str], ComponentEntry] = {}
        self._pipelines: dict[str, PipelinePreset] = {}
        self.conflicts: dict[tuple[str, str], list[str]] = {}

    @property
    def hook(self) -> Any:
        """The observer hooks (``before_stage``, ``after_stage``, ``on_stage_error``)."""
        return self.pm.hook

    # -- loading -------------------------------------------------------------------------
    def add_plugin(self, plugin: object, name: str, module: str = "", distribution: str = "", version: str = "") -> PluginRecord:
        """Register a loaded plugin object and collect its components; never raises for its bugs."""
        record = PluginRecord(name=name, module=module or getattr(plugin, "__name__", repr(plugin)),
                              distribution=distribution, version=version)
        self.plugins[name] = record
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # pluggy validates hook signatures here
            record.error = f"{type(exc).__name__}: {exc}"
            return record
        record.hooks = sorted({caller.name for caller in self.pm.get_hookcallers(plugin) or []})
        try:
            components, presets = self._collect(plugin, name, record)
        except Exception as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            return record
        for entry in components:
            self._add((entry.kind, entry.name), entry, entry.plugin)
            record.components.append(f"{entry.kind}:{entry.name}")
        for preset in presets:
            self._add(("pipeline", preset.name), preset, preset.plugin)
            record.components.append(f"pipeline:{preset.name}")
        return record

    def add_failure(self, name: str, module: str, error: BaseException | str, distribution: str = "", version: str = "") -> PluginRecord:
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        record = PluginRecord(name=name, module=module, distribution=distribution, version=version, error=message)
        self.plugins[name] = record
        return record

    def _collect(self, plugin: object, name: str, record: PluginRecord) -> tuple[list[ComponentEntry], list[PipelinePreset]]:
        """Call ``plugin``'s registration hooks through pluggy, each with a ``register`` callback
        that attributes what it registers to this plugin; its errors propagate to the caller."""
        components: list[ComponentEntry] = []
        presets: list[PipelinePreset] = []
        alone = _manager()
        alone.register(plugin, name=name)
        for hook in dict.fromkeys(caller.name for caller in alone.get_hookcallers(plugin) or []):  # one per impl
            if hook in REGISTRATION_HOOKS:
                getattr(alone.hook, hook)(register=_component_registrar(REGISTRATION_HOOKS[hook], record, components))
            elif hook == PIPELINE_HOOK:
                getattr(alone.hook, hook)(register=_pipeline_registrar(name, presets))
        return components, presets

    def _add(self, key: tuple[str, str], value: Any, plugin: str) -> None:
        if key in self.conflicts:
            self.conflicts[key].append(plugin)
        elif key[0] == "pipeline" and key[1] in self._pipelines:
            self.conflicts[key] = [self._pipelines.pop(key[1]).plugin, plugin]
        elif key in self._components:
            self.conflicts[key] = [self._components.pop(key).plugin, plugin]
        elif key[0] == "pipeline":
            self._pipelines[key[1]] = value
        else:
            self._components[key] = value

    # -- lookup --------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(name for (k, name) in self._components if k == kind)

    def entries(self, kind: str | None = None) -> list[ComponentEntry]:
        return sorted(
            (e for (k, _), e in self._components.items() if kind is None or k == kind),
            key=lambda e: (KINDS.index(e.kind), e.name),
        )

    def get(self, kind: str, name: str) -> ComponentEntry:
        """The entry for ``name``; a one-line RegistryError lists the available names if absent."""
        if (kind, name) in self.conflicts:
            raise RegistryError(conflict_message(kind, name, self.conflicts[(kind, name)]))
        try:
            return self._components[(kind, name)]
        except KeyError:
            raise RegistryError(unknown_message(kind, name, self.names(kind))) from None

    @property
    def pipelines(self) -> dict[str, PipelinePreset]:
        return dict(sorted(self._pipelines.items()))

    def problems(self) -> list[str]:
        """Every load error and name conflict, one line each."""
        out = [f"plugin {r.name!r} ({r.distribution or r.module}) failed to load: {r.error}"
               for r in self.plugins.values() if r.error]
        out += [conflict_message(k, n, owners) for (k, n), owners in self.conflicts.items()]
        return out


def _manager() -> pluggy.PluginManager:
    """A plugin manager that knows Cadenza's hook specs (the whole plugin API)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def unknown_message(kind: str, name: str, available: Iterable[str]) -> str:
    names = ", ".join(available) or "none installed"
    return f"unknown {kind.replace('_', ' ')} {name!r}; available: {names}"


def conflict_message(kind: str, name: str, owners: list[str]) -> str:
    return (f"{kind.replace('_', ' ')} {name!r} is registered by more than one plugin "
            f"({' and '.join(repr(o) for o in sorted(owners))}); uninstall one or leave one out of CADENZA_LOAD_PLUGINS")


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{what} name {name!r} must be lowercase letters, digits, '.', '_' or '-'")
    return name


def _check_needs_weights(kind: str, name: str, needs_weights: Any, default_weights: str) -> None:
    """A component that needs no weights has none to default to: its only default is ``random`` (nothing to load)."""
    if not isinstance(needs_weights, bool):
        raise ValueError(f"{kind} {name!r}: needs_weights must be True or False, got {needs_weights!r}")
    if not needs_weights and default_weights != "random":
        raise ValueError(f"{kind} {name!r}: needs_weights=False but default_weights={default_weights!r}; "
                         "a component without weights leaves default_weights at 'random'")


def _component_registrar(kind: str, record: PluginRecord, out: list[ComponentEntry]) -> Callable[..., None]:
    def register(name: str, factory: Callable[..., Any] | str, *, config: type = NoConfig,
                 description: str = "", default_weights: str = "random", needs_weights: bool = True) -> None:
        _check_name(name, kind)
        if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
            raise ValueError(f"{kind} {name!r}: factory must be callable or a 'module:attr' string")
        if not attrs.has(config):
            raise ValueError(f"{kind} {name!r}: config must be an attrs class, got {config!r}")
        _check_needs_weights(kind, name, needs_weights, default_weights)
        out.append(ComponentEntry(name=name, kind=kind, factory=factory, config=config,
                                  description=description, default_weights=default_weights,
                                  needs_weights=needs_weights,
                                  plugin=record.name, distribution=record.distribution, version=record.version))

    return register


def _pipeline_registrar(plugin: str, out: list[PipelinePreset]) -> Callable[..., None]:
    def register(name: str, path: str | Path, *, description: str = "") -> None:
        _check_name(name, "pipeline")
        out.append(PipelinePreset(name=name, path=Path(path), description=description, plugin=plugin))

    return register
