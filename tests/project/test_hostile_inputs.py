"""Every hostile input a user can hand ``cadenza`` ends in one line they can act on.

The corpus (:mod:`hostile_cases`) covers every subcommand: specs that are bombs, bottomless,
binary or out of range; paths that are FIFOs, devices, folders or too long; durations, seeds
and devices that cannot work; broken audio, MIDI and JSON; outputs that cannot be written.
Each case must exit 2 with exactly one line on stderr, no traceback and no "internal error",
leave no file behind, and finish within the time limit. The cases run in one long-lived
worker process (:mod:`hostile_worker`); a case that hangs is killed and the worker restarted.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cadenza.core.cli.messages import MAX_PROBLEM_LINES
from hostile_cases import all_cases

TIME_LIMIT_S = 20.0
WORKER = Path(__file__).with_name("hostile_worker.py")
CASES = all_cases()


class Worker:
    """The worker process; ``run`` returns its reply, or None when the case outlived the limit."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def _start(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
        self.process = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)
        assert json.loads(self._read(120.0) or "{}").get("ready"), "the hostile-input worker did not start"

    def _read(self, timeout: float) -> str | None:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        return self.process.stdout.readline() if ready else None

    def run(self, argv: list[str], cwd: Path, file_size_limit: int | None) -> dict | None:
        if self.process is None or self.process.poll() is not None:
            self._start()
        request = {"argv": argv, "cwd": str(cwd), "file_size_limit": file_size_limit}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self._read(TIME_LIMIT_S)
        if not line:
            self.stop()
            return None
        return json.loads(line)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.stop()


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_the_corpus_covers_every_subcommand():
    from cadenza.core.cli.main import COMMANDS, installed_commands

    covered = {case.argv[0] for case in CASES if case.argv}
    assert set(COMMANDS) - {"plugins", "pipelines"} <= covered  # the listings take no input to abuse
    assert {c.name for c in installed_commands()} <= covered
    assert len(CASES) >= 150


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_is_one_line_and_exit_2(case, worker, tmp_path):
    folder = tmp_path / "case"
    folder.mkdir()
    if case.setup is not None:
        case.setup(folder)
    before = files_under(folder)
    start = time.monotonic()
    reply = worker.run(case.command(folder), folder, case.file_size_limit)
    seconds = time.monotonic() - start
    assert reply is not None, f"no answer within {TIME_LIMIT_S:g} s (hung)"
    err = reply["stderr"]
    lines = [line for line in err.splitlines() if line.strip()]
    assert "internal error" not in err and "Traceback" not in err and "escaped main()" not in err, err
    assert reply["code"] == 2, f"exit {reply['code']}: {err}"
    # one line; or a spec's list of problems, each FILE:LINE: message, the list cut at a limit
    located = all(re.match(r"^\S.*:\d+: ", line) for line in lines[:MAX_PROBLEM_LINES])
    assert len(lines) == 1 or (located and len(lines) <= MAX_PROBLEM_LINES + 1), f"{len(lines)} lines:\n{err}"
    assert files_under(folder) == before, f"left behind: {sorted(files_under(folder) - before)}"
    assert seconds < TIME_LIMIT_S
