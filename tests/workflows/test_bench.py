"""``cadenza bench``: matrix expansion, incompatible and failing combinations, results, plots, resume."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tiny_specs import TINY_SPEC, codec_spec

from cadenza.core.engine.cascade import Cascade
from cadenza.core.spec.validate import check_tree
from cadenza.plugins.workflows.bench.matrix import apply_overrides, load_matrix
from cadenza.plugins.workflows.bench.measure import measure
from cadenza.plugins.workflows.bench.report import noise_slots, to_markdown
from cadenza.plugins.workflows.bench.run import RESULTS, Shard, _job, parse_shard, select
from cadenza.core.errors import InputError, SpecError

Q2_CODEC = "{name: tiny-codec, params: {num_codebooks: 2, codebook_size: 64, channels: 8, latent_dim: 16}}"
MATRIX = f"""\
name: tiny-test
base: tiny.yaml
vary:
  stages.coarse.sampler: [greedy, {{name: top-k, params: {{k: 4}}}}]
combinations:
  - label: two-codebooks
    set: {{tokenizer: {Q2_CODEC}}}
prompts: prompts.jsonl
seeds: 1
seconds: 0.5
threads: 1
metrics: [loudness, mel-distance]
"""


@pytest.fixture
def matrix_file(tmp_path: Path) -> Path:
    """A matrix over the tiny test spec, with a manifest whose reference clip is a real (synthesised) recording."""
    import soundfile
    import torch

    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    t = torch.arange(24000) / 24000
    tone = 0.3 * torch.sin(2 * math.pi * 220 * t) * (1 + torch.sin(2 * math.pi * 2 * t)) / 2
    soundfile.write(tmp_path / "tone.wav", tone.numpy(), 24000)
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"caption": "a slow soft tone", "audio": "tone.wav",
                                                        "tempo_class": "slow", "dynamics": "soft"}) + "\n")
    path = tmp_path / "matrix.yaml"
    path.write_text(MATRIX)
    return path


def test_matrix_expands_labels_ids_and_finds_the_incompatible_pair(matrix_file, registry):
    matrix = load_matrix(matrix_file, registry)
    labels = [c.label for c in matrix.combinations]
    assert labels == ["greedy", "top-k(k=4)", "two-codebooks"]
    assert [c.reason is None for c in matrix.combinations] == [True, True, False]
    assert "acoustic[2:4] asks for codebooks up to 4, but tokenizer 'tiny-codec' has 2" in matrix.combinations[2].reason
    assert matrix.combinations[1].tree["stages"][1]["sampler"] == {"name": "top-k", "params": {"k": 4}}
    assert [p.attributes for p in matrix.prompts] == [{"tempo_class": "slow", "dynamics": "soft"}]
    assert matrix.references == (str((matrix_file.parent / "tone.wav").resolve()),)
    # ids are stable across loads, readable, and change with the overrides
    again = load_matrix(matrix_file, registry)
    assert [c.id for c in again.combinations] == [c.id for c in matrix.combinations]
    assert matrix.combinations[0].id.startswith("greedy-")
    matrix_file.write_text(MATRIX.replace("k: 4", "k: 5"))
    changed = load_matrix(matrix_file, registry).combinations
    assert changed[0].id == matrix.combinations[0].id and changed[1].id != matrix.combinations[1].id


def test_overrides_grow_shorthands_and_null_removes():
    base = {"conditioner": "byte-text", "stages": [{"name": "coarse", "sampler": "top-k", "params": {"d_model": 32}}]}
    tree = apply_overrides(base, {"stages.coarse.sampler.params": {"k": 3}, "stages.coarse.params.layers": 2})
    assert tree["stages"][0]["sampler"] == {"name": "top-k", "params": {"k": 3}}
    assert tree["stages"][0]["params"] == {"d_model": 32, "layers": 2}
    from cadenza.plugins.workflows.bench.matrix import REMOVE

    assert "conditioner" not in apply_overrides(base, {"conditioner": REMOVE})
    assert base["stages"][0]["sampler"] == "top-k"  # the base is not modified


@pytest.mark.parametrize(("text", "message"), [
    ("base: tiny.yaml\nvary: {stages.nope.sampler: [greedy]}\n",
     r"matrix.yaml:2: vary.stages.nope.sampler: the base pipeline has no stage 'nope' \(stages: semantic, coarse, fine\)"),
    ("base: tiny.yaml\nmetrics: [no-such-metric]\n", r"matrix.yaml:2: unknown metric 'no-such-metric'"),
    ("base: tiny.yaml\nmetrics: [{name: loudness, params: {threshold_lufs: loud}}]\n",
     r"matrix.yaml:2: metric 'loudness': threshold_lufs"),
    ("base: tiny.yaml\nseeds: -1\n", r"matrix.yaml:2: seeds must be a count"),
    ("base: tiny.yaml\nsamplers: [greedy]\n", r"matrix.yaml:2: unknown key 'samplers'"),
    ("base: nowhere.yaml\n", r"matrix.yaml:1: base: nowhere.yaml: no such spec file or pipeline preset"),
    ("base: tiny.yaml\nprompts: missing.jsonl\n", r"matrix.yaml:2: prompts: .*missing.jsonl: cannot read"),
])
def test_bad_matrices_are_located_one_line_errors(tmp_path, registry, text, message):
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    (tmp_path / "matrix.yaml").write_text(text)
    with pytest.raises(SpecError) as info:
        load_matrix(tmp_path / "matrix.yaml", registry)
    assert len(info.value.problems) == 1
    assert re.search(message, info.value.problems[0]), info.value.problems


def test_shards_split_the_combinations_round_robin(matrix_file, registry):
    matrix = load_matrix(matrix_file, registry)
    assert parse_shard("1/2") == Shard(1, 2)
    assert parse_shard("env", {"RANK": "0", "WORLD_SIZE": "3"}) == Shard(0, 3)
    parts = [[c.id for c in select(matrix, None, Shard(k, 2))] for k in (0, 1)]
    assert sorted(parts[0] + parts[1]) == sorted(c.id for c in matrix.combinations) and not set(parts[0]) & set(parts[1])
    for bad in ("2/2", "1-2", "env"):
        with pytest.raises(InputError):
            parse_shard(bad, {})


def test_a_combination_that_fails_to_build_is_a_failed_row(matrix_file, registry):
    """Measured in this process: the real measuring code, with a weights folder that holds no model."""
    folder = matrix_file.parent / "bad-weights"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    matrix_file.write_text(MATRIX.replace("combinations:\n", "combinations:\n  - label: bad-weights\n"
                                          "    set: {stages.fine.weights: bad-weights}\n"))
    matrix = load_matrix(matrix_file, registry)
    bad = next(c for c in matrix.combinations if c.label == "bad-weights")
    assert bad.reason is None  # the validator only checks that the file exists
    row = measure(_job(bad, matrix, "cpu", 1, matrix.fingerprint("cpu")))
    assert row["status"] == "failed" and "model.safetensors" in row["error"] and "\n" not in row["error"]


CODEC_MATRIX = f"""\
name: codecs
base: one-stage.yaml
vary:
  tokenizer: [mu-law, {{label: tiny-codec, {Q2_CODEC[1:-1]}}}]
