"""The benchmark scripts still run (tiny settings) and write their result files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_decode_speed_quick(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "decode_speed.py"), "--quick", "--out-dir", str(tmp_path)],
                   check=True, capture_output=True, text=True)
    result = json.loads((tmp_path / "decode_speed.json").read_text())
    assert "decode_speed.py" in json.dumps(result)
    assert (tmp_path / "decode_speed.md").read_text().startswith("#")


def test_startup_quick(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "startup.py"), "--runs", "1", "--out-dir", str(tmp_path)],
                   check=True, capture_output=True, text=True)
    rows = json.loads((tmp_path / "startup.json").read_text())["results"]
    assert [r["command"] for r in rows][0] == "cadenza --help"
    assert not any(r["imports_torch"] for r in rows)


def test_corpus_speed_quick(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "corpus_speed.py"), "--quick", "--out-dir", str(tmp_path)],
                   check=True, capture_output=True, text=True)
    result = json.loads((tmp_path / "corpus_speed.json").read_text())
    assert result["clips"] == 8 and result["clips_per_second"] > 0


def test_longform_stability_quick(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "longform_stability.py"), "--pipeline", "tiny-random",
                    "--seconds", "3", "--segment", "1", "--out-dir", str(tmp_path)], check=True, capture_output=True,
                   text=True)
    result = json.loads((tmp_path / "longform_stability.json").read_text())
    assert len(result["segments"]) == 3 and set(result["agreement"]) == {"tempo_class", "key", "mode"}
    assert 0 < result["agreement"]["key"]["share"] <= 1
