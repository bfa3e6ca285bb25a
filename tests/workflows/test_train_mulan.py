"""``cadenza train --stage mulan``: contrastive training of the MuLan conditioner, resume, export.

The data is synthetic but its captions carry real information about the audio: low sine tones,
high sine tones and white noise (random pitch and level within each class, 1.5 s at 22.05 kHz,
so crops are random and every clip is resampled), captioned "a low tone" / "a high tone" /
"noise". A model that learns anything maps each caption near its class's clips.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import attrs
import numpy as np
import pytest
import soundfile
import torch

from cadenza.plugins.workflows.train import mulan as tm
from cadenza.plugins.workflows.train.config import MulanTrainConfig
from cadenza.core.components import BuildContext
from cadenza.core.errors import CadenzaError, InputError
from cadenza.core.spec.validate import load_pipeline
from tiny_specs import TINY_SPEC

TINY = {"n_mels": 32, "patch_mels": 8, "patch_frames": 8, "clip_seconds": 1.0, "audio_dim": 32,
        "audio_layers": 1, "audio_heads": 2, "text_dim": 32, "text_layers": 1, "text_heads": 2,
        "dim": 16, "num_quantizers": 2, "codebook_size": 8, "output": "tokens"}
CLASSES = ("a low tone", "a high tone", "noise")
RATE = 22050
PER_CLASS = 16
VALID_FROM = 14  # clips 14 and 15 of each class are marked "split": "valid"


def spec_text(weights: str | None = None) -> str:
    extra = f", weights: {weights}" if weights else ""
    return TINY_SPEC.replace("{name: byte-text, params: {dim: 16, output: pooled}}",
                             "{name: mulan, params: %s%s}" % (json.dumps(TINY), extra))


def synth(kind: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(1.5 * RATE)) / RATE
    if kind == 0:
        wave = np.sin(2 * np.pi * rng.uniform(150, 250) * t + rng.uniform(0, 6))
    elif kind == 1:
        wave = np.sin(2 * np.pi * rng.uniform(2000, 3000) * t + rng.uniform(0, 6))
    else:
        wave = rng.standard_normal(len(t)) * 0.5
    return (wave * rng.uniform(0.2, 0.8)).astype(np.float32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A folder with the clips, ``data.jsonl`` (one extra item without a caption) and ``spec.yaml``."""
    folder = tmp_path_factory.mktemp("mulan-data")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(PER_CLASS):
        for kind, caption in enumerate(CLASSES):
            name = f"c{kind}_{i:02d}.wav"
            soundfile.write(folder / name, synth(kind, rng), RATE)
            rows.append({"audio": name, "caption": caption, **({"split": "valid"} if i >= VALID_FROM else {})})
    rows.append({"audio": "c0_00.wav"})  # no caption: skipped and counted
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "spec.yaml").write_text(spec_text())
    return folder


def make_args(folder: Path, out: Path, **overrides) -> MulanTrainConfig:
    """The config of a short run on ``folder``'s data (the schedule's other values are the CLI's defaults)."""
    values = {"pipeline": folder / "spec.yaml", "data": folder / "data.jsonl", "out": out, "steps": 60, "batch_size": 8,
              "lr": 1e-3, "warmup_steps": 5, "valid_every": 20, "checkpoint_every": 25, "seed": 0}
    return MulanTrainConfig(**{**values, **overrides})


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory) -> Path:
    """60 steps, batch 8, EMA on (the export uses the EMA weights)."""
    run = tmp_path_factory.mktemp("mulan-run") / "run"
    started = time.monotonic()
    assert tm.train_mulan(make_args(dataset, run, checkpoint_every=10)) == 0
    print(f"60 mulan steps + quantiser + export: {time.monotonic() - started:.1f} s")
    return run


