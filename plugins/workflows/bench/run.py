"""Run a benchmark matrix: one fresh worker process per combination, results kept as they finish.

Every combination is measured in a process of its own (``spawn`` start method, never reused),
so its peak memory is its own and a crash (out of memory, a segfault in a library) loses that
combination only. Up to ``workers`` run at once. The parent alone writes the results file:
each finished row is added with an atomic rewrite of ``results.jsonl``, so a killed run leaves
every finished row intact, and ``--resume`` measures only what is missing (failed rows are
tried again; incompatible ones are re-checked, which costs nothing).

Sharding (``--shard K/N``) runs every N-th combination starting at K and writes
``results-K-of-N.jsonl`` instead, so shards on several machines (torchrun ranks, Ray tasks)
can share one output folder; a later run without ``--shard`` merges them.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from cadenza.core.files.atomic import write_text
from cadenza.core.files.json_lines import read_objects
from cadenza.core.files.user_text import MiB
from cadenza.plugins.workflows.bench.matrix import Combination, Matrix
from cadenza.core.errors import InputError
from cadenza.plugins.workflows.bench.measure import measure

MAX_RESULTS_BYTES = 256 * MiB  # a results file holds one short row per clip and metric

RESULTS = "results.jsonl"
_SHARD_FILE = re.compile(r"^results-(\d+)-of-(\d+)\.jsonl$")
DONE = ("ok", "incompatible")  # statuses --resume keeps; failed rows are measured again


@attrs.frozen
class Shard:
    index: int
    count: int

    @property
    def filename(self) -> str:
        return f"results-{self.index}-of-{self.count}.jsonl"


def parse_shard(text: str | None, environ: dict[str, str] | None = None) -> Shard | None:
    """``K/N`` (0 <= K < N), or ``env``: ``RANK``/``WORLD_SIZE`` as torchrun sets them."""
    if text is None:
        return None
    env = os.environ if environ is None else environ
    if text == "env":
        try:
            index, count = int(env["RANK"]), int(env["WORLD_SIZE"])
        except (KeyError, ValueError):
            raise InputError("--shard env needs RANK and WORLD_SIZE in the environment (torchrun sets them)") from None
    else:
        match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
        if not match:
            raise InputError(f"--shard must be K/N (e.g. 0/4) or 'env', got {text!r}")
        index, count = int(match[1]), int(match[2])
    if not 0 <= index < count:
        raise InputError(f"--shard {index}/{count}: K must be 0..{count - 1}")
    return Shard(index, count)


def shard_device(device: str, shard: Shard | None, environ: dict[str, str] | None = None) -> str:
    """Under torchrun, ``--device cuda`` means this rank's own GPU (``cuda:LOCAL_RANK``)."""
    env = os.environ if environ is None else environ
    if shard is not None and device == "cuda" and env.get("LOCAL_RANK", "").isdigit():
        return f"cuda:{env['LOCAL_RANK']}"
    return device


def read_file(path: Path) -> list[dict[str, Any]]:
    """The rows of one results file; a line that is not a row is an InputError naming it."""
    rows = []
    for number, row in read_objects(path, "results file", MAX_RESULTS_BYTES):
        if not isinstance(row.get("id"), str):
            raise InputError(f"{path}:{number}: not a result row (no 'id')")
        rows.append(row)
    return rows


def read_rows(out: Path) -> dict[str, dict[str, Any]]:
    """Rows already in ``out`` (shard files first, then results.jsonl), by combination id."""
    files = sorted(p for p in out.glob("results-*-of-*.jsonl") if _SHARD_FILE.match(p.name))
    if (out / RESULTS).exists():
        files.append(out / RESULTS)
    rows: dict[str, dict[str, Any]] = {}
    for path in files:
        for row in read_file(path):
            if row["id"] in rows and rows[row["id"]].get("status") in DONE and row.get("status") not in DONE:
                continue  # a merged shard's finished row beats a failure elsewhere
            rows[row["id"]] = row
    return rows


class ResultsFile:
    """The rows of one results file; each ``add`` rewrites it atomically (no half-written line, ever)."""

    def __init__(self, path: Path, rows: list[dict[str, Any]]):
        self.path = path
        self.rows = list(rows)

    def add(self, row: dict[str, Any]) -> None:
        self.rows = [r for r in self.rows if r["id"] != row["id"]] + [row]
        self.save()

    def save(self) -> None:
        write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.rows))


def select(matrix: Matrix, only: list[str] | None, shard: Shard | None) -> list[Combination]:
    combos = list(matrix.combinations)
    if only:
        ids = {c.id for c in combos}
        unknown = [i for i in only if i not in ids]
        if unknown:
            raise InputError(f"--only {unknown[0]}: no such combination in {matrix.path} (list them with --list)")
        combos = [c for c in combos if c.id in set(only)]
    if shard is not None:
        combos = [c for i, c in enumerate(combos) if i % shard.count == shard.index]
    return combos


