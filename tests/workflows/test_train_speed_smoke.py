"""benchmarks/train_speed.py still runs (--quick) and writes both result files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_train_speed_quick(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_speed.py"), "--quick", "--out-dir", str(tmp_path)],
                   check=True, capture_output=True, text=True, env={**os.environ, "CADENZA_OFFLINE": "1"})
    result = json.loads((tmp_path / "train_speed.json").read_text())
    assert "train_speed.py --quick" in result["command"] and result["machine"]["torch"]
    assert [r["stage"] for r in result["results"]] == ["semantic", "coarse", "fine"]
    for row in result["results"]:
        for key in ("cache_tokens_per_s", "retokenise_tokens_per_s", "trainer_tokens_per_s", "speedup"):
            assert row[key] > 0, (key, row)
    assert result["prepare_seconds"] > 0
    text = (tmp_path / "train_speed.md").read_text()
    assert text.startswith("# Stage training speed") and "| coarse |" in text
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["train_speed.json", "train_speed.md"]