def test_training_drives_the_loss_down_and_retrieves_by_caption(trained, capsys):
    steps = [r for r in read_log(trained) if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 61))
    assert all(r["global_batch"] == 8 and r["processes"] == 1 for r in steps)
    first = steps[0]["loss"]  # the untrained model's loss on its first batch
    last = np.mean([r["loss"] for r in steps[-10:]])
    print(f"contrastive loss: step 1 {first:.3f}, mean of the last 10 steps {last:.3f}")
    # Chance is log 8 = 2.08; with 3 captions, ~2.7 rows of a batch of 8 share each one, so the
    # best reachable loss is about log 2.7 = 1.0.
    assert abs(first - math.log(8)) < 0.15 and last < first - 0.6, (first, last)
    valid = [r for r in read_log(trained) if "valid_loss" in r]
    assert [r["step"] for r in valid] == [20, 40, 60]
    summary = json.loads((trained / "summary.json").read_text())
    print("summary:", json.dumps(summary))
    assert summary["data"] == {"listed": 3 * PER_CLASS + 1, "train": summary["data"]["train"],
                               "valid": summary["data"]["valid"], "no_caption": 1, "unreadable": 0}
    assert summary["data"]["train"] + summary["data"]["valid"] == 3 * PER_CLASS
    assert summary["weights"] == "ema"
    train = summary["train"]
    assert train["top1"] >= 0.8 and train["top1"] > train["chance"] + 0.4, train
    assert summary["valid"]["top1"] > summary["valid"]["chance"], summary["valid"]
    # Only the last KEEP_CHECKPOINTS checkpoints stay; `latest` names the final one.
    folder = trained / "checkpoints"
    assert (folder / "latest").read_text().strip() == "step-0000060"
    assert sorted(p.name for p in folder.glob("step-*")) == ["step-0000040", "step-0000050", "step-0000060"]


def test_export_is_the_conditioner_and_its_tokens_follow_captions(trained, dataset, write_spec, registry):
    spec = write_spec(spec_text(weights=str((trained / "export").resolve())))
    resolved = load_pipeline(spec, registry).conditioner
    mulan = resolved.entry.build(resolved.config, BuildContext(weights=resolved.weights))
    assert mulan.info.kind == "tokens" and mulan.info.length == 2 and mulan.info.vocab_size == 8
    rows = [json.loads(line) for line in (dataset / "data.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r.get("caption")]
    audio = torch.stack([torch.from_numpy(soundfile.read(dataset / r["audio"], dtype="float32")[0]) for r in rows])
    captions = [r["caption"] for r in rows]
    # Whole 1.5 s files at 22.05 kHz: resampled, and embedded as the average of two 1 s windows.
    audio_tokens = mulan.embed_audio(audio[:, None], RATE).values
    text_tokens = mulan.embed_text(captions).values
    assert audio_tokens.shape == text_tokens.shape == (len(rows), 2)
    first = float((audio_tokens[:, 0] == text_tokens[:, 0]).float().mean())
    pa = torch.bincount(audio_tokens[:, 0], minlength=8).float() / len(rows)
    pt = torch.bincount(text_tokens[:, 0], minlength=8).float() / len(rows)
    chance = float((pa * pt).sum())
    print(f"first-token agreement of clip and caption: {first:.3f} (chance {chance:.3f})")
    assert first > max(2 * chance, chance + 0.15), (first, chance)
    with torch.no_grad():
        top1, base = tm.retrieval_top1(mulan.audio_embedding(audio[:, None], RATE), mulan.text_embedding(captions),
                                       captions)
    assert top1 > base + 0.4, (top1, base)


def test_kill_and_resume_matches_an_uninterrupted_run(dataset, tmp_path, monkeypatch):
    options = dict(steps=12, batch_size=4, grad_accum=2, checkpoint_every=5, valid_every=4, ema_decay=0.9)
    whole = tmp_path / "whole"
    assert tm.train_mulan(make_args(dataset, whole, **options)) == 0

    class Killed(Exception):
        pass

    record = tm._Log.record

    def dying(self, **values):
        if values.get("step") == 7 and "loss" in values:
            raise Killed  # two steps after the checkpoint at 5: those are lost and redone
        record(self, **values)

    parted = tmp_path / "parted"
    monkeypatch.setattr(tm._Log, "record", dying)
    with pytest.raises(Killed):  # loader workers this time: the crops must not depend on them
        tm.train_mulan(make_args(dataset, parted, num_workers=2, **options))
    monkeypatch.setattr(tm._Log, "record", record)
    assert (parted / "checkpoints" / "latest").read_text().strip() == "step-0000005"
    with pytest.raises(InputError, match="--resume"):  # a run folder is never silently restarted
        tm.train_mulan(make_args(dataset, parted, num_workers=2, **options))
    assert tm.train_mulan(make_args(dataset, parted, num_workers=2, resume=True, **options)) == 0

    a = tm.load_state(whole / "checkpoints" / "step-0000012")
    b = tm.load_state(parted / "checkpoints" / "step-0000012")
    assert a["step"] == b["step"] == 12 and a["examples"] == b["examples"] == 12 * 2 * 4
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.allclose(a[part][key], b[part][key], atol=1e-6), (part, key)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 12
    logs = [[(r["step"], r.get("loss"), r.get("valid_loss")) for r in read_log(run)] for run in (whole, parted)]
    assert len(logs[0]) == len(logs[1]) and all(
        x[0] == y[0] and np.allclose([v for v in x[1:] if v is not None], [v for v in y[1:] if v is not None])
        for x, y in zip(*logs))
    from safetensors.torch import load_file

    ea, eb = (load_file(str(run / "export" / "model.safetensors")) for run in (whole, parted))
    assert all(torch.allclose(ea[k], eb[k], atol=1e-6) for k in ea)


def test_a_checkpoint_with_the_earlier_ema_layout_resumes_exactly(dataset, tmp_path):
    """Runs trained before the EMA became torch's AveragedModel resume onto the same weights: their
    ``ema.safetensors`` held the state dict's plain keys (float32) and ``state.json`` the update count
    as ``ema_updates`` (the layout is written here the way that code wrote it)."""
    import shutil

    from safetensors.torch import load_file, save_file

    options = dict(steps=8, batch_size=4, grad_accum=2, checkpoint_every=4, valid_every=4, ema_decay=0.9)
    whole = tmp_path / "whole"
    assert tm.train_mulan(make_args(dataset, whole, **options)) == 0
    earlier = tmp_path / "earlier"
    shutil.copytree(whole, earlier)
    shutil.rmtree(earlier / "checkpoints" / "step-0000008")
    shutil.rmtree(earlier / "export")
    (earlier / "checkpoints" / "latest").write_text("step-0000004\n")
    folder = earlier / "checkpoints" / "step-0000004"
    averaged = load_file(str(folder / "ema.safetensors"))
    assert int(averaged["n_averaged"]) == 5  # the initial weights and four updates
    save_file({k.removeprefix("module."): v.float() for k, v in averaged.items() if k != "n_averaged"},
              str(folder / "ema.safetensors"))
    state = json.loads((folder / "state.json").read_text())
    (folder / "state.json").write_text(json.dumps({**state, "ema_updates": 4}))

    assert tm.train_mulan(make_args(dataset, earlier, resume=True, **options)) == 0
    a = tm.load_state(whole / "checkpoints" / "step-0000008")
    b = tm.load_state(earlier / "checkpoints" / "step-0000008")
    assert a["ema"].keys() == b["ema"].keys() and "n_averaged" in b["ema"]
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])
    ea, eb = (load_file(str(run / "export" / "model.safetensors")) for run in (whole, earlier))
    assert ea.keys() == eb.keys() and all(torch.equal(ea[k], eb[k]) for k in ea)


