"""benchmarks/kill_resume.py runs: SIGKILL at random moments, resume, and every check passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path):
    workflows = ["prepare", "train", "batch"]  # bench, the slowest, runs in the full benchmark
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kill_resume.py"), "--moments", "2",
                           "--workflows", ",".join(workflows), "--out-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "CADENZA_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((tmp_path / "out" / "kill_resume.json").read_text())
    assert result["passed"] and result["command"].endswith("--moments 2 --workflows prepare,train,batch")
    assert [w["workflow"] for w in result["workflows"]] == workflows
    for workflow in result["workflows"]:
        assert workflow["moments"] == 2 and len(workflow["runs"]) == 2
        assert workflow["failures"] == [], workflow["failures"]
        for run in workflow["runs"]:
            assert run["passed"] and run["identical"], run
            assert run["landed"] is False or run["resume_rc"] == 0 or run["resume_refused_finished"], run
            assert 0 < run["kill_at"] < workflow["reference_seconds"]
    text = (tmp_path / "out" / "kill_resume.md").read_text()
    assert text.startswith("# Kill -9 and resume") and "| prepare |" in text and "## Failures\n\nNone." in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["kill_resume.json", "kill_resume.md"]
