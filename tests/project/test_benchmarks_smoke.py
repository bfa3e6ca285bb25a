"""The benchmark scripts still run (tiny settings) and write their result files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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
                    "--seconds", "3", "--segment", "1", "--seeds", "0,1", "--hold", "0", "--hold", "4",
                    "--reference", "1", "--out-dir", str(tmp_path)], check=True, capture_output=True, text=True)
    result = json.loads((tmp_path / "longform_stability.json").read_text())
    assert [(r["hold"], r["seed"]) for r in result["runs"]] == [(0, 0), (0, 1), (4, 0), (4, 1)]
    run = result["runs"][0]
    assert len(run["segments"]) == 3 and set(run["agreement"]) == {"bpm", "tempo_class", "key", "mode", "profile_key"}
    median = run["agreement"]["bpm"]["median"]  # the share of segments within 8% of the piece's median tempo
    steady = sum(abs(s["bpm"] / median - 1) <= 0.08 for s in run["segments"]) / 3
    assert run["agreement"]["bpm"]["share"] == round(steady, 3) and run["beat"] == 0 and run["pulse"] is None
    assert 0 < run["agreement"]["key"]["share"] <= 1 and [s["hold"] for s in result["summary"]] == [0, 4, None]
    piece = result["reference"][0]  # a rendered corpus piece of the same length: the ceiling row
    assert len(piece["segments"]) == 3 and piece["caption"] and 0 < piece["agreement"]["tempo_class"]["share"] <= 1
    page = (tmp_path / "longform_stability.md").read_text()
    assert "| hold 4, beat 0 | 1 | 2 |" in page and "| corpus pieces | 0 | 2 |" in page


def test_longform_stability_helpers():
    """The semantic-token key (music-features centroids' chroma block against the key profiles),
    and the movement measure that tells a frozen chord from changing notes."""
    import importlib.util
    import math

    import numpy as np
    import torch

    from cadenza.core.engine.cascade import Cascade

    spec = importlib.util.spec_from_file_location("longform_stability", ROOT / "benchmarks" / "longform_stability.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    g_major = np.zeros(12)
    g_major[[7, 9, 11, 0, 2, 4, 6]] = 1.0  # the G major scale ...
    g_major[[7, 11, 2]] = 2.0  # ... with its tonic triad sounding most
    assert bench.key_of_chroma(g_major) == "G major"
    assert bench.key_of_chroma(np.roll(g_major, -7)) == "C major"
    assert bench.semantic_chroma(Cascade.from_spec("tiny-random")) is None  # mel-kmeans centroids carry no chroma
    chroma = bench.semantic_chroma(Cascade.from_spec("default"))
    assert chroma.shape == (256, 12) and (chroma >= 0).all() and chroma.any()
    t = torch.arange(4 * 16000) / 16000
    held = 0.3 * torch.sin(2 * math.pi * 220 * t)[None]
    notes = torch.cat([0.3 * torch.sin(2 * math.pi * f * t[:4000]) for f in (220, 330, 262, 392) * 4])[None]
    assert bench.movement(held, 16000) < 0.05 and bench.movement(notes, 16000) > 0.15


def test_movement_over_time_quick(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "movement_over_time.py"), "--pipeline", "tiny-random",
                    "--n", "3", "--seconds", "4", "--window", "10", "--window", "2", "--window", "spec",
                    "--out-dir", str(tmp_path)], check=True, capture_output=True, text=True)
    result = json.loads((tmp_path / "movement_over_time.json").read_text())
    one_pass, windowed, spec = result["generated"]
    assert spec["window"] is None  # tiny-random sets no window: one pass
    assert result["clips"] == 3 and len(result["corpus"]) == len(one_pass["quarters"]) == 4
    assert one_pass["window"] is None and (windowed["window"], windowed["overlap"]) == (2.0, 1.0)
    values = result["corpus"] + one_pass["quarters"] + windowed["quarters"]
    assert all(0 <= v <= 2 for v in values) and max(result["corpus"]) > 0.05
    page = (tmp_path / "movement_over_time.md").read_text()
    assert "| corpus |" in page and "| tiny-random, one pass |" in page and "2 s windows, 1 s overlap" in page


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


def test_output_levels_quick(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "output_levels.py"), "--quick", "--out-dir", str(tmp_path)],
                   check=True, capture_output=True, text=True)
    result = json.loads((tmp_path / "output_levels.json").read_text())
    assert all(r["written"]["true_peak_dbtp"] <= -1.0 and r["written"]["clipped"] == 0 for r in result["rows"])
    assert (tmp_path / "output_levels.md").read_text().startswith("# Output levels")



def test_text_conditioning_probe_quick(tmp_path, render_corpus):
    corpus = render_corpus(16, 1.0, 5)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "text_conditioning_probe.py"), "--corpus",
                           str(corpus), "--train", "12", "--test", "4", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "text_conditioning_probe.json").read_text())
    assert set(result["probes"]) == {"tempo_class", "key", "mode", "register", "dynamics", "drums", "instrument"}
    assert all(0 <= row["text"] <= 1 and 0 < row["majority"] <= 1 for row in result["probes"].values())
    assert "| instrument |" in (tmp_path / "text_conditioning_probe.md").read_text()


def test_codec_fidelity_merge_keeps_earlier_rows_of_the_same_clips(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from codec_fidelity import merge_earlier

    def row(label: str, agreement: float) -> dict:
        return {"label": label, "mean_agreement": agreement, "mel_distance": 0.2, "fit_seconds": 1.0,
                "decode_10s_cpu_seconds": 0.1, "config": {"tokens_per_second": 400}}

    clips = {"corpus": "c", "train_clips": 2, "test_clips": 1, "fit_frames": 9, "epochs": 1, "original_accuracy": {}}
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({**clips, "command": "old run", "variants": [row("a", 0.9), row("b", 0.5)]}))
    merged = merge_earlier(earlier, {**clips, "command": "new run", "variants": [row("b", 0.8)]})
    assert [(r["label"], r.get("command")) for r in merged["variants"]] == [("b", None), ("a", "old run")]
    assert merged["chosen"] == "a"
    with pytest.raises(SystemExit, match="other clips \\(test_clips differ\\)"):
        merge_earlier(earlier, {**clips, "test_clips": 2, "variants": []})


def test_coarse_guidance_quick(tmp_path, render_corpus):
    corpus = render_corpus(16, 1.0, 5)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "coarse_guidance.py"), "--pipeline", "tiny-random",
                           "--scales", "1,3", "--seeds", "2", "--prompts", str(corpus / "test.jsonl"), "--limit", "1",
                           "--adherence-seeds", "1", "--out-dir", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "coarse_guidance.json").read_text())["rows"]
    assert [r["guidance"] for r in rows] == [1.0, 3.0]
    assert all(-1 <= r["melody"][k] <= 1 for r in rows for k in ("with_melody", "text_only"))
    assert all(r["melody"]["seeds"] == 2 and r["adherence"]["clips"] == 1 for r in rows)
    assert "| 3 |" in (tmp_path / "coarse_guidance.md").read_text()


def test_codec_recordings_quick(tmp_path):
    """Real recordings through the shipped codec: the quick run measures two segments, both rows."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "codec_recordings.py"), "--quick",
                           "--out-dir", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "codec_recordings.json").read_text())
    assert result["segments"] == 2 and [r["quantised"] for r in result["rows"]] == [True, False]
    assert all(0 <= r["mean_agreement"] <= 1 and r["mel_distance"] > 0 for r in result["rows"])
    # the unquantised spectrum is nearer the original than its quantised codes
    assert result["rows"][1]["mel_distance"] < result["rows"][0]["mel_distance"]
    assert "skipped by --quick" in (tmp_path / "codec_recordings.md").read_text()


