"""The pytest plugin (entry point ``pytest11: cadenza``): fixtures for plugin authors.

Every fixture is function-scoped: what a test registers is gone after it. Fixtures import
torch and Cadenza's registry only when a test asks for them.
"""

from __future__ import annotations

from typing import Any

import pytest
from cadenza.registry import set_registry
from cadenza.testing.registry import SandboxRegistry
from cadenza.testing.pipeline import BUILTINS, TinyPipeline, tiny_spec
from cadenza.testing.audio import synth_tones

MARKER = "cadenza_builtins"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(*names): built-in Cadenza plugins (e.g. 'tiny', 'samplers') "
        "that the cadenza_registry fixture starts with; no names: all of them")


@pytest.fixture
def cadenza_registry(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A :class:`cadenza.testing.SandboxRegistry`: no installed plugin is discovered.

    It starts empty, or with the built-ins named by ``@pytest.mark.cadenza_builtins(...)``;
    add more with ``cadenza_registry.add_builtins("tiny", ...)``. For the test it is the
    process-wide registry (``Cascade.from_spec`` and the in-process CLI use it), and
    ``CADENZA_LOAD_PLUGINS`` is set empty so any other discovery finds nothing either.
    """
    monkeypatch.setenv("CADENZA_LOAD_PLUGINS", "")
    monkeypatch.delenv("CADENZA_PLUGINS", raising=False)
    registry = SandboxRegistry()
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        registry.add_builtins(*marker.args)
    set_registry(registry)
    yield registry
    set_registry(None)


@pytest.fixture
def register_plugin(cadenza_registry: Any) -> Any:
    """``register_plugin(plugin, name=None, *, allow_errors=False) -> PluginRecord``.

    Registers a module, an object with hook implementations, or an import path in
    ``cadenza_registry`` for this test. A plugin whose registration fails (a hook raising,
    a bad name, a name clash) fails the test unless ``allow_errors=True``.
    """

    def register(plugin: Any, name: str | None = None, *, allow_errors: bool = False) -> Any:
        try:
            return cadenza_registry.add(plugin, name, allow_errors=allow_errors)
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)

    return register


@pytest.fixture
def tiny_pipeline(cadenza_registry: Any) -> Any:
    """``tiny_pipeline(**components) -> TinyPipeline``: a tiny random-weight pipeline.

    Keywords are those of :func:`cadenza.testing.tiny_spec` (``tokenizer=``, ``conditioner=``,
    ``stage_model=``, ``sampler=``, ``layout=``, ...): name the component under test, the
    rest are built-in tiny ones, loaded into ``cadenza_registry`` for you. Then
    ``.validate()``, ``.cascade()``, ``.generate(prompt, seconds)`` or ``.write(path)``.
    """
    def build(**components: Any) -> TinyPipeline:
        cadenza_registry.add_builtins(*BUILTINS)
        return TinyPipeline(tiny_spec(**components), cadenza_registry)

    return build


@pytest.fixture(name="test_audio")
def _test_audio() -> Any:
    """``test_audio(sample_rate=16000, seconds=2.0, channels=1, batch=1) -> [B, C, S]`` tensor.

    Deterministic synthesised tones (see :func:`cadenza.testing.synth_tones`), no files.
    """
    return synth_tones
