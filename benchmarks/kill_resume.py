"""Fault injection: `kill -9` the resumable workflows at random moments, resume them, compare.

Why: `cadenza prepare`, `cadenza train --resume`, `cadenza generate --prompts ... --resume` and
`cadenza bench ... --resume` promise that a run killed at any moment leaves no half-written
file and that resuming finishes the job with nothing lost, nothing done twice, and (where the
work is deterministic) the very result an uninterrupted run gives. Unit tests kill at chosen
points; this script kills real processes at random points and checks the promise.

How: each workflow runs once uninterrupted (the reference, timed from process start). Then,
``--moments`` times, the same command starts in a fresh output folder and its whole process
group (the command and its worker processes) is sent SIGKILL at a moment drawn from a seeded
RNG, one moment per equal slice of the reference's duration. Everything the killed run left is
loaded (token cache shards with safetensors, checkpoints with the trainer's own loader, WAVs
with soundfile, JSON and JSON lines parsed); the command then runs again with its resume option
until it completes, and the result is compared with the reference:

- prepare: token cache of 64 captioned 6 s files (384 clips of 1 s, 48 shards); rerunning the
  same command keeps finished shards. Compared byte for byte, shard by shard.
- train: `--stage coarse`, 150 steps, a checkpoint every 10, `--resume`, on a cache made once.
  Compared: the log's losses, and the final checkpoint's and the export's tensors (max abs diff).
- batch: 40 prompts with their own seeds, 0.5 s each, 2 per batch, `--resume`. Compared: WAV
  bytes, and sidecars without their timestamp and timings.
- bench: a 2 x 2 sampler matrix plus one incompatible combination, `--resume`. Compared: every
  row without its timing, memory and host fields.

All on the tiny test spec (tests/tiny_specs.py) and slices of tests/data/test_24k.wav, one torch
thread per process (OMP_NUM_THREADS=1) so runs on a small machine are neither slow nor noisy.

    python benchmarks/kill_resume.py                      # 10 moments per workflow -> docs/benchmarks/
    python benchmarks/kill_resume.py --moments 2 --workflows prepare,batch --out-dir out   # a quick look

Writes kill_resume.json and kill_resume.md in --out-dir atomically; exits 1 when a check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cadenza.core.files.atomic import write_text

ROOT = Path(__file__).resolve().parents[1]
AUDIO = ROOT / "tests" / "data" / "test_24k.wav"
WORKFLOWS = ("prepare", "train", "batch", "bench")
DEFAULT_MOMENTS = 10
DEFAULT_SEED = 0

# -- the workloads (small enough for a reference run of a few seconds on 2 CPUs) ---------------------

SOURCE_FILES, SOURCE_SECONDS = 64, 6.0
PREPARE_FLAGS = ["--clip-seconds", "1", "--shard-size", "8", "--batch-size", "4", "--workers", "1",
                 "--valid-fraction", "0.2"]
TRAIN_STEPS = 150
TRAIN_FLAGS = ["--stage", "coarse", "--steps", str(TRAIN_STEPS), "--batch-size", "4", "--seconds", "0.5",
               "--checkpoint-every", "10", "--valid-every", "25", "--warmup-steps", "4", "--lr", "2e-3",
               "--ema-decay", "0.9", "--seed", "0"]
PROMPTS = 40
BATCH_FLAGS = ["-s", "0.5", "--batch-size", "2"]
WORDS = ["calm harp", "bright piano", "dark drone", "fast drums", "slow strings", "soft pad", "loud brass", "warm bass"]
MATRIX = """\
name: kill-resume
base: tiny.yaml
vary:
  stages.coarse.sampler: [greedy, {name: top-k, params: {k: 4}}]
  stages.semantic.sampler: [greedy, {name: top-k, params: {k: 8}}]
combinations:
  - label: two-codebooks
    set: {tokenizer: {name: tiny-codec, params: {num_codebooks: 2, codebook_size: 64, channels: 8, latent_dim: 16}}}
