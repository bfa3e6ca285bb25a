"""Shared fixtures: the discovered registry, a fast tiny spec, and an in-process CLI runner."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from cadenza.core.cli import main
from cadenza.registry import discover, set_registry

# Tiny models spend more time synchronising threads than computing; one thread keeps the
# suite fast and its timings steady whatever else the machine is doing.
torch.set_num_threads(1)

# A full three-stage cascade small enough to generate half a second in well under a second.
TINY_SPEC = """\
name: test-tiny
conditioner: {name: byte-text, params: {dim: 16, output: pooled}}
semantic_tokenizer: {name: mel-kmeans, params: {frame_rate: 25, vocab_size: 32}}
tokenizer: {name: tiny-codec, params: {num_codebooks: 4, codebook_size: 64, channels: 8, latent_dim: 16}}
stages:
  - name: semantic
    role: semantic
    model: transformer
    params: {d_model: 32, layers: 1, heads: 2}
    writes: semantic
    sampler: {name: top-k, params: {k: 8}}
    guidance_scale: 2.0
  - name: coarse
    role: coarse
    model: transformer
    params: {d_model: 32, layers: 1, heads: 2}
    reads: [semantic]
    writes: acoustic[0:2]
    sampler: top-k
    guidance_scale: 2.0
  - name: fine
    role: fine
    model: transformer
    params: {d_model: 32, layers: 1, heads: 2}
    reads:
      - acoustic[0:2]
    writes: acoustic[2:4]
    conditioning: none
    sampler: greedy
output: {seconds: 0.5}
"""


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
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run