def test_items_without_captions_or_readable_audio_are_skipped_and_counted(dataset, tmp_path):
    (tmp_path / "broken.wav").write_text("not audio")
    lines = ["audio,caption"] + [f"{dataset / f'c{k}_{i:02d}.wav'},{CLASSES[k]}" for k in range(3) for i in range(3)]
    lines += [f"{dataset / 'c0_05.wav'},", "broken.wav,a broken file", "missing.wav,a missing file"]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    report = tm.read_data(tmp_path / "data.csv")
    assert (report.listed, report.no_caption, len(report.unreadable)) == (12, 1, 2)
    assert len(report.train) + len(report.valid) == 9
    assert "1 skipped without a caption" in report.describe() and "2 skipped as unreadable" in report.describe()


def test_training_crops_draw_from_every_wording_of_a_caption(dataset, tmp_path):
    """``alt_captions``: training crops get any wording (seeded per crop); evaluation the main one."""
    rows = [{"audio": str(dataset / f"c0_{i:02d}.wav"), "caption": "a low tone",
             "alt_captions": ["a deep sine", "  ", "a low hum"], "split": "train"} for i in range(4)]
    (tmp_path / "alts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = tm.read_data(tmp_path / "alts.jsonl")
    assert report.train[0].alternatives == ("a deep sine", "a low hum")  # blank wordings dropped
    data = tm.ClipDataset(report.train, 16000, 8000, seed=0)
    drawn = [data[(epoch, 0)][1] for epoch in range(40)]
    assert set(drawn) == {"a low tone", "a deep sine", "a low hum"}
    assert drawn == [data[(epoch, 0)][1] for epoch in range(40)]  # a pure function of (seed, epoch, index)
    assert data[(-1, 0)][1] == "a low tone"
    (tmp_path / "bad.jsonl").write_text(json.dumps({**rows[0], "alt_captions": "a deep sine"}) + "\n")
    with pytest.raises(InputError, match="'alt_captions' must be a list of text") as info:
        tm.read_data(tmp_path / "bad.jsonl")
    assert "\n" not in str(info.value)


def test_unusable_inputs_are_one_line(dataset, tmp_path, write_spec):
    def one_line(exc_type, args, match):
        with pytest.raises(exc_type, match=match) as info:
            tm.train_mulan(args)
        assert "\n" not in str(info.value)

    args = make_args(dataset, tmp_path / "a", data=dataset)  # a folder of audio: items but no captions
    one_line(InputError, args, r"no usable training items: 48 items listed.*48 skipped without a caption.*manifest")
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"audio": str(dataset / "c0_00.wav")}) + "\n")
    one_line(InputError, attrs.evolve(args, data=empty), "no usable training items")
    other = write_spec(TINY_SPEC, "byte.yaml")  # its conditioner is byte-text
    one_line(CadenzaError, make_args(dataset, tmp_path / "b", pipeline=str(other)),
             "trains a `mulan` conditioner, but the spec has conditioner 'byte-text'")
    one_line(InputError, make_args(dataset, tmp_path / "c", resume=True), "--resume: no checkpoint")
    one_line(InputError, make_args(dataset, tmp_path / "d", batch_size=100), "fewer than one global batch")