prompts: bench-prompts.jsonl
seeds: 2
seconds: 0.5
threads: 1
metrics: [loudness, mel-distance]
"""
# Fields of a bench row that measure time, memory or the process, not the result.
BENCH_VOLATILE = ("started", "finished", "host", "pid", "wall_s", "load_s", "rtf", "stage_rtf", "stage_s",
                  "tokens_per_s", "tokens_per_s_total", "codec_encode_rtf", "codec_decode_rtf", "peak_rss_mb",
                  "rss_start_mb")
# Fields of a batch sidecar that say when and alongside what a clip was made, not what it is: a resumed
# batch groups the lines left (with --batch-size 2, line 17 may be row 0 of a new pair instead of row 1),
# and each row has its own generator, so its audio is the same bytes whatever batch it was in.
SIDECAR_VOLATILE = ("created", "stage_seconds", "batch")

ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CADENZA_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def cadenza(*args: str) -> list[str]:
    return [sys.executable, "-m", "cadenza.core.cli.main", *args]


def command(workflow: str, out: str, resume: bool) -> list[str]:
    """The command line of ``workflow`` writing into ``out`` (relative to the work folder)."""
    if workflow == "prepare":  # prepare resumes by running the same command again
        return cadenza("prepare", "-p", "tiny.yaml", "--data", "music/train.jsonl", "--out", out, *PREPARE_FLAGS)
    if workflow == "train":
        return cadenza("train", "-p", "tiny.yaml", "--cache", "train-cache", "--out", out, *TRAIN_FLAGS,
                       *(["--resume"] if resume else []))
    if workflow == "batch":
        return cadenza("generate", "-p", "tiny.yaml", "--prompts", "prompts.jsonl", "--out", out, *BATCH_FLAGS,
                       *(["--resume"] if resume else []))
    if workflow == "bench":
        return cadenza("bench", "matrix.yaml", "--out", out, "--quiet", *(["--resume"] if resume else []))
    raise ValueError(workflow)


def shown(cmd: list[str]) -> str:
    return " ".join(["cadenza", *cmd[3:]])


def make_inputs(work: Path) -> None:
    """Spec, captioned audio files, prompts and the bench matrix, in ``work``."""
    import soundfile

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_specs import TINY_SPEC

    if not AUDIO.exists():
        raise SystemExit(f"{AUDIO} is missing: run `python tests/fetch_test_audio.py` first")
    (work / "tiny.yaml").write_text(TINY_SPEC)
    audio, rate = soundfile.read(str(AUDIO), dtype="float32", always_2d=True)
    music = work / "music"  # a fixed folder name: prepare's train/valid split hashes it
    music.mkdir()
    lines = []
    span = audio.shape[0] / rate - SOURCE_SECONDS
    for i in range(SOURCE_FILES):
        offset = (i * 0.3) % span
        piece = audio[int(offset * rate): int(offset * rate) + int(SOURCE_SECONDS * rate)]
        soundfile.write(str(music / f"clip{i:02d}.wav"), piece, rate)
        lines.append({"audio": f"clip{i:02d}.wav", "caption": f"a {WORDS[i % len(WORDS)]} piece, take {i}"})
    (music / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (work / "prompts.jsonl").write_text("".join(
        json.dumps({"prompt": f"{WORDS[i % len(WORDS)]}, variation {i}", "seed": 100 + i, "name": f"song{i:02d}"})
        + "\n"
        for i in range(PROMPTS)))
    (work / "bench-prompts.jsonl").write_text(
        json.dumps({"caption": "a slow soft piece", "audio": "music/clip00.wav"}) + "\n"
        + json.dumps({"caption": "fast bright drums", "audio": "music/clip05.wav"}) + "\n")
    (work / "matrix.yaml").write_text(MATRIX)


# -- running and killing ---------------------------------------------------------------------------------

def run(cmd: list[str], work: Path, log: Path, kill_at: float | None = None) -> dict[str, Any]:
    """Run ``cmd`` in ``work`` (its own process group); SIGKILL the group ``kill_at`` s after the start."""
    env = {**os.environ, **ENV}
    with open(log, "ab") as out:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        landed, killed_at = False, None
        try:
            if kill_at is None:
                proc.wait()
            else:
                try:
                    proc.wait(timeout=max(0.0, kill_at - (time.monotonic() - start)))
                except subprocess.TimeoutExpired:
                    killed_at = time.monotonic() - start
                    os.killpg(proc.pid, signal.SIGKILL)
                    landed = True
                    proc.wait()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        seconds = time.monotonic() - start
    if landed:
        _wait_group_gone(proc.pid)
    return {"rc": proc.returncode, "seconds": round(seconds, 3), "landed": landed,
            "killed_at": None if killed_at is None else round(killed_at, 3)}


def _wait_group_gone(pgid: int, timeout: float = 10.0) -> None:
    """Until no process of the killed group is left (workers die with it; none may still write)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        time.sleep(0.02)


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    """``relative path -> (inode, mtime_ns)`` of every file (to tell a kept file from a rewritten one)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def hidden_temps(folder: Path) -> list[str]:
    """What atomic writes killed mid-way leave: hidden ``.NAME.XXXX.tmp`` files or folders."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if p.name.endswith((".tmp", ".old")))


def visible(folder: Path) -> list[Path]:
    """Files not inside a hidden (temporary) file or folder."""
    if not folder.exists():
        return []
    return [p for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)]


