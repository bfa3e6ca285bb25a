"""The stage trainer: learning, exact resume, crash safety, refusals, and two processes.

Caches are built here directly with ``CacheWriter`` from synthetic tokens with learnable
structure (``cadenza prepare`` is tested on its own): semantic ids are an arithmetic sequence
whose step is set by the clip's class, the coarse codebooks are a function of the semantic
id and the class, the fine ones a function of the coarse ones, and the conditioning is a
fixed vector per class.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cadenza.core.cli.main import build_parser
from cadenza.plugins.workflows.train.config import TrainConfig, config_from_args
from cadenza.plugins.workflows.train.stage_data import StreamBatches
from cadenza.plugins.workflows.prepare.token_cache import cache_header
from cadenza.plugins.workflows.prepare.token_cache import CacheWriter
from cadenza.plugins.workflows.train.trainer import CHECKPOINTS, LATEST, latest_checkpoint, train
from cadenza.core.spec.validate import load_pipeline
from cadenza.registry import get_registry
from tiny_specs import TINY_SPEC

ROOT = Path(__file__).resolve().parents[2]

# TINY_SPEC with stage models big enough to learn the synthetic structure in a few dozen steps.
LEARN_SPEC = TINY_SPEC.replace("params: {d_model: 32, layers: 1, heads: 2}", "params: {d_model: 64, layers: 2, heads: 4}")
# No randomness in the model (for comparing runs that use different numbers of processes).
DETERMINISTIC_SPEC = TINY_SPEC.replace("params: {d_model: 32, layers: 1, heads: 2}",
                                       "params: {d_model: 32, layers: 1, heads: 2, cond_dropout: 0.0}")
# Dropout and conditioning dropout on: the RNG must be restored for a resume to be exact.
RANDOM_SPEC = TINY_SPEC.replace("params: {d_model: 32, layers: 1, heads: 2}",
                                "params: {d_model: 32, layers: 1, heads: 2, dropout: 0.1, cond_dropout: 0.3}")


def make_cache(folder: Path, spec: Path, clips: int = 24, valid: int = 4, seconds: float = 1.0,
               shard_size: int = 10, seed: int = 0, header: dict | None = None) -> Path:
    """A cache for TINY_SPEC's components (semantic 32 @ 25 Hz, acoustic 4 x 64 @ 50 Hz, pooled 16)."""
    pipeline = load_pipeline(spec, get_registry())
    g = torch.Generator().manual_seed(seed)
    classes = torch.randn(4, 16, generator=g)
    writer = CacheWriter(folder, header if header is not None else cache_header(pipeline, clip_seconds=seconds))
    items = []
    for i in range(clips + valid):
        c = i % 4
        frames = round(seconds * 25)
        start = int(torch.randint(0, 32, (1,), generator=g))
        semantic = (start + (2 * c + 1) * torch.arange(frames)) % 32
        t = torch.arange(2 * frames)
        acoustic = torch.zeros(4, 2 * frames, dtype=torch.long)
        for q in range(2):
            acoustic[q] = (semantic[t // 2] * (q + 1) + 7 * (t % 2) + c) % 64
        for q in range(2, 4):
            acoustic[q] = (acoustic[q - 2] * 3 + q) % 64
        record = {"source": f"clip{i}.wav", "split": "valid" if i >= clips else "train"}
        items.append((record, {"acoustic": acoustic, "semantic": semantic, "cond_audio": classes[c].clone(),
                               "cond_text": classes[c] + 0.1}))
    for k in range(0, len(items), shard_size):
        writer.write_shard(k // shard_size, items[k:k + shard_size])
    writer.finish({})
    return folder


def train_args(spec: Path, stage: str, cache: Path, out: Path, *extra: str) -> TrainConfig:
    """The config ``cadenza train`` builds from these flags (the CLI's defaults and checks)."""
    return config_from_args(build_parser().parse_args(["train", "-p", str(spec), "--stage", stage, "--cache", str(cache),
                                      "--out", str(out), *map(str, extra)]))


def log_records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def learn(tmp_path_factory):
    folder = tmp_path_factory.mktemp("learn")
    spec = folder / "spec.yaml"
    spec.write_text(LEARN_SPEC)
    return spec, make_cache(folder / "cache", spec)


@pytest.mark.parametrize("stage", ["semantic", "coarse", "fine"])
def test_loss_drops(learn, tmp_path, stage):
    spec, cache = learn
    out = tmp_path / "run"
    result = train(train_args(spec, stage, cache, out, "--steps", 60, "--batch-size", 8, "--lr", "3e-3",
                              "--warmup-steps", 5, "--seconds", 0.4, "--valid-every", 30, "--checkpoint-every", 60,
                              "--ema-decay", 0.9))
    records = [r for r in log_records(out) if "loss" in r]
    first = records[0]["loss"]
    vocab = 32 if stage == "semantic" else 64
    assert first > 0.9 * math.log(vocab)  # starts near chance
    assert result["steps"] == 60 and len(records) == 60
    assert result["loss"] < 0.55 * first, (first, result)
    assert result["valid_loss"] < 0.65 * math.log(vocab), result  # generalises to the held-out clips
    assert result["valid_loss_ema"] is not None
    assert records[-1]["tokens_per_s"] > 0 and 0 < records[10]["lr"] <= 3e-3
    assert (out / "export" / "model.safetensors").exists()
    saved = json.loads((out / "export" / "config.json").read_text())
    assert saved["component"] == "transformer" and saved["layout"]["role"] == stage


@pytest.fixture
def random_setup(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(RANDOM_SPEC)
    return spec, make_cache(tmp_path / "cache", spec, clips=10, valid=2)


RESUME_FLAGS = ("--steps", 8, "--batch-size", 3, "--grad-accum", 2, "--lr", "2e-3", "--warmup-steps", 2,
                "--seconds", 0.4, "--valid-every", 4, "--checkpoint-every", 3, "--ema-decay", 0.8)


def test_kill_and_resume_matches_an_uninterrupted_run(random_setup, tmp_path):
    spec, cache = random_setup
    full = tmp_path / "full"
    train(train_args(spec, "coarse", cache, full, *RESUME_FLAGS))

    class Killed(Exception):
        pass

    def crash_at_5(step, record):
        if step == 5:
            raise Killed

    part = tmp_path / "part"
    with pytest.raises(Killed):
        train(train_args(spec, "coarse", cache, part, *RESUME_FLAGS), on_step=crash_at_5)
    root = part / CHECKPOINTS
    assert (root / LATEST).read_text().strip() == "step-0000003"
    assert not (part / "export").exists()
    # What a kill can leave behind: a temp folder being filled, and a later folder the pointer
    # never moved to (here half-written). Resume must ignore both.
    (root / ".step-0000006.abc123.tmp").mkdir()
    (root / ".step-0000006.abc123.tmp" / "model.safetensors").write_bytes(b"partial")
    (root / "step-0000006").mkdir()
    (root / "step-0000006" / "model.safetensors").write_bytes(b"garbage")
    assert latest_checkpoint(part).name == "step-0000003"

    result = train(train_args(spec, "coarse", cache, part, *RESUME_FLAGS, "--resume"))
    assert result["steps"] == 8
    for name in ("checkpoints/step-0000008/model.safetensors", "checkpoints/step-0000008/ema.safetensors",
                 "export/model.safetensors"):
        a, b = load_file(str(full / name)), load_file(str(part / name))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7, msg=f"{name}: {key}")
    losses = lambda run: [(r["step"], r["loss"]) for r in log_records(run) if "loss" in r]
    assert losses(part) == losses(full)  # the log was rewound to the checkpoint: no duplicate steps
    assert not list(root.glob(".step-*"))  # leftovers of the killed run are gone
    state = json.loads((part / CHECKPOINTS / "step-0000008" / "state.json").read_text())
    assert state["step"] == 8 and state["data"]["micro_batches"] == 16 and state["data"]["examples"] == 48
    assert state["data"]["epoch"] == 4 and state["args"]["global_batch"] == 3
    # Checkpoint tensors and states load without unpickling arbitrary objects.
    for file in ("optimizer.pt", "scheduler.pt", "rng.pt"):
        torch.load(part / CHECKPOINTS / "step-0000008" / file, weights_only=True)
    kept = sorted(p.name for p in root.glob("step-*"))
    assert kept == ["step-0000003", "step-0000006", "step-0000008"]  # the last three, all complete


def test_resume_without_pointer_uses_the_newest_complete_checkpoint(random_setup, tmp_path):
    spec, cache = random_setup
    run = tmp_path / "run"
    flags = ("--steps", 4, "--batch-size", 2, "--seconds", 0.4, "--checkpoint-every", 2, "--valid-every", 10)
    train(train_args(spec, "fine", cache, run, *flags))
    root = run / CHECKPOINTS
    (root / LATEST).unlink()
    (root / "step-0000004" / "rng.pt").unlink()  # incomplete: not a candidate
    assert latest_checkpoint(run).name == "step-0000002"


def test_refusals_are_one_line(random_setup, tmp_path, cli):
    spec, cache = random_setup
    run = tmp_path / "run"
    flags = ["--steps", 2, "--batch-size", 2, "--seconds", 0.4, "--checkpoint-every", 1, "--valid-every", 10]
    base = ["train", "-p", spec, "--stage", "coarse", "--cache", cache, "--out", run]
    code, _, err = cli(*base, *flags)
    assert code == 0, err

    def one_line(*args, expect):
        code, _, err = cli(*args)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code != 0 and len(lines) == 1 and expect in lines[0], err

    one_line(*base, *flags, "--resume", expect="already finished")
    one_line(*base, *flags, expect="already holds checkpoints")
    shutil.rmtree(run / "export")
    one_line(*base, *flags[:-4], "--checkpoint-every", 1, "--valid-every", 10, "--lr", "1e-3", "--resume",
             expect="lr 0.0003 -> 0.001")
    one_line("train", "-p", spec, "--stage", "fine", "--cache", cache, "--out", run, *flags, "--resume",
             expect="trains stage 'coarse'")
    # A finished run whose export was lost (killed while exporting) just exports again.
    code, _, err = cli(*base, *flags, "--resume")
    assert code == 0 and (run / "export" / "model.safetensors").exists(), err
    one_line("train", "-p", spec, "--stage", "nope", "--cache", cache, "--out", tmp_path / "x",
             expect="no stage 'nope'; its stages are semantic, coarse, fine")
    one_line("train", "-p", spec, "--stage", "coarse", "--out", tmp_path / "x", expect="--cache is required")
    one_line(*base[:-1], tmp_path / "y", *flags, "--seconds", 5, expect="no training clip is 5 s long")
    if not torch.cuda.is_available():
        one_line(*base[:-1], tmp_path / "y", *flags, "--mixed-precision", "fp16", expect="fp16 needs a GPU")


def test_stream_batches_are_the_same_examples_for_any_number_of_processes():
    clips = list(range(7))
    one = iter(StreamBatches(clips, 4, 1, 0, seed=3))
    two = [iter(StreamBatches(clips, 2, 2, r, seed=3)) for r in range(2)]
    for _ in range(5):
        assert next(one) == next(two[0]) + next(two[1])
    resumed = iter(StreamBatches(clips, 4, 1, 0, seed=3, start=5))
    fresh = iter(StreamBatches(clips, 4, 1, 0, seed=3))
    for _ in range(5):
        next(fresh)
    assert [next(resumed) for _ in range(3)] == [next(fresh) for _ in range(3)]
    # every epoch is a permutation of the clips
    stream = [key for batch in (next(iter(StreamBatches(clips, 7, 1, 0, seed=3, start=k))) for k in range(3))
              for key in batch]
    for epoch in range(3):
        assert sorted(c for e, c in stream if e == epoch) == clips


@pytest.mark.slow
def test_two_processes_agree_with_one(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(DETERMINISTIC_SPEC)
    cache = make_cache(tmp_path / "cache", spec, clips=10, valid=2)
    flags = ["--steps", 3, "--seconds", 0.4, "--checkpoint-every", 2, "--valid-every", 3, "--grad-accum", 2,
             "--lr", "1e-3", "--warmup-steps", 1]
    single = tmp_path / "single"
    train(train_args(spec, "coarse", cache, single, *flags, "--batch-size", 4))
    double = tmp_path / "double"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CADENZA_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "cadenza.core.cli.main", "train", "-p", spec, "--stage", "coarse", "--cache", cache, "--out", double,
               *flags, "--batch-size", 2]
    done = subprocess.run([str(c) for c in command], check=False, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((double / "run.json").read_text())
    assert info["args"]["num_processes"] == 2 and info["args"]["global_batch"] == 4
    assert info["summary"]["steps"] == 3 == json.loads((single / "run.json").read_text())["summary"]["steps"]
    assert sorted(p.name for p in (double / CHECKPOINTS).iterdir()) == ["latest", "step-0000002", "step-0000003"]
    records = log_records(double)
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]  # one writer: no duplicated lines
    # Same examples per step and gradients averaged over both halves: the same training.
    a = load_file(str(single / "export" / "model.safetensors"))
    b = load_file(str(double / "export" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    losses = lambda run: [r["loss"] for r in log_records(run) if "loss" in r]
    assert losses(single) == pytest.approx(losses(double), rel=1e-4)
