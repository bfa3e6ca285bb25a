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


def test_mulan_conditioning_quick(tmp_path, render_corpus, write_spec):
    from tiny_specs import TINY_SPEC

    mulan = ("{name: mulan, params: {n_mels: 32, patch_mels: 8, patch_frames: 8, clip_seconds: 2.0, audio_dim: 32, "
             "audio_layers: 1, audio_heads: 2, text_dim: 32, text_layers: 1, text_heads: 2, dim: 16, "
             "num_quantizers: 3, codebook_size: 8, output: quantized}}")
    spec = write_spec(TINY_SPEC.replace("{name: byte-text, params: {dim: 16, output: pooled}}", mulan))
    corpus = render_corpus(16, 1.0, 5)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "mulan_conditioning.py"), "--pipeline", str(spec),
                           "--corpus", str(corpus), "--train", "8", "--test", "4", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "mulan_conditioning.json").read_text())["pipelines"][0]
    assert len(result["token_agreement"]) == 3 and all(0 <= x <= 1 for x in result["token_agreement"])
    assert set(result["probes"]) == {"tempo_class", "key", "mode", "register", "dynamics", "drums", "instrument"}
    assert all(0 <= v <= 1 for row in result["probes"].values() for v in row.values())
    assert "quantized text" in (tmp_path / "mulan_conditioning.md").read_text()
