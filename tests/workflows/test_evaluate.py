"""``cadenza evaluate``: generation from labelled prompts, adherence against the ceiling, FAD, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cadenza.core.cli.main import build_parser
from cadenza.core.errors import InputError
from cadenza.plugins.workflows.evaluate.config import EvaluateConfig, config_from_args
from cadenza.plugins.workflows.evaluate.evaluation import evaluate
from cadenza.plugins.workflows.evaluate.runner import (HELD_OUT_COMBINATION, LabelledPrompt, clip_name, groups_of, read_prompts,
                                   summarize)


@pytest.fixture(scope="module")
def corpus(render_corpus) -> Path:
    return render_corpus(3, 2.0, seed=4)


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def test_evaluate_generates_scores_and_summarises_against_the_ceiling(cli, tiny_spec, corpus, tmp_path):
    out = tmp_path / "eval"
    args = ("evaluate", "--pipeline", tiny_spec, "--prompts", corpus / "manifest.jsonl", "--out", out, "--seeds", "2",
            "--quiet")
    code, stdout, stderr = cli(*args)
    assert code == 0, stderr
    ids = [json.loads(line)["id"] for line in (corpus / "manifest.jsonl").read_text().splitlines()]
    assert sorted(p.name for p in (out / "audio").glob("*.wav")) == sorted(f"{i}-s{s}.wav" for i in ids for s in (0, 1))
    scores = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    references = [json.loads(line) for line in (out / "reference_scores.jsonl").read_text().splitlines()]
    assert len(scores) == 6 and len(references) == 3
    summary = json.loads((out / "summary.json").read_text())
    overall = summary["adherence"]["all"]["overall"]
    assert overall["generated"] == pytest.approx(sum(s["adherence"] for s in scores) / 6)
    assert overall["ceiling"] == pytest.approx(sum(r["adherence"] for r in references) / 3)
    assert overall["share_of_ceiling"] == pytest.approx(overall["generated"] / overall["ceiling"])
    assert summary["seconds"] == 2.0 and "tokenizer" in summary["random_components"]
    assert summary["fad"]["embedding"] == "mel-stats" and summary["fad"]["value"] > 0
    assert "| **overall** |" in stdout and (out / "summary.md").read_text() + "\n" == stdout

    # resuming recomputes nothing; starting over in the same folder is refused
    before_audio, before_scores = _mtimes(out / "audio"), (out / "scores.jsonl").stat().st_mtime_ns
    code, _, stderr = cli(*args, "--resume")
    assert code == 0, stderr
    assert _mtimes(out / "audio") == before_audio and (out / "scores.jsonl").stat().st_mtime_ns == before_scores
    code, _, stderr = cli(*args)
    assert code == 2 and "already holds an evaluation" in stderr
    code, _, stderr = cli(*args[:-1], "--seeds", "3", "--resume", "--quiet")
    assert code == 2 and "seeds: 2 -> 3" in stderr


def test_bad_prompt_lines_are_reported_and_skipped(cli, tiny_spec, corpus, tmp_path):
    good = (corpus / "manifest.jsonl").read_text().splitlines()[0]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join([good, "{not json", json.dumps({"caption": "a tune"}),
                                  json.dumps({"prompt": "slow", "tempo_class": "slow", "audio": "missing.wav"})]) + "\n")
    prompts.with_name("audio").mkdir()
    (tmp_path / "audio" / json.loads(good)["audio"].split("/")[-1]).write_bytes(
        (corpus / json.loads(good)["audio"]).read_bytes())
    code, _, stderr = cli("evaluate", "--pipeline", tiny_spec, "--prompts", prompts, "--out", tmp_path / "eval",
                          "--fad-embedding", "none", "--quiet")
    assert code == 2
    assert f"{prompts}:2: not valid JSON" in stderr
    assert f"{prompts}:3: states none of the attributes" in stderr
    assert f"{prompts}:4: reference audio" in stderr and "not found" in stderr
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["prompts"] == 1


def test_an_unusable_prompts_file_is_one_line(cli, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    code, _, stderr = cli("evaluate", "--prompts", empty, "--out", tmp_path / "eval")
    assert code == 2 and stderr.strip() == f"cadenza evaluate: error: {empty}: no usable prompt lines"
    code, _, stderr = cli("evaluate", "--prompts", tmp_path / "nope.jsonl", "--out", tmp_path / "eval")
    assert code == 2 and "prompts file not found" in stderr
    assert not (tmp_path / "eval").exists()


def test_summary_arithmetic_and_groups():
    prompts = [LabelledPrompt(1, "a", "x", {"mode": "major"}, None, (HELD_OUT_COMBINATION,)),
               LabelledPrompt(2, "b", "y", {"mode": "minor"}, None, ())]
    scores = {clip_name(prompts[0], 0): {"adherence": 1.0, "mode_match": 1.0},
              clip_name(prompts[1], 0): {"adherence": 0.0, "mode_match": 0.0}}
    refs = {"a": {"adherence": 1.0, "mode_match": 1.0}, "b": {"adherence": 0.5, "mode_match": 0.5}}
    summary = summarize(prompts, scores, refs, seeds=1)
    assert summary["all"]["attributes"]["mode"]["generated"] == 0.5
    assert summary["all"]["overall"] == {"generated": 0.5, "ceiling": 0.75, "share_of_ceiling": pytest.approx(2 / 3)}
    assert summary[HELD_OUT_COMBINATION]["overall"]["generated"] == 1.0 and summary[HELD_OUT_COMBINATION]["prompts"] == 1


def test_corpus_groups_follow_the_split_rule():
    from cadenza.plugins.workflows.corpus.build import HELD_OUT_COMBINATIONS
    from cadenza.plugins.workflows.corpus.captions import TEST_ONLY_TEMPLATES

    instrument, mode, tempo = sorted(HELD_OUT_COMBINATIONS)[0]
    assert groups_of({"instrument": instrument, "mode": mode, "tempo_class": tempo, "template": TEST_ONLY_TEMPLATES[0]}) \
        == (HELD_OUT_COMBINATION, "held-out wording")
    assert groups_of({"instrument": "piano", "mode": "major", "tempo_class": "medium", "template": "t01"}) \
        == ("seen combination and wording",)
    assert groups_of({"tempo_class": "slow"}) == ()


def test_read_prompts_limit_and_duplicate_ids(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"id": "x", "prompt": "slow", "tempo_class": "slow"}, {"id": "x", "prompt": "fast", "tempo_class": "fast"},
            {"id": "y", "prompt": "fast", "tempo_class": "fast"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    prompts, problems = read_prompts(path)
    assert [p.name for p in prompts] == ["x", "y"] and problems == [f"{path}:2: id 'x' repeats an earlier line's"]
    assert [p.name for p in read_prompts(path, limit=1)[0]] == ["x"]


def test_the_config_has_the_command_lines_defaults_and_checks():
    args = build_parser().parse_args(["evaluate", "--prompts", "p.jsonl", "--out", "eval"])
    assert config_from_args(args) == EvaluateConfig(prompts="p.jsonl", out="eval")
    for values, message in (({"seeds": 0}, "--seeds must be >= 1, got 0"), ({"limit": -2}, "--limit must be >= 1"),
                            ({"batch_size": 0}, "--batch-size must be >= 1"), ({"seconds": -1.0}, "seconds")):
        with pytest.raises(InputError, match=message):
            EvaluateConfig(prompts="p.jsonl", out="eval", **values)


def test_evaluate_from_python_writes_what_the_command_writes(tiny_spec, corpus, tmp_path, capsys):
    out = tmp_path / "eval"
    config = EvaluateConfig(pipeline=tiny_spec, prompts=corpus / "manifest.jsonl", out=out, limit=2,
                            fad_embedding="none", quiet=True)
    assert evaluate(config) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompts"] == 2 and summary["fad"] is None and len(list((out / "audio").glob("*.wav"))) == 2
    assert "| **overall** |" in capsys.readouterr().out
