"""Files a user downloads can carry code; reading them must never run it.

A pickle's ``__reduce__`` runs on load with an unrestricted ``torch.load``. Each loader that
reads torch files (CLAP, EnCodec and DAC weights, training checkpoints and their optimizer
state on resume) is handed one that would create a file, and must refuse it with one
WeightsError/CadenzaError while the file stays uncreated. A scan of the source pins the rule
for code not yet written: every ``torch.load`` passes ``weights_only=True``, and nothing calls
``eval``, ``exec``, ``pickle.load`` or a subprocess with ``shell=True``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from cadenza.core.errors import CadenzaError

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("core", "plugins", "registry")


class CreatesAFile:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_file(folder: Path, name: str, marker: Path) -> Path:
    path = folder / name
    torch.save({"state_dict": {"weight": CreatesAFile(marker)}, "metadata": {"kwargs": CreatesAFile(marker)}}, path)
    return path


def _clap(path: Path):
    from cadenza.plugins.clap.model import read_laion_state

    return read_laion_state(path)


def _encodec(path: Path):
    from cadenza.plugins.encodec.model import load_state_dict

    return load_state_dict(path)


def _dac(path: Path):
    from cadenza.plugins.dac.model import load_release

    return load_release(path)


def _checkpoint(path: Path):
    from cadenza.plugins.workflows.train.run_checkpoints import _load

    return _load(path)


@pytest.mark.parametrize("load", [_clap, _encodec, _dac, _checkpoint], ids=["clap", "encodec", "dac", "checkpoint"])
def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(load, tmp_path):
    marker = tmp_path / "pwned"
    path = evil_file(tmp_path, "weights.pt", marker)
    with pytest.raises(CadenzaError) as caught:
        load(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert not marker.exists()


def test_the_evil_file_would_run_code_if_loaded_unsafely(tmp_path):
    """The test above proves something only if the file really runs code when trusted."""
    marker = tmp_path / "pwned"
    torch.load(evil_file(tmp_path, "weights.pt", marker), weights_only=False)
    assert marker.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):  # a bare call: eval(...)
                yield node, None, func.id
            elif isinstance(func, ast.Attribute):  # module.function(...); a method of an expression has no owner
                yield node, getattr(func.value, "id", ""), func.attr


def test_no_code_path_can_run_code_from_a_file_or_a_string():
    found = []
    for folder in SOURCE_DIRS:
        for file in sorted((ROOT / folder).rglob("*.py")):
            for call, owner, name in _calls(ast.parse(file.read_text(), str(file))):
                where = f"{file.relative_to(ROOT)}:{call.lineno}"
                keywords = {k.arg: k.value for k in call.keywords}
                if owner == "torch" and name == "load":
                    safe = keywords.get("weights_only")
                    if not (isinstance(safe, ast.Constant) and safe.value is True):
                        found.append(f"{where}: torch.load without weights_only=True")
                if owner is None and name in ("eval", "exec"):
                    found.append(f"{where}: {name}()")
                if owner in ("pickle", "cPickle", "dill") and name in ("load", "loads"):
                    found.append(f"{where}: {owner}.{name}()")
                shell = keywords.get("shell")
                if isinstance(shell, ast.Constant) and shell.value is True:
                    found.append(f"{where}: shell=True")
    assert not found, "\n".join(found)
