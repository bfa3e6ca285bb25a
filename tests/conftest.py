"""Shared fixtures: the discovered registry, a fast tiny spec, and an in-process CLI runner."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from cadenza.core.cli.main import main
from cadenza.registry import discover, set_registry
from tiny_specs import TINY_SPEC

# Tiny models spend more time synchronising threads than computing; one thread keeps the
# suite fast and its timings steady whatever else the machine is doing.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def registry():
    """The registry discovered from installed entry points (built-in plugins included)."""
    return discover(environ={})


@pytest.fixture(autouse=True)
def _fresh_default_registry():
    """Each test starts with the process-wide registry rediscovered on first use."""
    set_registry(None)
    yield
    set_registry(None)


@pytest.fixture
def write_spec(tmp_path: Path):
    """write_spec(text, name="spec.yaml") -> path of a spec file in a fresh folder."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def tiny_spec(write_spec) -> Path:
    return write_spec(TINY_SPEC, "tiny.yaml")


@pytest.fixture
def cli(capsys):
    """cli(*args) -> (exit code, stdout, stderr), running ``cadenza`` in this process."""

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse: --help, or a usage error (one line, exit 2)
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def real_audio():
    """real_audio(name="24k", rate=None, seconds=None) -> ([1, C, S] float32, rate).

    Real music recordings shipped in the encodec sdist (fetched by setup.sh into tests/data),
    optionally resampled and cut, so components are tested on music rather than sine waves.
    """
    from cadenza.core.audio.io import load_audio, resample

    def load(name: str = "24k", rate: int | None = None, seconds: float | None = None):
        path = DATA / f"test_{name}.wav"
        if not path.exists():
            pytest.fail(f"{path} is missing: run `python tests/fetch_test_audio.py` (setup.sh does)")
        audio, sr = load_audio(path)
        if rate is not None:
            audio, sr = resample(audio, sr, rate), rate
        if seconds is not None:
            audio = audio[:, : int(seconds * sr)]
        return audio[None], sr

    return load


@pytest.fixture(scope="session")
def render_corpus(tmp_path_factory):
    """render_corpus(n, seconds, seed) -> the folder of a freshly rendered ``cadenza corpus``.

    FluidSynth and a SoundFont are installed by setup.sh, so their absence fails the test.
    """
    from cadenza.plugins.workflows.corpus.build import Settings, build
    from cadenza.plugins.workflows.corpus.render import Renderer, RenderToolError

    def render(n: int, seconds: float, seed: int) -> Path:
        try:
            Renderer.find()
        except RenderToolError as exc:
            pytest.fail(f"{exc} (setup.sh installs them)")
        out = tmp_path_factory.mktemp(f"corpus-seed{seed}") / "corpus"
        build(out, n, Settings(seed=seed, seconds=seconds), workers=2, progress=False)
        return out

    return render