class Report:
    """The checks of one killed + resumed run."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.checked = 0  # files loaded after the kill
        self.identical = False  # the final result equals the uninterrupted run's (set by the checker)
        self.max_abs_diff: float | None = None  # train: of the final weights

    def fail(self, reason: str) -> None:
        self.failures.append(reason)

    def load(self, path: Path, loader: Any) -> Any:
        """``loader(path)``, counted; a failure is recorded with the path and the error."""
        self.checked += 1
        try:
            return loader(path)
        except Exception as exc:  # noqa: BLE001 - every way a file fails to load is a finding
            self.fail(f"{path.name}: does not load after the kill ({type(exc).__name__}: {str(exc)[:160]})")
            return None


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def read_jsonl(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- prepare ---------------------------------------------------------------------------------------------

def _safetensors(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}


def _token_cache(path: Path) -> int:
    from cadenza.plugins.workflows.prepare.token_cache import TokenCache

    cache = TokenCache(path.parent)
    for i in range(len(cache)):
        cache.load(i)
    return len(cache)


class Prepare:
    name = "prepare"
    unit = "shards"

    def __init__(self, reference: Path):
        self.ref = reference
        self.total = len(list(reference.glob("shard-*.safetensors")))

    def after_kill(self, out: Path, r: Report) -> dict[str, Any]:
        for path in visible(out):
            if path.suffix == ".safetensors":
                r.load(path, _safetensors)
            elif path.name == "index.json":
                r.load(path, _token_cache)
            elif path.suffix == ".json":
                r.load(path, read_json)
            else:
                r.fail(f"{path.name}: unexpected file in the cache folder")
        done = sorted(p.stem for p in out.glob("shard-*.json") if p.with_suffix(".safetensors").exists())
        lone = [p.name for p in out.glob("shard-*.safetensors") if not p.with_suffix(".json").exists()]
        if lone:
            r.notes.append(f"{len(lone)} shard tensors file(s) without records (not finished: made again)")
        kept = {k: v for k, v in files_of(out).items() if k.startswith(tuple(done))}
        return {"progress": len(done), "kept": kept, "finished": (out / "index.json").exists()}

    def after_resume(self, out: Path, output: str | None, at_kill: dict[str, Any], r: Report) -> None:
        if output is not None:  # (output None: the run finished before its kill, nothing was resumed)
            match = re.search(r"in (\d+) shards(?:, (\d+) kept from an earlier run)?", output)
            resumed = int(match[2] or 0) if match else None
            if resumed != at_kill["progress"]:
                r.fail(f"resume kept {resumed} shards, {at_kill['progress']} were finished at the kill")
            now = files_of(out)
            rewritten = [k for k, v in at_kill["kept"].items() if now.get(k) != v]
            if rewritten:
                r.fail(f"{len(rewritten)} finished shard file(s) written again by the resume (first: {rewritten[0]})")
        index = read_json(out / "index.json")
        keys = [(c["source"], c["clip"]) for c in index["clips"]]
        ref_keys = [(c["source"], c["clip"]) for c in read_json(self.ref / "index.json")["clips"]]
        if len(set(keys)) != len(keys):
            r.fail(f"clip index holds {len(keys) - len(set(keys))} duplicate clip(s)")
        if sorted(set(keys)) != sorted(ref_keys):
            r.fail(f"clip index holds {len(set(keys))} distinct clips, the reference {len(ref_keys)}")
        names = sorted(str(p.relative_to(out)) for p in visible(out))
        ref_names = sorted(str(p.relative_to(self.ref)) for p in visible(self.ref))
        if names != ref_names:
            r.fail(f"cache files differ from the reference's ({sorted(set(names) ^ set(ref_names))[:3]})")
        differ = [n for n in ref_names if (out / n).exists() and (out / n).read_bytes() != (self.ref / n).read_bytes()]
        for name in differ:
            if name.endswith(".safetensors"):
                a, b = _safetensors(self.ref / name), _safetensors(out / name)
                same = a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
                r.fail(f"{name}: {'same tensors, other bytes' if same else 'tensors differ from the reference'}")
            else:
                r.fail(f"{name}: differs from the reference")
        r.identical = not differ and names == ref_names


# -- train -----------------------------------------------------------------------------------------------

def _checkpoint(path: Path) -> Any:
    from cadenza.core.engine.checkpoint import load_checkpoint
    from cadenza.plugins.workflows.train.run_checkpoints import read_checkpoint

    load_checkpoint(path)
    return read_checkpoint(path)


def _weights(path: Path) -> Any:
    from cadenza.core.engine.checkpoint import load_checkpoint

    return load_checkpoint(path)


def _max_abs_diff(a: dict[str, Any], b: dict[str, Any]) -> float:
    if a.keys() != b.keys():
        return float("inf")
    return max((float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a), default=0.0)


class Train:
    name = "train"
    unit = "steps checkpointed"

    def __init__(self, reference: Path):
        self.ref = reference
        self.total = TRAIN_STEPS

    @staticmethod
    def losses(run: Path) -> list[tuple[int, float]]:
        return [(x["step"], x["loss"]) for x in read_jsonl(run / "log.jsonl") if "loss" in x]

    def after_kill(self, out: Path, r: Report) -> dict[str, Any]:
        from cadenza.plugins.workflows.train.run_checkpoints import checkpoint_complete, latest_checkpoint, step_of

        root = out / "checkpoints"
        latest = latest_checkpoint(out) if root.exists() else None
        pointer = root / "latest"
        if pointer.exists():
            r.checked += 1
            named = root / pointer.read_text().strip()
            if not checkpoint_complete(named):
                r.fail(f"checkpoints/latest names {named.name}, which is not a complete checkpoint")
        for folder in sorted(root.glob("step-*")) if root.exists() else []:
            if checkpoint_complete(folder):
                r.checked += len(list(folder.iterdir())) - 1
                r.load(folder, _checkpoint)
            elif latest is not None and (step_of(folder) or 0) < (step_of(latest) or 0):
                r.notes.append(f"{folder.name}: partly deleted (killed while pruning old checkpoints), never used")
            else:
                r.fail(f"{folder.name}: an incomplete checkpoint folder under its final name")
        for name in ("run.json",):
            if (out / name).exists():
                r.load(out / name, read_json)
        if (out / "log.jsonl").exists():
            r.load(out / "log.jsonl", read_jsonl)
        if (out / "export").exists():
            r.load(out / "export", _weights)
        step = step_of(latest) if latest is not None else 0
        try:
            finished = read_json(out / "run.json").get("finished") is True
        except (OSError, ValueError, AttributeError):
            finished = False
        return {"progress": step, "latest": None if latest is None else latest.name, "finished": finished}

    def after_resume(self, out: Path, output: str | None, at_kill: dict[str, Any], r: Report) -> None:
        from safetensors.torch import load_file

        if output is not None:
            match = re.search(r"resuming at step (\d+) from (step-\d+)", output)
            resumed_from = match[2] if match else None
            if resumed_from != at_kill["latest"]:
                r.fail(f"resumed from {resumed_from or 'scratch'}, the newest checkpoint at the kill was "
                       f"{at_kill['latest'] or 'none'}")
        info = read_json(out / "run.json")
        if not info.get("finished") or info.get("summary", {}).get("steps") != TRAIN_STEPS:
            r.fail(f"run.json: finished {info.get('finished')}, steps {info.get('summary', {}).get('steps')}")
        final = out / "checkpoints" / f"step-{TRAIN_STEPS:07d}"
        if read_json(final / "state.json").get("step") != TRAIN_STEPS:
            r.fail(f"final state.json step is not {TRAIN_STEPS}")
        steps = [s for s, _ in self.losses(out)]
        if steps != list(range(1, TRAIN_STEPS + 1)):
            dupes = len(steps) - len(set(steps))
            r.fail(f"log.jsonl train steps: {len(steps)} records, {dupes} duplicated, "
                   f"{len(set(range(1, TRAIN_STEPS + 1)) - set(steps))} missing")
        kept = sorted(p.name for p in (out / "checkpoints").glob("step-*"))
        ref_kept = sorted(p.name for p in (self.ref / "checkpoints").glob("step-*"))
        if kept != ref_kept:
            r.fail(f"checkpoints kept {kept}, the reference keeps {ref_kept}")
        if self.losses(out) != self.losses(self.ref):
            r.fail("logged losses differ from the uninterrupted run's")
        diff, identical = 0.0, True
        for name in (f"checkpoints/{final.name}/model.safetensors", f"checkpoints/{final.name}/ema.safetensors",
                     "export/model.safetensors"):
            identical &= (out / name).read_bytes() == (self.ref / name).read_bytes()
            diff = max(diff, _max_abs_diff(load_file(str(self.ref / name)), load_file(str(out / name))))
        r.max_abs_diff = diff
        r.identical = identical
        if not identical:
            r.notes.append(f"final weights not byte-identical: max abs diff {diff:.3g}")


# -- batch generate --------------------------------------------------------------------------------------

def _wav(path: Path) -> int:
    import soundfile

    data, _ = soundfile.read(str(path), dtype="float32")
    return len(data)


def _sidecar(path: Path) -> dict[str, Any]:
    data = read_json(path)
    return {k: v for k, v in data.items() if k not in SIDECAR_VOLATILE}


class Batch:
    name = "batch"
    unit = "outputs"

    def __init__(self, reference: Path):
        self.ref = reference
        self.names = [f"song{i:02d}" for i in range(PROMPTS)]
        self.total = PROMPTS

    def after_kill(self, out: Path, r: Report) -> dict[str, Any]:
        for path in visible(out):
            if path.suffix == ".wav":
                r.load(path, _wav)
            elif path.suffix == ".json":
                r.load(path, read_json)
            else:
                r.fail(f"{path.name}: unexpected file in the output folder")
        done = [n for n in self.names if (out / f"{n}.wav").exists() and (out / f"{n}.json").exists()]
        kept = {k: v for k, v in files_of(out).items() if Path(k).stem in done and not k.startswith(".")}
        return {"progress": len(done), "kept": kept, "finished": len(done) == self.total}

    def after_resume(self, out: Path, output: str | None, at_kill: dict[str, Any], r: Report) -> None:
        if output is not None:
            match = re.search(r"done: (\d+) generated, (\d+) skipped", output)
            if not match or int(match[2]) != at_kill["progress"] or int(match[1]) != PROMPTS - at_kill["progress"]:
                r.fail(f"resume line {match[0] if match else None!r}: expected {PROMPTS - at_kill['progress']} "
                       f"generated, {at_kill['progress']} skipped")
            now = files_of(out)
            rewritten = [k for k, v in at_kill["kept"].items() if now.get(k) != v]
            if rewritten:
                r.fail(f"{len(rewritten)} finished output file(s) written again by the resume (first: {rewritten[0]})")
        names = sorted(str(p.relative_to(out)) for p in visible(out))
        expected = sorted(f"{n}{s}" for n in self.names for s in (".wav", ".json"))
        if names != expected:
            r.fail(f"outputs {len(names)} files, expected exactly {len(expected)} "
                   f"(differences: {sorted(set(names) ^ set(expected))[:3]})")
        lines = [read_json(out / f"{n}.json").get("line") for n in self.names if (out / f"{n}.json").exists()]
        if len(lines) != len(set(lines)):
            r.fail("two sidecars name the same prompt line")
        identical = True
        for n in self.names:
            if not (out / f"{n}.wav").exists():
                continue
            if (out / f"{n}.wav").read_bytes() != (self.ref / f"{n}.wav").read_bytes():
                identical = False
                r.fail(f"{n}.wav differs from the uninterrupted run's")
            if _sidecar(out / f"{n}.json") != _sidecar(self.ref / f"{n}.json"):
                identical = False
                r.fail(f"{n}.json differs from the uninterrupted run's (beyond created/stage_seconds/batch)")
        r.identical = identical and names == expected


# -- bench -----------------------------------------------------------------------------------------------

def _results(path: Path) -> list[dict[str, Any]]:
    from cadenza.plugins.workflows.bench.run import read_file

    return read_file(path)


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _png(path: Path) -> int:
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or not data.rstrip().endswith(b"IEND\xaeB`\x82"):
        raise ValueError("not a whole PNG file")
    return len(data)


def _stable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in BENCH_VOLATILE}


class Bench:
    name = "bench"
    unit = "rows"

    def __init__(self, reference: Path):
        self.ref = reference
        self.rows = {r["id"]: r for r in _results(reference / "results.jsonl")}
        self.total = len(self.rows)

    def after_kill(self, out: Path, r: Report) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        for path in visible(out):
            if path.suffix == ".jsonl":
                rows = r.load(path, _results) or []
            elif path.suffix == ".csv":
                r.load(path, _csv)
            elif path.suffix == ".png":
                r.load(path, _png)
            elif path.suffix == ".md":
                r.load(path, lambda p: p.read_text(encoding="utf-8"))
            else:
                r.fail(f"{path.name}: unexpected file in the output folder")
        ids = [row["id"] for row in rows]
        if len(ids) != len(set(ids)):
            r.fail("results.jsonl holds a combination twice after the kill")
        kept = {row["id"]: row for row in rows if row.get("status") in ("ok", "incompatible")}
        return {"progress": len(kept), "kept": kept,
                "finished": len(kept) == self.total and (out / "results.md").exists()}

    def after_resume(self, out: Path, output: str | None, at_kill: dict[str, Any], r: Report) -> None:
        rows = _results(out / "results.jsonl")
        ids = [row["id"] for row in rows]
        if len(ids) != len(set(ids)):
            r.fail(f"results.jsonl holds {len(ids) - len(set(ids))} combination(s) twice")
        if sorted(set(ids)) != sorted(self.rows):
            r.fail(f"results.jsonl has {len(set(ids))} combinations, the reference {len(self.rows)}")
        final = {row["id"]: row for row in rows}
        remeasured = [i for i, row in at_kill["kept"].items() if final.get(i) != row]
        if remeasured:
            r.fail(f"{len(remeasured)} row(s) finished before the kill were measured again or changed")
        identical = True
        for i, row in final.items():
            if row.get("status") != "ok" and row.get("status") != "incompatible":
                r.fail(f"{i}: status {row.get('status')} ({row.get('error')})")
            if i in self.rows and _stable(row) != _stable(self.rows[i]):
                identical = False
                keys = sorted(k for k in set(row) | set(self.rows[i]) if row.get(k) != self.rows[i].get(k)
                              and k not in BENCH_VOLATILE)
                r.fail(f"{i}: differs from the uninterrupted run's row in {', '.join(keys[:4])}")
        for name in ("results.md", "results.csv", "quality_vs_speed.png", "stage_times.png"):
            if not (out / name).exists():
                r.fail(f"{name}: missing after the resume")
        if (out / "results.csv").exists() and [x["id"] for x in _csv(out / "results.csv")] != \
                [x["id"] for x in _csv(self.ref / "results.csv")]:
            r.fail("results.csv rows differ from the reference's")
        r.identical = identical and sorted(set(ids)) == sorted(self.rows)


CHECKERS = {"prepare": Prepare, "train": Train, "batch": Batch, "bench": Bench}


# -- one workflow ----------------------------------------------------------------------------------------

def moments(rng: random.Random, count: int, duration: float) -> list[float]:
    """One moment in each of ``count`` equal slices of ``duration`` (stratified: spread, not clumped)."""
    return [round((i + rng.random()) * duration / count, 3) for i in range(count)]


def bench_workflow(workflow: str, work: Path, count: int, seed: int, say: Any) -> dict[str, Any]:
    logs = work / "logs"
    ref_out = f"ref-{workflow}"
    ref = run(command(workflow, ref_out, resume=False), work, logs / f"{ref_out}.log")
    if ref["rc"] != 0:
        raise SystemExit(f"the reference {workflow} run failed (exit {ref['rc']}); see {logs / f'{ref_out}.log'}:\n"
                         + (logs / f"{ref_out}.log").read_text()[-3000:])
    checker = CHECKERS[workflow](work / ref_out)
    say(f"{workflow}: reference run {ref['seconds']:.2f} s, {checker.total} {checker.unit}")
    rng = random.Random(f"{seed}:{workflow}")
    runs = []
    for i, at in enumerate(moments(rng, count, ref["seconds"])):
        out = f"{workflow}-{i:02d}"
        log = logs / f"{out}.log"
        r = Report()
        killed = run(command(workflow, out, resume=False), work, log, kill_at=at)
        record: dict[str, Any] = {"workflow": workflow, "run": i, "kill_at": at, "landed": killed["landed"],
                                  "killed_at": killed["killed_at"]}
        at_kill = checker.after_kill(work / out, r)
        record["progress_at_kill"] = at_kill["progress"]
        record["finished_at_kill"] = bool(killed["landed"] and at_kill["finished"])
        record["temp_files_at_kill"] = len(hidden_temps(work / out))
        record["files_checked"] = r.checked
        refused = False  # a finished train run's --resume: refused by design
        output: str | None = None  # what the resume printed (None: nothing was resumed)
        if killed["landed"]:
            mark = log.stat().st_size
            codes: list[int] = []
            seconds = 0.0
            while len(codes) < 3:  # resume until it completes (each resume runs uninterrupted)
                resumed = run(command(workflow, out, resume=True), work, log)
                codes.append(resumed["rc"])
                seconds += resumed["seconds"]
                if resumed["rc"] in (0, 2):  # done, or a one-line refusal (the same every time)
                    break
            output = log.read_bytes()[mark:].decode(errors="replace")
            record.update(resume_rc=codes[-1], resume_seconds=round(seconds, 3), resume_exit_codes=codes)
            if workflow == "train" and at_kill["finished"] and codes[0] == 2 and "already finished" in output:
                # Killed while exiting, after its work was done: `train --resume` refuses a finished
                # run (by design: exit 2, one line); the run's outputs are checked as they are.
                refused, output = True, None
                r.notes.append("killed after the run had finished (while exiting): --resume refuses a finished "
                               "run, by design (exit 2, 'already finished')")
            elif codes != [0]:
                last = [line for line in output.splitlines() if line.strip()][-1:] or [""]
                r.fail(f"resume exit codes {codes}: {last[0][:200]}")
        else:
            r.notes.append(f"finished (exit {killed['rc']}) before the kill at {at:.2f} s")
            if killed["rc"] != 0:
                r.fail(f"the run exited {killed['rc']} without being killed")
            record.update(resume_rc=None, resume_seconds=None, resume_exit_codes=[])
        record["resume_refused_finished"] = refused
        if record["resume_rc"] == 0 or refused or not killed["landed"]:
            try:
                checker.after_resume(work / out, output, at_kill, r)
            except Exception as exc:  # noqa: BLE001 - a result that cannot even be read is a failure
                r.fail(f"final result unreadable: {type(exc).__name__}: {str(exc)[:200]}")
        temps = hidden_temps(work / out)
        if temps:
            r.notes.append(f"{len(temps)} temporary file(s) of killed atomic writes left after the resume: {temps[0]}")
        record.update(temp_files_after_resume=len(temps), identical=r.identical, max_abs_diff=r.max_abs_diff,
                      passed=not r.failures, failures=r.failures, notes=r.notes)
        runs.append(record)
        state = "killed" if killed["landed"] else "not killed"
        say(f"  {workflow} #{i}: {state} at {at:.2f} s, {at_kill['progress']}/{checker.total} {checker.unit} done, "
            f"{r.checked} files checked -> {'ok' if not r.failures else 'FAILED: ' + '; '.join(r.failures)}")
        shutil.rmtree(work / out, ignore_errors=True)
    landed = [x for x in runs if x["landed"]]
    progress = [x["progress_at_kill"] for x in landed]
    diffs = [x["max_abs_diff"] for x in runs if x["max_abs_diff"] is not None]
    return {"workflow": workflow, "command": shown(command(workflow, "OUT", resume=workflow != "prepare")),
            "reference_seconds": ref["seconds"], "units": checker.unit, "total_units": checker.total,
            "moments": len(runs), "landed": len(landed),
            "finished_at_kill": sum(1 for x in landed if x["finished_at_kill"]),
            "before_any_output": sum(1 for p in progress if p == 0),
            "progress_at_kill": [min(progress), max(progress)] if progress else None,
            "files_checked": sum(x["files_checked"] for x in runs),
            "resumed": sum(1 for x in landed if not x["resume_refused_finished"]),
            "resumed_ok": sum(1 for x in landed if x["resume_rc"] == 0 and not x["resume_refused_finished"]),
            "refused_finished": sum(1 for x in landed if x["resume_refused_finished"]),
            "identical": sum(1 for x in runs if x["identical"]),
            "max_abs_diff": max(diffs) if diffs else None,
            "temp_files_left": sum(x["temp_files_after_resume"] for x in runs),
            "passed": sum(1 for x in runs if x["passed"]),
            "failures": [f"#{x['run']}: {f}" for x in runs for f in x["failures"]], "runs": runs}


# -- the report ------------------------------------------------------------------------------------------

def markdown(result: dict[str, Any]) -> str:
    lines = ["# Kill -9 and resume", "",
             "Each workflow ran once uninterrupted, then in fresh output folders was sent SIGKILL (its whole process "
             "group) at random moments spread over the reference run's duration, measured from process start, and "
             "resumed with its resume option. After each kill every file left was loaded; after each resume the "
             "result was checked for lost or repeated work and compared with the uninterrupted run's. Why and how: "
             "the docstring of `benchmarks/kill_resume.py`.", "",
             f"Command: `{result['command']}` ({result['moments']} moments per workflow, RNG seed {result['seed']}) "
             f"on {result['machine']['cpus']} CPUs, Python {result['machine']['python']}, torch "
             f"{result['machine']['torch']}; one torch thread per process. "
             f"Wall time {result['elapsed_seconds']:.0f} s.",
             "",
             "| workflow | reference run (s) | moments | kills that landed | of them: before any output / after "
             "finishing | progress at kill | files checked after kills | resumes exit 0 | identical to uninterrupted "
             "| failures |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for w in result["workflows"]:
        progress = (f"{w['progress_at_kill'][0]}-{w['progress_at_kill'][1]} of {w['total_units']} {w['units']}"
                    if w["progress_at_kill"] else "-")
        lines.append(f"| {w['workflow']} | {w['reference_seconds']:.2f} | {w['moments']} | {w['landed']} | "
                     f"{w['before_any_output']} / {w['finished_at_kill']} | {progress} | {w['files_checked']} | "
                     f"{w['resumed_ok']}/{w['resumed']} | {w['identical']}/{w['moments']} | {len(w['failures'])} |")
    lines += ["", "A kill that lands before any output still interrupts a run (while it imports, plans or builds "
              "its models); one that lands after finishing hits the process while it exits. `train --resume` refuses "
              "a finished run by design (exit 2, 'already finished'); those runs are counted in neither column of "
              "\"resumes exit 0\" but their outputs are checked like the others."]
    lines += ["", "Commands (in the script's work folder; `OUT` a fresh folder per run; prepare resumes by "
              "running the same command again):", ""]
    lines += [f"- {w['workflow']}: `{w['command']}`" for w in result["workflows"]]
    lines += ["", "What \"identical\" means: prepare, every cache file byte for byte; train, the final checkpoint's "
              "weights and EMA and the export byte for byte (and the logged losses equal); batch, every WAV byte for "
              "byte and every sidecar equal but for `created`, `stage_seconds` and `batch` (which rows shared a batch); bench, every row equal but for "
              "its timing, memory and host fields.", ""]
    for w in result["workflows"]:
        if w["max_abs_diff"] is not None:
            lines.append(f"- {w['workflow']}: max abs difference of the final weights from the uninterrupted run: "
                         f"{w['max_abs_diff']:.3g}.")
        if w["temp_files_left"]:
            lines.append(f"- {w['workflow']}: {w['temp_files_left']} hidden temporary file(s) of atomic writes "
                         "interrupted by a kill were still there after the resume (never read by Cadenza).")
    failures = [(w["workflow"], f) for w in result["workflows"] for f in w["failures"]]
    lines += ["", "## Failures", ""]
    lines += [f"- {name} {f}" for name, f in failures] or ["None."]
    notes = sorted({(w["workflow"], n) for w in result["workflows"] for x in w["runs"] for n in x["notes"]
                    if not n.startswith("finished (")})
    if notes:
        lines += ["", "## Notes", ""] + [f"- {name}: {n}" for name, n in notes]
    lines += ["", "## Every run", "", "| workflow | # | kill at (s) | killed | progress at kill | files checked | "
              "resume exit | resume (s) | identical | result |", "|---|---:|---:|---|---:|---:|---:|---:|---|---|"]
    for w in result["workflows"]:
        for x in w["runs"]:
            lines.append(f"| {w['workflow']} | {x['run']} | {x['kill_at']:.2f} | "
                         f"{'yes' if x['landed'] else 'no (done)'} | "
                         f"{x['progress_at_kill']}/{w['total_units']} | {x['files_checked']} | "
                         f"{'-' if x['resume_rc'] is None else x['resume_rc']}"
                         f"{' (finished)' if x['resume_refused_finished'] else ''} | "
                         f"{'-' if x['resume_seconds'] is None else format(x['resume_seconds'], '.2f')} | "
                         f"{'yes' if x['identical'] else 'no'} | {'pass' if x['passed'] else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moments", type=int, default=DEFAULT_MOMENTS, help="kills per workflow (default: 10)")
    parser.add_argument("--quick", action="store_true", help="2 moments per workflow (a smoke test)")
    parser.add_argument("--workflows", default=",".join(WORKFLOWS),
                        help=f"comma-separated subset of {','.join(WORKFLOWS)} (default: all)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the kill moments (default: 0)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep the inputs, reference outputs and logs here (default: a temporary folder)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args()
    count = 2 if args.quick and args.moments == DEFAULT_MOMENTS else args.moments
    selected = [w.strip() for w in args.workflows.split(",") if w.strip()]
    unknown = [w for w in selected if w not in WORKFLOWS]
    if unknown or not selected or count < 1:
        parser.error(f"--workflows takes names from {','.join(WORKFLOWS)}; --moments at least 1")

    import torch

    started = time.monotonic()

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="kill-resume-") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if any(work.iterdir()):
            raise SystemExit(f"--work-dir {work}: must be empty")
        (work / "logs").mkdir()
        make_inputs(work)
        if "train" in selected:  # the cache every train run reads (made once, never killed)
            cache = run(command("prepare", "train-cache", resume=False), work, work / "logs" / "train-cache.log")
            if cache["rc"] != 0:
                log = (work / "logs" / "train-cache.log").read_text()
                raise SystemExit(f"making the train cache failed:\n{log[-3000:]}")
        results = [bench_workflow(w, work, count, args.seed, say) for w in WORKFLOWS if w in selected]

    parts = ["python benchmarks/kill_resume.py"]
    if count != DEFAULT_MOMENTS:
        parts.append(f"--moments {count}")
    if selected != list(WORKFLOWS):
        parts.append(f"--workflows {','.join(selected)}")
    if args.seed != DEFAULT_SEED:
        parts.append(f"--seed {args.seed}")
    result = {"command": " ".join(parts), "moments": count, "seed": args.seed,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                          "platform": platform.platform(), "load_average": [round(x, 2) for x in os.getloadavg()]},
              "env": ENV, "elapsed_seconds": round(time.monotonic() - started, 1),
              "passed": all(not w["failures"] for w in results), "workflows": results}
    text = markdown(result)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_text(args.out_dir / "kill_resume.json", json.dumps(result, indent=2) + "\n")
    write_text(args.out_dir / "kill_resume.md", text)
    print(text)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