def _check_kept(matrix: Matrix, rows: dict[str, dict], fingerprint: str, out: Path) -> None:
    """Kept rows must have been measured under the same settings and spec as this matrix says."""
    for combo in matrix.combinations:
        row = rows.get(combo.id)
        if row is None or row.get("status") not in DONE:
            continue
        if row.get("settings") != fingerprint:
            raise InputError(f"{out}: {combo.id} was measured with other prompts, seeds, seconds, metrics or device "
                             "than the matrix now gives: use another --out to compare them")
        if row.get("spec_hash") != combo.spec_hash:
            raise InputError(f"{out}: {combo.id} was measured from another spec (the base pipeline changed): use "
                             "another --out")


def _incompatible_row(combo: Combination, fingerprint: str) -> dict[str, Any]:
    return {"id": combo.id, "label": combo.label, "overrides": combo.overrides, "spec_hash": combo.spec_hash,
            "settings": fingerprint, "status": "incompatible", "reason": combo.reason}


def _job(combo: Combination, matrix: Matrix, device: str, threads: int, fingerprint: str) -> dict[str, Any]:
    return {"id": combo.id, "label": combo.label, "overrides": combo.overrides, "tree": combo.tree,
            "spec_hash": combo.spec_hash, "base": str(matrix.base), "device": device, "threads": threads,
            "settings": {**matrix.settings(device), "prompts": [attrs.asdict(p) for p in matrix.prompts],
                         "references": list(matrix.references)},  # absolute paths, for this machine
            "fingerprint": fingerprint}


def _child(job: dict[str, Any], conn: Any) -> None:
    """Worker process body: measure, send the row, exit (the process is never reused)."""
    try:
        conn.send(measure(job))
    finally:
        conn.close()


def run_matrix(matrix: Matrix, out: Path, *, device: str = "cpu", workers: int = 1, resume: bool = False,
               only: list[str] | None = None, shard: Shard | None = None,
               progress: Callable[[int], Any] | None = None, note: Callable[[str], None] | None = None
               ) -> list[dict[str, Any]]:
    """Measure the selected combinations not yet done; return every row of this matrix in ``out``."""
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    note = note or (lambda line: print(line, file=sys.stderr))
    fingerprint = matrix.fingerprint(device)
    results = out / (shard.filename if shard else RESULTS)
    existing = read_rows(out) if out.exists() else {}
    if not resume and (results.exists() and results.stat().st_size
                       or shard is None and existing):
        raise InputError(f"{results if results.exists() else out} already holds results: pass --resume to keep them "
                         "and measure only what is missing, or choose another --out")
    _check_kept(matrix, existing, fingerprint, out)
    writer = ResultsFile(results, list(existing.values()) if shard is None else
                         read_file(results) if results.exists() else [])
    if shard is None and writer.rows:
        writer.save()  # shard files merged into results.jsonl
    todo = [c for c in select(matrix, only, shard) if existing.get(c.id, {}).get("status") not in DONE]
    bar = progress(len(todo)) if progress else None
    threads = matrix.threads or max(1, (os.cpu_count() or 1) // workers)
    jobs = []
    for combo in todo:
        if combo.reason is not None:
            writer.add(_incompatible_row(combo, fingerprint))
            note(f"skipped {combo.id}: incompatible: {combo.reason}")
            if bar:
                bar.update(1)
        else:
            jobs.append(_job(combo, matrix, device, threads, fingerprint))
    _run_jobs(jobs, workers, writer, bar, note)
    if bar:
        bar.close()
    rows = read_rows(out)
    return [rows[c.id] for c in matrix.combinations if c.id in rows]


def _run_jobs(jobs: list[dict], workers: int, writer: ResultsFile, bar: Any, note: Callable[[str], None]) -> None:
    import multiprocessing
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("spawn")
    pending = list(reversed(jobs))
    running: dict[Any, tuple[Any, dict]] = {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                job = pending.pop()
                receive, send = ctx.Pipe(duplex=False)
                process = ctx.Process(target=_child, args=(job, send), name=f"cadenza-bench {job['id']}")
                process.start()
                send.close()  # the child holds the only sending end: its exit closes the pipe
                running[receive] = (process, job)
            for conn in wait(list(running)):
                process, job = running.pop(conn)
                try:
                    row = conn.recv()
                except EOFError:
                    row = None
                conn.close()
                process.join()
                if row is None:
                    row = {"id": job["id"], "label": job["label"], "overrides": job["overrides"],
                           "spec_hash": job["spec_hash"], "settings": job["fingerprint"], "status": "failed",
                           "error": f"the worker process died (exit code {process.exitcode})"}
                writer.add(row)
                if row["status"] != "ok":
                    note(f"failed {row['id']}: {row.get('error')}")
                if bar:
                    bar.update(1)
    finally:
        for process, _ in running.values():
            process.terminate()
        for process, _ in running.values():
            process.join()