def test_global_batches_are_one_order_cut_across_processes():
    whole = iter(tm.GlobalBatches(50, 8, 1, 0, seed=3))
    shards = [iter(tm.GlobalBatches(50, 4, 2, rank, seed=3)) for rank in (0, 1)]
    for _ in range(20):  # 6 global batches per epoch (2 items dropped): crosses epochs
        assert next(whole) == next(shards[0]) + next(shards[1])
    late = iter(tm.GlobalBatches(50, 8, 1, 0, seed=3, start=7))
    assert next(late) == _take(tm.GlobalBatches(50, 8, 1, 0, seed=3), 8)[7]
    first_epoch = [i for batch in _take(tm.GlobalBatches(50, 8, 1, 0, seed=3), 6) for _, i in batch]
    assert len(set(first_epoch)) == 48


def _take(batches, n):
    it = iter(batches)
    return [next(it) for _ in range(n)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_on_the_global_batch(dataset, tmp_path):
    """``accelerate launch`` with 2 CPU processes x batch 4 takes the same steps as 1 process x batch 8:
    the loss is over the gathered global batch of 8 (a per-process loss would differ)."""
    options = dict(steps=4, valid_every=2, checkpoint_every=2, ema_decay=0.0)
    single = tmp_path / "single"
    assert tm.train_mulan(make_args(dataset, single, **options)) == 0
    args = make_args(dataset, tmp_path / "double", batch_size=4, **options)
    script = tmp_path / "launch.py"
    script.write_text(textwrap.dedent("""
        import json, sys
        from cadenza.plugins.workflows.train.config import MulanTrainConfig
        from cadenza.plugins.workflows.train.mulan import train_mulan
        sys.exit(train_mulan(MulanTrainConfig(**json.loads(sys.argv[1]))))
    """))
    # `accelerate launch --cpu --num_processes 2` starts ONE process unless mpirun is installed (its
    # multi-CPU launcher); --multi_gpu goes through torchrun, and the trainer asks Accelerate for the
    # CPU (gloo) itself when there is no GPU. CUDA_VISIBLE_DEVICES="" keeps a GPU machine on the CPU.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), str(script), json.dumps(attrs.asdict(args))]
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    print(f"two-process run: {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    print(done.stdout)
    assert "global batch 8 (4 x 2 processes)" in done.stdout
    double_log, single_log = read_log(tmp_path / "double"), read_log(single)
    assert [r["processes"] for r in double_log if "loss" in r] == [2] * 4
    assert [r["global_batch"] for r in double_log if "loss" in r] == [8] * 4
    for key in ("loss", "valid_loss", "grad_norm"):
        x = [r[key] for r in single_log if key in r]
        y = [r[key] for r in double_log if key in r]
        print(key, "1 x 8:", x, "2 x 4:", y)
        assert len(x) == len(y) > 0 and np.allclose(x, y, rtol=1e-4), key
    assert (tmp_path / "double" / "export" / "model.safetensors").exists()


@pytest.mark.skipif(importlib.util.find_spec("cadenza.plugins.workflows.train.command") is None,
                    reason="cadenza train (plugins/workflows/train/command.py) is not there yet")
def test_cadenza_train_stage_mulan(dataset, tmp_path, cli):
    run = tmp_path / "run"
    code, out, err = cli("train", "--pipeline", dataset / "spec.yaml", "--stage", "mulan", "--data",
                         dataset / "data.jsonl", "--out", run, "--steps", "3", "--batch-size", "4")
    assert code == 0, err
    assert (run / "export" / "config.json").exists() and "exported" in out
