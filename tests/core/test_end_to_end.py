"""The whole user path on a few synthesised clips, through the command line only:
audio folder -> `cadenza prepare` -> `cadenza train` for every stage -> `cadenza export`
-> `cadenza validate` + `cadenza generate` with the trained weights."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile
import yaml

from tiny_specs import TINY_SPEC


KEYS = ("A", "B flat", "B")


def write_clips(folder, count: int = 6, seconds: float = 2.0, rate: int = 16000):
    """Tone arpeggios in one of three keys, with captions naming the key (a .jsonl manifest):
    tokens have structure to learn, and the text conditioner has something to condition on."""
    folder.mkdir()
    manifest = folder / "manifest.jsonl"
    t = np.arange(int(seconds * rate)) / rate
    for i in range(count):
        notes = 220.0 * 2 ** (np.array([0, 4, 7, 12]) / 12 + (i % 3) / 12)
        freq = notes[(t * 4).astype(int) % len(notes)]
        phase = 2 * math.pi * np.cumsum(freq) / rate
        soundfile.write(folder / f"clip{i}.wav", (0.3 * np.sin(phase)).astype(np.float32), rate)
    manifest.write_text("".join(json.dumps({"audio": f"clip{i}.wav", "caption": f"an arpeggio in {KEYS[i % 3]} major"})
                                + "\n" for i in range(count)))
    return manifest


def losses(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()
            if line.strip() and "loss" in json.loads(line)]


@pytest.mark.slow
def test_audio_to_trained_pipeline_to_generation(cli, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(TINY_SPEC)
    manifest = write_clips(tmp_path / "audio")
    code, _, err = cli("prepare", "-p", spec, "--data", manifest, "--out", tmp_path / "cache",
                       "--clip-seconds", 1.0, "--valid-fraction", 0.0, "--workers", 0)
    assert code == 0, err

    runs = {}
    for stage in ("semantic", "coarse", "fine"):
        runs[stage] = tmp_path / f"run-{stage}"
        code, _, err = cli("train", "-p", spec, "--stage", stage, "--cache", tmp_path / "cache", "--out", runs[stage],
                           "--steps", 40, "--batch-size", 4, "--lr", 3e-3, "--warmup-steps", 5, "--seconds", 0.8,
                           "--checkpoint-every", 20, "--valid-every", 100, "--ema-decay", 0, "--conditioning", "text")
        assert code == 0, err
        curve = losses(runs[stage])
        first, last = np.mean(curve[:5]), np.mean(curve[-5:])
        assert last < 0.8 * first, (stage, first, last)  # the loss drops markedly

    out = tmp_path / "trained"
    code, _, err = cli("export", "-p", spec, *[f"--run={s}={r}" for s, r in runs.items()], "--out", out)
    assert code == 0, err
    stages = {s["name"]: s for s in yaml.safe_load((out / "pipeline.yaml").read_text())["stages"]}
    assert all(stages[s]["weights"] == f"./weights/{s}" for s in runs)
    assert cli("validate", out / "pipeline.yaml")[0] == 0
    wav = tmp_path / "gen.wav"
    code, _, err = cli("generate", "a rising arpeggio", "-p", out / "pipeline.yaml", "-s", 0.5, "-o", wav)
    assert code == 0, err
    sidecar = json.loads(wav.with_suffix(".json").read_text())
    assert not any(slot.startswith("stages.") for slot in sidecar["random_weights"])  # trained stages ran
    assert soundfile.info(str(wav)).frames == 8000
