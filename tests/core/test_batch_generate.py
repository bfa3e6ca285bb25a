"""`cadenza generate --prompts FILE --out DIR`: one WAV + sidecar per line, batched, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile

from cadenza.core.engine import decode as decode_module
from cadenza.core.cli.batch import batches, read_jobs
from cadenza.core.engine.decode import decode_stage

DEFAULTS = {"seed": 0, "seconds": None, "prime": None}


@pytest.fixture
def decode_calls(monkeypatch):
    """Count stage decodes (three per batch with the tiny spec)."""
    calls = []

    def spy(model, request, num_frames, sampler, **kwargs):
        calls.append(request.batch_size)
        return decode_stage(model, request, num_frames, sampler, **kwargs)

    monkeypatch.setattr(decode_module, "decode_stage", spy)
    return calls


def write_lines(path: Path, *lines) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_one_pair_per_prompt_equal_settings_batched_bad_line_skipped(cli, tiny_spec, tmp_path, decode_calls):
    prompts = write_lines(
        tmp_path / "prompts.jsonl",
        {"prompt": "a calm harp", "seconds": 0.2},
        {"prompt": "fast drums", "seconds": 0.2, "seed": 7, "name": "drums"},
        "",
        "{not json",
        {"prompt": "a slow cello", "seconds": 0.3, "seed": 2},
        {"prompt": "an organ", "seconds": 0.2, "seed": 5},
    )
    out = tmp_path / "out"
    code, _, stderr = cli("generate", "--prompts", prompts, "--out", out, "-p", tiny_spec)
    assert code == 2  # a bad line: reported, skipped, and the exit status says so
    assert f"{prompts}:4: not valid JSON" in stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "0001.json", "0001.wav", "0005.json", "0005.wav", "0006.json", "0006.wav", "drums.json", "drums.wav"]
    assert decode_calls == [3, 3, 3, 1, 1, 1]  # 0.2 s: one batch of three; 0.3 s: one of one
    assert "done: 4 generated, 0 skipped (outputs exist), 1 bad line; 5 lines in" in stderr.strip().splitlines()[-1]
    sidecar = json.loads((out / "drums.json").read_text())
    assert sidecar["prompt"] == "fast drums" and sidecar["seed"] == 7 and sidecar["seconds"] == 0.2
    assert sidecar["line"] == 2 and sidecar["batch"] == {"size": 3, "row": 1} and sidecar["audio"] == "drums.wav"
    assert soundfile.info(out / "0005.wav").frames == 4800 and soundfile.info(out / "drums.wav").frames == 3200


def test_a_batched_prompt_gets_the_audio_it_gets_alone(cli, tiny_spec, tmp_path):
    prompts = write_lines(tmp_path / "p.jsonl", {"prompt": "a calm harp", "seed": 3},
                          {"prompt": "fast drums", "seed": 7})
    assert cli("generate", "--prompts", prompts, "--out", tmp_path / "out", "-p", tiny_spec, "-s", "0.3", "-q")[0] == 0
    assert cli("generate", "fast drums", "--seed", "7", "-p", tiny_spec, "-s", "0.3", "-o", tmp_path / "alone.wav",
               "-q")[0] == 0
    batched, _ = soundfile.read(tmp_path / "out" / "0002.wav")
    alone, _ = soundfile.read(tmp_path / "alone.wav")
    assert abs(batched - alone).max() < 1e-3  # same tokens; batched convolutions differ in the last bits


def test_resume_recomputes_nothing_done(cli, tiny_spec, tmp_path, decode_calls):
    prompts = write_lines(tmp_path / "p.jsonl", {"prompt": "one"}, {"prompt": "two"}, {"prompt": "three", "seconds": 0.3})
    args = ["generate", "--prompts", prompts, "--out", tmp_path / "out", "-p", tiny_spec, "-s", "0.2", "-q"]
    assert cli(*args)[0] == 0 and len(decode_calls) == 6
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    decode_calls.clear()
    code, _, stderr = cli(*args[:-1], "--resume")
    assert code == 0 and decode_calls == []
    assert "done: 0 generated, 3 skipped (outputs exist), 0 bad lines" in stderr
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()} == before
    (tmp_path / "out" / "0002.wav").unlink()  # an interrupted run: only what is missing is redone
    assert cli(*args, "--resume")[0] == 0 and decode_calls == [1, 1, 1]


def test_batch_size_splits_a_group_and_primes_group_by_file(cli, tiny_spec, tmp_path, decode_calls):
    assert cli("generate", "x", "-p", tiny_spec, "-s", "0.2", "-o", tmp_path / "intro.wav", "-q")[0] == 0
    decode_calls.clear()
    prompts = write_lines(tmp_path / "p.jsonl", *({"prompt": f"p{i}"} for i in range(3)),
                          {"prompt": "continued", "prime": "intro.wav", "seconds": 0.5},
                          {"prompt": "too long a prime", "prime": "intro.wav", "seconds": 0.2})
    code, _, stderr = cli("generate", "--prompts", prompts, "--out", tmp_path / "out", "-p", tiny_spec, "-s", "0.2",
                          "--batch-size", "2", "--only-new", "-q")
    assert code == 2 and f"{prompts}:5: {tmp_path / 'intro.wav'}: the prime is 0.2 s long" in stderr
    assert decode_calls == [2, 2, 2, 1, 1, 1, 1, 1, 1]
    assert soundfile.info(tmp_path / "out" / "0004.wav").frames == 4800  # --only-new: 0.3 s after the prime
    assert json.loads((tmp_path / "out" / "0004.json").read_text())["prime"]["in_audio"] is False


@pytest.mark.parametrize(("line", "message"), [
    ("[1, 2]", "expected a JSON object"),
    ('{"prompt": "x", "colour": "red"}',
     "unknown key 'colour'; allowed: prompt, seed, seconds, prime, melody, melody_source, bpm, name"),
    ('{"prompt": "x", "melody": "nope.mid"}', "melody file not found"),
    ('{"prompt": "x", "melody": 3}', '"melody" must be the path of a melody file'),
    ('{"prompt": "x", "melody": "p.jsonl", "prime": "p.jsonl"}', "cannot have both a prime and a melody"),
    ('{"prompt": "x", "melody": "p.jsonl", "melody_source": ""}', '"melody_source" must be a melody source name'),
    ('{"seconds": 2}', '"prompt" is missing or empty'),
    ('{"prompt": "x", "seed": -1}', '"seed" must be an integer from 0 to 2^63-1'),
    ('{"prompt": "x", "seed": true}', '"seed" must be an integer from 0 to 2^63-1'),
    ('{"prompt": "x", "seconds": 0}', '"seconds" must be a positive number'),
    ('{"prompt": "x", "prime": "nope.wav"}', "prime audio file not found"),
    ('{"prompt": "x", "name": "../escape"}', '"name" must be a plain file name'),
    ('{"prompt": "x", "name": "first"}', "name 'first' is already used by line 1"),
])
def test_bad_lines_are_reported_with_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "p.jsonl", {"prompt": "ok", "name": "first"}, line)
    jobs, problems = read_jobs(path, DEFAULTS)
    assert [j.name for j in jobs] == ["first"]
    assert len(problems) == 1 and problems[0].startswith(f"{path}:2: ") and message in problems[0]


def test_groups_keep_first_appearance_order(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", {"prompt": "a", "seconds": 1}, {"prompt": "b", "seconds": 2},
                       {"prompt": "c", "seconds": 1}, {"prompt": "d", "seconds": 1})
    jobs, _ = read_jobs(path, DEFAULTS)
    assert [[j.prompt for j in b] for b in batches(jobs, 2)] == [["a", "c"], ["d"], ["b"]]


@pytest.mark.parametrize(("args", "message"), [
    (["--prompts", "{tmp}/p.jsonl"], "--prompts needs --out DIR"),
    (["x", "--prompts", "{tmp}/p.jsonl", "--out", "{tmp}/o"], "give a prompt or --prompts FILE, not both"),
    (["--prompts", "{tmp}/p.jsonl", "--out", "{tmp}/o", "-o", "a.wav"], "--output is for one prompt"),
    (["--prompts", "{tmp}/missing.jsonl", "--out", "{tmp}/o"], "missing.jsonl: prompts file not found"),
    (["--prompts", "{tmp}/empty.jsonl", "--out", "{tmp}/o"], "empty.jsonl: no prompts"),
    (["--prompts", "{tmp}/p.jsonl", "--out", "{tmp}/o", "--batch-size", "0"], "argument --batch-size: must be an integer >= 1"),
    (["x", "--resume"], "--resume is for batch mode"),
])
def test_batch_usage_errors_are_one_line(cli, tiny_spec, tmp_path, args, message):
    write_lines(tmp_path / "p.jsonl", {"prompt": "x"})
    (tmp_path / "empty.jsonl").write_text("\n")
    code, _, stderr = cli("generate", *[a.replace("{tmp}", str(tmp_path)) for a in args], "-p", tiny_spec)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
