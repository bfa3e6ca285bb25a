"""``cadenza export``: trained runs -> a self-contained pipeline folder that validates and generates;
and the one-line refusals of export and of training on a cache that does not fit the spec."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from safetensors.torch import load_file

from cadenza.core.engine.cascade import Cascade
from cadenza.plugins.workflows.train.trainer import train
from test_trainer import make_cache, train_args  # tests/ is on sys.path (see conftest)
from tiny_specs import TINY_SPEC

FLAGS = ("--steps", 3, "--batch-size", 2, "--seconds", 0.4, "--checkpoint-every", 3, "--valid-every", 3,
         "--ema-decay", 0.5)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    spec = folder / "spec.yaml"
    spec.write_text(TINY_SPEC)
    cache = make_cache(folder / "cache", spec, clips=6, valid=0)
    out = {}
    for stage in ("coarse", "fine"):
        out[stage] = folder / f"run-{stage}"
        train(train_args(spec, stage, cache, out[stage], *FLAGS))
    return spec, cache, out


def one_line(cli, *args, expect: str) -> str:
    code, _, err = cli(*args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and len(lines) == 1 and expect in lines[0], err
    return lines[0]


def test_export_validate_generate(runs, cli, tmp_path):
    spec, _, run = runs
    out = tmp_path / "exported"
    code, _, err = cli("export", "-p", spec, "--run", f"coarse={run['coarse']}", "--run", f"fine={run['fine']}",
                       "--out", out)
    assert code == 0, err
    data = yaml.safe_load((out / "pipeline.yaml").read_text())
    stages = {s["name"]: s for s in data["stages"]}
    assert stages["coarse"]["weights"] == "./weights/coarse" and stages["fine"]["weights"] == "./weights/fine"
    assert "weights" not in stages["semantic"]  # untouched: still the default (random)
    assert sorted(p.name for p in (out / "weights" / "coarse").iterdir()) == ["config.json", "model.safetensors"]

    moved = tmp_path / "elsewhere"  # self-contained: works after moving the folder
    shutil.move(str(out), moved)
    spec_file = moved / "pipeline.yaml"
    code, stdout, err = cli("validate", spec_file)
    assert code == 0 and "valid: 3 stage(s)" in stdout, err
    wav = tmp_path / "x.wav"
    code, _, err = cli("generate", "soft piano", "--pipeline", spec_file, "--seconds", 0.2, "-o", wav, "-q")
    assert code == 0 and wav.exists(), err
    sidecar = json.loads(wav.with_suffix(".json").read_text())
    weights = {c["slot"]: c.get("weights") for c in sidecar["components"]}
    assert weights["stages.coarse.model"] == "./weights/coarse"
    assert "stages.coarse.model" not in sidecar["random_weights"]

    cascade = Cascade.from_spec(spec_file)  # the trained (EMA) weights are what generate builds
    trained = load_file(str(run["coarse"] / "export" / "model.safetensors"))
    for key, value in cascade.models["coarse"].state_dict().items():
        torch.testing.assert_close(value, trained[key])


def test_export_notes_a_window_longer_than_the_training_crops(runs, cli, tmp_path):
    spec, _, run = runs
    args = ("--run", f"coarse={run['coarse']}", "--run", f"fine={run['fine']}")
    code, _, err = cli("export", "-p", spec, *args, "--out", tmp_path / "a")
    assert code == 0 and "was trained on 0.4 s crops, but this pipeline generates up to 10 s in one pass" in err
    assert "set output.window: 0.4" in err
    windowed = tmp_path / "windowed.yaml"
    windowed.write_text(spec.read_text().replace("output: {seconds: 0.5}", "output: {seconds: 0.5, window: 0.5}"))
    code, _, err = cli("export", "-p", windowed, *args, "--out", tmp_path / "b")
    assert code == 0 and "note:" not in err  # a window the spec sets is its author's choice
    assert yaml.safe_load((tmp_path / "b" / "pipeline.yaml").read_text())["output"]["window"] == 0.5


def test_export_points_the_conditioner_at_a_mulan_run(runs, cli, tmp_path):
    spec, _, run = runs
    cascade = Cascade.from_spec(spec)
    conditioner_run = tmp_path / "mulan-run"
    cascade.conditioner.save_pretrained(conditioner_run / "export")  # the MuLan trainer writes the same format
    out = tmp_path / "exported"
    code, _, err = cli("export", "-p", spec, "--run", f"mulan={conditioner_run}", "--run", f"coarse={run['coarse']}",
                       "--out", out)
    assert code == 0, err
    data = yaml.safe_load((out / "pipeline.yaml").read_text())
    assert data["conditioner"]["weights"] == "./weights/mulan"
    code, _, err = cli("validate", out / "pipeline.yaml")
    assert code == 0, err


def test_export_refusals_are_one_line(runs, cli, tmp_path):
    spec, _, run = runs
    out = tmp_path / "out"
    one_line(cli, "export", "-p", spec, "--run", f"nope={run['coarse']}", "--out", out,
             expect="has no stage 'nope'; its stages are semantic, coarse, fine")
    one_line(cli, "export", "-p", spec, "--run", f"fine={run['coarse']}", "--out", out,
             expect="trained for another layout than stage 'fine'")
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoints").mkdir(parents=True)
    one_line(cli, "export", "-p", spec, "--run", f"coarse={unfinished}", "--out", out, expect="the run has no export")
    one_line(cli, "export", "-p", spec, "--run", "coarse", "--out", out, expect="expected STAGE=RUN")
    one_line(cli, "export", "-p", spec, "--run", f"mulan={run['coarse']}", "--out", out,
             expect="the spec's conditioner is 'byte-text'")
    assert not out.exists()  # nothing written when a check fails


def test_training_on_a_cache_for_another_codec_is_one_line(runs, cli, tmp_path):
    _, cache, _ = runs
    other = tmp_path / "other.yaml"
    other.write_text(TINY_SPEC.replace("codebook_size: 64", "codebook_size: 128"))
    line = one_line(cli, "train", "-p", other, "--stage", "coarse", "--cache", cache, "--out", tmp_path / "r",
                    expect="does not fit stage 'coarse'")
    assert "acoustic codebook_size: 64 in the cache, 128 in the spec" in line
    other.write_text(TINY_SPEC.replace("dim: 16, output: pooled", "dim: 24, output: pooled"))
    one_line(cli, "train", "-p", other, "--stage", "coarse", "--cache", cache, "--out", tmp_path / "r",
             expect="conditioning dim: 16 in the cache, 24 in the spec")
    other.write_text(TINY_SPEC.replace("frame_rate: 25,", "frame_rate: 50,"))
    one_line(cli, "train", "-p", other, "--stage", "semantic", "--cache", cache, "--out", tmp_path / "r",
             expect="semantic frame_rate: 25 Hz in the cache, 50 Hz in the spec")
    assert not (tmp_path / "r").exists()


def test_train_mulan_is_dispatched(cli, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr("cadenza.plugins.workflows.train.command.train_mulan", lambda config: calls.append(config) or 0)
    code, _, err = cli("train", "-p", "tiny-random", "--stage", "mulan", "--data", tmp_path, "--out", tmp_path / "r")
    assert code == 0 and len(calls) == 1 and calls[0].data == str(tmp_path), err


def test_a_cache_from_another_codec_of_the_same_shape_is_a_warning(runs, cli, tmp_path):
    _, cache, _ = runs
    other = tmp_path / "other.yaml"
    other.write_text(TINY_SPEC.replace("latent_dim: 16}", "latent_dim: 16, seed: 3}"))
    code, _, err = cli("train", "-p", other, "--stage", "fine", "--cache", cache, "--out", tmp_path / "r",
                       "--steps", 1, "--batch-size", 2, "--seconds", 0.4)
    assert code == 0, err
    assert "warning: the spec's tokenizer is not the one the cache was prepared with" in err and "'seed': 3" in err
