"""``cadenza.testing``: pytest fixtures and helpers for testing Cadenza plugins.

Installed with Cadenza and registered through the ``pytest11`` entry point, so a plugin's
test suite gets these fixtures with no ``conftest.py`` (see :mod:`cadenza.testing.fixtures`):

- ``cadenza_registry``: a registry with installed-plugin discovery blocked; it holds the
  built-in plugins a test asks for (``add_builtins(...)`` or ``@pytest.mark.cadenza_builtins``)
  and nothing else, and is the process-wide registry for the test.
- ``register_plugin``: register a plugin object or module in that registry for one test.
- ``tiny_pipeline``: build a tiny random-weight pipeline spec around the component under test,
  then validate it, build its cascade or generate with it.
- ``test_audio``: deterministic synthesised tones, ``[batch, channels, samples]``.

Importing this package is cheap (no torch): pytest loads it in every session.
"""

from __future__ import annotations

from cadenza.testing.audio import synth_tones
from cadenza.testing.pipeline import TinyPipeline, tiny_spec
from cadenza.testing.registry import SandboxRegistry, builtin_plugins

__all__ = ["SandboxRegistry", "TinyPipeline", "builtin_plugins", "synth_tones", "tiny_spec"]
