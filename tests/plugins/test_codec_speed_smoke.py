"""benchmarks/codec_speed.py still runs (--quick) and writes both result files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_codec_speed_quick(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "codec_speed.py"), "--quick", "--out-dir", str(tmp_path)],
                   check=True, capture_output=True, text=True, env={**os.environ, "CADENZA_OFFLINE": "1"})
    result = json.loads((tmp_path / "codec_speed.json").read_text())
    assert "codec_speed.py --quick" in result["command"] and result["machine"]["torch"]
    assert {r["codec"] for r in result["results"]} >= {"encodec 24khz tiny", "encodec 48khz tiny", "dac 44khz tiny"}
    for row in result["results"]:
        for op in ("encode", "decode"):
            assert row[op]["cadenza_x_realtime"] > 0 and row[op]["direct_x_realtime"] > 0
            assert isinstance(row[op]["overhead_pct"], float)
            assert 0 < row[op]["wrapper_pct"] < 5  # the wrapper's own work, timed alone: microseconds
    named = {r["codec"] for r in result["results"]} | {s["codec"] for s in result["skipped"]}
    assert {"encodec 24khz", "encodec 48khz", "dac 44khz"} <= named  # published models: measured or said skipped
    text = (tmp_path / "codec_speed.md").read_text()
    assert text.startswith("# Codec speed") and "| encodec 48khz tiny |" in text
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["codec_speed.json", "codec_speed.md"]
