"""recipes/default_model.py: every step of the default model's recipe runs, at a tiny scale.

The recipe trains the shipped default pipeline; its `--scale quick` variant runs the very same
commands (corpus, codec and semantic k-means, the cache, three stages, export) in minutes,
so a change that breaks the recipe fails here rather than hours into a real run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cadenza.core.engine.cascade import Cascade

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_quick_recipe_trains_and_exports_a_working_pipeline(tmp_path, registry):
    work = tmp_path / "recipe"
    command = [sys.executable, str(ROOT / "recipes" / "default_model.py"), "--work", str(work), "--scale", "quick",
               "--skip-eval"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    steps = [s["name"] for s in json.loads((work / "recipe.json").read_text())["steps"]]
    assert steps == ["corpus", "codec", "semantic-kmeans", "prepare", "train-fine", "train-semantic", "train-coarse",
                     "export"]
    report = (work / "report.md").read_text()
    assert "| train-coarse | `cadenza train --pipeline spec-stages.yaml --stage coarse --cache cache" in report
    assert str(work) not in report and "## Speed" in report
    cascade = Cascade.from_spec(work / "export" / "pipeline.yaml", registry)
    assert cascade.random_components() == []
    spec = cascade.pipeline.spec
    # text-conditioned stages on the grouped codec: the coarse stage writes every band's first level
    assert spec.conditioner.name == "minilm" and spec.tokenizer.params["groups"] == 2
    assert [(s.spec.writes.start, s.spec.writes.stop) for s in cascade.pipeline.stages] == [(0, None), (0, 2), (2, 4)]
    audio = cascade.generate(["a slow cello"], seconds=1.0, seed=0).audio
    assert audio.shape[-1] == cascade.sample_rate and float(audio.abs().max()) > 0
    again = subprocess.run(command, capture_output=True, text=True)  # every step is done: nothing reruns
    assert again.returncode == 0 and again.stdout.count(": done (") == len(steps)
