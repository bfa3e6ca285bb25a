"""benchmarks/continuation_seam.py runs with tiny settings: a codec without token spectra
(tiny-random's) and no rendered corpus once made it fail on an empty mean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_continuation_seam_tiny(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "continuation_seam.py"), "--pipeline", "tiny-random",
                    "--corpus", "0", "--segments", "1", "--seeds", "0", "--new-seconds", "1", "--label", "smoke",
                    "--out-dir", str(tmp_path)],
                   check=True, capture_output=True, text=True, env={**os.environ, "CADENZA_OFFLINE": "1"})
    (run,) = json.loads((tmp_path / "continuation_seam.json").read_text())["runs"]
    assert run["label"] == "smoke" and run["pipeline"] == "tiny-random"
    recordings = sorted((ROOT / "tests" / "data").glob("*.wav"))
    assert run["summary"]["clips"] == len(recordings) == len(run["rows"])  # one segment of each recording
    assert all(r["tokens_before"] is None for r in run["rows"])  # tiny-codec has no magnitudes
    assert set(run["summary"]["tokens_jump_db"].values()) == {None}
    assert all(isinstance(v, float) for v in run["summary"]["jump_db"].values())
    text = (tmp_path / "continuation_seam.md").read_text()
    assert text.startswith("# Continuation seam") and "n/a / n/a / n/a" in text
