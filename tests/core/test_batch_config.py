"""``BatchConfig``: the batch generator called from Python, with the CLI's defaults and checks."""

from __future__ import annotations

import json

import attrs
import pytest
import soundfile

from cadenza.core.cli.batch import BatchConfig, config_from_args, run_batch
from cadenza.core.cli.main import build_parser
from cadenza.core.errors import InputError


def test_the_defaults_are_the_command_lines(tmp_path):
    args = build_parser().parse_args(["generate", "--pipeline", "tiny", "--prompts", "p.jsonl", "--out", "o"])
    assert config_from_args(args) == BatchConfig(pipeline="tiny", prompts="p.jsonl", out="o")


@pytest.mark.parametrize("argv, message", [
    (["a harp"], "give a prompt or --prompts FILE, not both"),
    ([], "--prompts needs --out DIR"),
    (["--out", "o", "--output", "x.wav"], "--output is for one prompt"),
])
def test_command_line_conflicts_are_one_line(argv, message):
    args = build_parser().parse_args(["generate", "--prompts", "p.jsonl", *argv])
    with pytest.raises(InputError, match=message):
        config_from_args(args)


@pytest.mark.parametrize("values, message", [
    ({"seed": -1}, "--seed"),
    ({"seconds": 0.0}, "seconds"),
    ({"overlap": -1.0}, "overlap"),
    ({"batch_size": 0}, "--batch-size must be an integer >= 1, got 0"),
])
def test_bad_values_fail_when_the_config_is_made(values, message):
    with pytest.raises(InputError, match=message) as info:
        BatchConfig(pipeline="tiny", prompts="p.jsonl", out="o", **values)
    assert "\n" not in str(info.value)


def test_run_batch_from_python_writes_a_pair_per_line_and_resumes(tiny_spec, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "a calm harp", "seconds": 0.2, "name": "harp"}) + "\n")
    config = BatchConfig(pipeline=tiny_spec, prompts=prompts, out=tmp_path / "out", quiet=True)
    assert run_batch(config) == 0
    audio = tmp_path / "out" / "harp.wav"
    assert soundfile.info(str(audio)).duration == pytest.approx(0.2, abs=0.05)
    assert json.loads((tmp_path / "out" / "harp.json").read_text())["prompt"] == "a calm harp"
    before = audio.stat().st_mtime_ns
    assert run_batch(attrs.evolve(config, resume=True)) == 0  # nothing left to do: the file is kept
    assert audio.stat().st_mtime_ns == before