combinations:
  - label: mu-law+trained-stage   # the stage's weights loaded from a file, no conditioner: nothing is random
    set: {{conditioner: null, stages.lm.weights: ./stage}}
prompts: prompts.jsonl
seeds: 1
seconds: 0.1
warmup: false
threads: 1
metrics: [si-sdr, mel-distance]
"""


def test_a_codec_that_needs_no_weights_is_measured_for_real(matrix_file, register_plugin, cadenza_registry,
                                                           monkeypatch):
    """A codec registered with ``needs_weights=False`` is not "random": its fidelity is reported as real,
    under random stages too, while a random codec's row still says speed only."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "registry"))
    import weightless_plugin

    register_plugin(weightless_plugin)
    cadenza_registry.add_builtins("tiny", "transformer", "samplers", "evaluation")
    folder = matrix_file.parent
    base = codec_spec({"name": "mu-law"}, name="one-stage")
    (folder / "one-stage.yaml").write_text(yaml.safe_dump(base))
    unconditioned = {k: v for k, v in base.items() if k != "conditioner"}
    stage = Cascade(check_tree(unconditioned, cadenza_registry), cadenza_registry).models["lm"]
    stage.save_pretrained(folder / "stage")  # weights from a file: to the cascade, a trained stage
    (folder / "codecs.yaml").write_text(CODEC_MATRIX)
    matrix = load_matrix(folder / "codecs.yaml", cadenza_registry)
    assert [c.reason for c in matrix.combinations] == [None] * 3
    dsp, random, real = [measure(_job(c, matrix, "cpu", 1, matrix.fingerprint("cpu"))) for c in matrix.combinations]
    assert [r["status"] for r in (dsp, random, real)] == ["ok"] * 3, [r.get("error") for r in (dsp, random, real)]

    assert dsp["components"]["tokenizer"] == "mu-law" and dsp["random_weights"] == ["conditioner", "stages.lm.model"]
    assert random["components"]["tokenizer"] == "tiny-codec@random" and "tokenizer" in random["random_weights"]
    assert real["random_weights"] == []
    assert dsp["metrics"]["codec.si_sdr"] > 20 > random["metrics"]["codec.si_sdr"]  # 8-bit mu-law vs an untrained net
    assert math.isfinite(dsp["metrics"]["codec.mel_distance"])
    assert noise_slots(dsp, "codec.si_sdr") == [] and noise_slots(random, "codec.si_sdr") == ["tokenizer"]
    assert noise_slots(real, "codec.si_sdr") == noise_slots(real, "si_sdr") == []

    page = to_markdown([dsp, random, real], {"name": "codecs", "machine": "here", "settings": "1 prompt"})
    notes = {row["id"]: [line for line in page.splitlines() if line.startswith(f"- `{row['id']}`: random")]
             for row in (dsp, random, real)}
    assert len(notes[dsp["id"]]) == 1 and "codec fidelity (`codec.*`" in notes[dsp["id"]][0]
    assert "speed only" not in notes[dsp["id"]][0]
    assert len(notes[random["id"]]) == 1 and "speed only" in notes[random["id"]][0]
    assert notes[real["id"]] == []
    weights = {line.split(" | ")[0][2:]: line.split(" | ")[2] for line in page.splitlines() if line.startswith("| mu")}
    assert weights == {"mu-law": "random", "mu-law+trained-stage": "trained"}


