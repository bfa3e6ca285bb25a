"""The built-in plugins: one subpackage per family, each registered through the ``cadenza``
entry-point group exactly as a third-party package registers (see pyproject.toml).

Each family's ``__init__.py`` holds its configs and hook implementations and imports no torch;
its heavy modules (``model.py`` and friends) are imported only when a spec builds a component.
``workflows/`` holds the commands beyond generation (train, prepare, corpus, evaluate, bench,
export, fit-kmeans, new-plugin). ``weights/`` and ``presets/`` are the data that ship with them.
"""

from pathlib import Path

# Trained weights that ship inside the package (codec codebooks, classifier, default pipeline).
PACKAGED_WEIGHTS = Path(__file__).resolve().parent / "weights"