def test_default_ablation_collects_evaluate_runs(tmp_path, cli, tiny_spec, render_corpus):
    """Rows come from real `cadenza evaluate` outputs; a second call replaces its label and keeps the rest."""
    corpus = render_corpus(2, 1.0, 6)
    evaluated = tmp_path / "eval"
    code, _, stderr = cli("evaluate", "--pipeline", tiny_spec, "--prompts", corpus / "manifest.jsonl", "--out",
                          evaluated, "--quiet")
    assert code == 0, stderr
    script = [sys.executable, str(ROOT / "benchmarks" / "default_ablation.py"), "--out-dir", str(tmp_path)]
    for label in ("a", "b", "a"):
        done = subprocess.run([*script, "--row", f"{label}={evaluated}", "--note", f"{label}=variant {label}."],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "default_ablation.json").read_text())["rows"]
    summary = json.loads((evaluated / "summary.json").read_text())["adherence"]["all"]
    assert [r["label"] for r in rows] == ["b", "a"]
    assert rows[1]["groups"]["all"]["overall"] == summary["overall"]["generated"]
    assert rows[1]["evaluate_command"].startswith("cadenza evaluate") and rows[1]["note"] == "variant a."
    assert "| a | 2 |" in (tmp_path / "default_ablation.md").read_text()
    missing = subprocess.run([*script, "--row", f"c={tmp_path / 'nowhere'}"], capture_output=True, text=True)
    assert missing.returncode != 0 and "summary.json is missing" in missing.stderr