def _table(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("|")]


def _rows(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (out / RESULTS).read_text().splitlines())}


@pytest.mark.slow
def test_bench_runs_writes_results_and_plots_and_resumes_after_a_kill(matrix_file, registry, cli, tmp_path):
    out = tmp_path / "out"
    ids = [c.id for c in load_matrix(matrix_file, registry).combinations]
    # A real run, killed (SIGKILL, whole process group) as soon as its first combination is recorded.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cadenza.core.cli.main", "bench", str(matrix_file), "--out", str(out),
                             "--quiet"], cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / RESULTS).exists() and any(r["status"] == "ok" for r in _rows(out).values()):
                break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before_kill = _rows(out)
    assert any(r["status"] == "ok" for r in before_kill.values()), proc.stderr.read().decode()
    assert len(before_kill) < len(ids), "the run finished before it could be killed"

    code, stdout, stderr = cli("bench", matrix_file, "--out", out)
    assert code == 2 and "pass --resume" in stderr  # never silently overwritten
    code, stdout, stderr = cli("bench", matrix_file, "--out", out, "--resume", "--workers", "2", "--quiet")
    assert code == 0, stderr
    assert "1 incompatible of 3 combinations" in stdout
    rows = _rows(out)
    assert list(rows) == list(before_kill) + [i for i in ids if i not in before_kill]
    for kept, row in before_kill.items():
        assert rows[kept] == row  # finished rows are neither recomputed nor lost

    incompatible = rows[ids[2]]
    assert incompatible["status"] == "incompatible" and "has 2 (acoustic[0:2] at most)" in incompatible["reason"]
    for i in ids[:2]:
        row = rows[i]
        assert row["status"] == "ok", row
        assert row["stages"] == ["semantic", "coarse", "fine", "decode"]
        assert row["rtf"] > 0 and row["audio_s"] == 0.5 and row["tokens_per_s_total"] > 0
        assert row["peak_rss_mb"] >= row["rss_start_mb"] > 0 and row["threads"] == 1
        assert row["parameters_total"] == sum(row["parameters"].values()) > 0
        assert math.isfinite(row["metrics"]["codec.mel_distance"]) and "loudness_lufs" in row["metrics"]
        assert "mel_distance" not in row["metrics"]  # fidelity is scored on the codec round trip only
        assert "tokenizer" in row["random_weights"]

    table = _table(out / "results.md")
    assert len(table) == 2 + 3 and all(f"`{i}`" in "\n".join(table) for i in ids)
    assert "skipped, incompatible: " in (out / "results.md").read_text()
    with open(out / "results.csv", newline="") as handle:
        assert [r["id"] for r in csv.DictReader(handle)] == ids
    for png in ("quality_vs_speed.png", "stage_times.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Resumed again with nothing left to do: no combination is measured, the same table is written.
    results = (out / RESULTS).read_bytes()
    code, stdout, stderr = cli("bench", matrix_file, "--out", out, "--resume", "--quiet")
    assert code == 0, stderr
    assert (out / RESULTS).read_bytes() == results and _table(out / "results.md") == table

    # Shard files from several machines merge into results.jsonl, again without measuring anything.
    lines = results.decode().splitlines(keepends=True)
    (out / "results-0-of-2.jsonl").write_text("".join(lines[::2]))
    (out / "results-1-of-2.jsonl").write_text("".join(lines[1::2]))
    (out / RESULTS).unlink()
    code, stdout, stderr = cli("bench", matrix_file, "--out", out, "--resume", "--quiet")
    assert code == 0, stderr
    assert _rows(out) == {i: rows[i] for i in ids[::2] + ids[1::2]} and _table(out / "results.md") == table


def test_list_prints_ids_and_reasons_without_running(matrix_file, cli, tmp_path):
    code, stdout, stderr = cli("bench", matrix_file, "--out", tmp_path / "never", "--list")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert len(lines) == 3 and lines[0].split()[1] == "ok" and "incompatible: acoustic[2:4]" in lines[2]
    assert not (tmp_path / "never").exists()


def test_settings_changed_since_the_results_is_an_error(matrix_file, registry, tmp_path):
    from cadenza.plugins.workflows.bench.run import run_matrix

    out = tmp_path / "out"
    matrix = load_matrix(matrix_file, registry)
    only_incompatible = [matrix.combinations[2].id]  # recorded without a worker process
    run_matrix(matrix, out, only=only_incompatible, note=lambda line: None)
    matrix_file.write_text(MATRIX.replace("seconds: 0.5", "seconds: 0.25"))
    with pytest.raises(InputError, match="measured with other prompts, seeds, seconds"):
        run_matrix(load_matrix(matrix_file, registry), out, resume=True, note=lambda line: None)


def test_the_documented_matrix_example_loads(tmp_path, registry):
    """docs/bench.md's example is a real matrix (with a preset base and the built-in prompts)."""
    [block] = re.findall(r"```yaml\n(.*?)```", (Path(__file__).resolve().parents[2] / "docs" / "bench.md").read_text(),
                         re.DOTALL)
    text = block.replace("base: my-pipeline.yaml", "base: tiny-random")
    text = "\n".join(line for line in text.splitlines() if not line.startswith(("prompts:", "references:")))
    (tmp_path / "matrix.yaml").write_text(text)
    matrix = load_matrix(tmp_path / "matrix.yaml", registry)
    assert len(matrix.combinations) == 2 * 2 * 2 * 2 + 1 and matrix.seeds == (0, 1)
    assert matrix.combinations[-1].label == "musicgen-style" and matrix.metrics[-1].subject == "codec"
