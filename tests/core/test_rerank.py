"""Reranking: K candidates per prompt, scored by a metric plugin, the best kept; deterministic."""

from __future__ import annotations

import json
import types

import pytest
import torch
import yaml

from cadenza.core.engine.cascade import Cascade
from cadenza.core.errors import InputError
from cadenza.core.hookspecs import hookimpl
from cadenza.core.engine.rerank import build_scorer, candidate_seed, rerank, score_of
from cadenza.registry import Registry
from tiny_specs import TINY_SPEC


def build_peak(config, context):
    return lambda audio, **inputs: {"label": "x", "peak": float(torch.as_tensor(audio).abs().max())}


PEAK_PLUGIN = types.SimpleNamespace(register_metrics=hookimpl(
    lambda register: register("peak", build_peak, description="largest absolute sample")))


@pytest.fixture(scope="module")
def cascade():
    spec = yaml.safe_load(TINY_SPEC)
    spec["output"]["peak_dbfs"] = None  # keep levels as generated, so candidates differ in peak
    return Cascade.from_spec(spec)


def test_candidate_seeds_are_deterministic_and_distinct():
    assert candidate_seed(7, 0) == 7
    seeds = [candidate_seed(7, i) for i in range(8)]
    assert len(set(seeds)) == 8 and seeds == [candidate_seed(7, i) for i in range(8)]
    assert all(0 <= s < 2**31 for s in seeds)


def test_rerank_keeps_the_argmax_and_is_deterministic(cascade):
    registry = Registry()
    assert registry.add_plugin(PEAK_PLUGIN, "peak-metric").error is None
    scorer = build_scorer("peak", registry, cascade.conditioner, cascade.sample_rate)

    def generate(seeds):
        return cascade.generate(["a calm harp", "fast drums"], seconds=0.4, seed=seeds)

    best, report = rerank(generate, ["a calm harp", "fast drums"], [5, 9], 4, scorer)
    for row, seed in enumerate((5, 9)):
        scores = [c["score"] for c in report[row]["candidates"]]
        assert [c["seed"] for c in report[row]["candidates"]] == [candidate_seed(seed, i) for i in range(4)]
        assert len(set(scores)) > 1 and report[row]["chosen"] == scores.index(max(scores))
        chosen_seed = report[row]["candidates"][report[row]["chosen"]]["seed"]
        alone = cascade.generate(["a calm harp", "fast drums"][row], seconds=0.4, seed=[chosen_seed])
        assert best.row_seeds[row] == chosen_seed and torch.allclose(best.audio[row], alone.audio[0], atol=1e-5)
        assert torch.equal(best.tokens["acoustic"][row], alone.tokens["acoustic"][0])
    again, report_again = rerank(generate, ["a calm harp", "fast drums"], [5, 9], 4, scorer)
    assert report_again == report and torch.equal(again.audio, best.audio)


def test_score_key_name_then_first_number():
    assert score_of({"text_similarity": 0.3, "x": 1.0}, "text-similarity", None) == 0.3
    assert score_of({"dynamics": "loud", "loudness_lufs": -20.0}, "loudness", None) == -20.0
    assert score_of({"loudness_lufs": -20.0, "rms_dbfs": -18.0}, "loudness", "rms_dbfs") == -18.0
    with pytest.raises(InputError, match="metric 'loudness' gives no 'nope'"):
        score_of({"loudness_lufs": -20.0}, "loudness", "nope")
    with pytest.raises(InputError, match="gives no number to rank by"):
        score_of({"label": "x"}, "labels", None)


def test_generate_command_reranks_with_a_plugin_metric(cli, register_plugin, cadenza_registry, tiny_spec, tmp_path):
    cadenza_registry.add_builtins("tiny", "transformer", "samplers")
    register_plugin(PEAK_PLUGIN, "peak-metric")
    wav = tmp_path / "out.wav"
    code, _, err = cli("generate", "a harp", "-p", tiny_spec, "-s", 0.3, "--seed", 2, "--rerank", 3,
                       "--rerank-metric", "peak", "-o", wav)
    assert code == 0, err
    sidecar = json.loads(wav.with_suffix(".json").read_text())
    ranking = sidecar["rerank"]
    scores = [c["score"] for c in ranking["candidates"]]
    assert ranking["metric"] == "peak" and ranking["seed"] == 2 and len(scores) == 3
    assert ranking["chosen"] == scores.index(max(scores))
    assert sidecar["seed"] == ranking["candidates"][ranking["chosen"]]["seed"] and "kept candidate" in err


def test_batch_reranks_every_line(cli, tiny_spec, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a", "seed": 1}\n{"prompt": "b", "seed": 2}\n')
    code, _, err = cli("generate", "--prompts", prompts, "--out", tmp_path / "out", "-p", tiny_spec, "-s", 0.3,
                       "--rerank", 2, "--rerank-metric", "loudness:rms_dbfs", "-q")
    assert code == 0, err
    for name, seed in (("0001", 1), ("0002", 2)):
        ranking = json.loads((tmp_path / "out" / f"{name}.json").read_text())["rerank"]
        assert ranking["seed"] == seed and ranking["key"] == "rms_dbfs"
        assert [c["seed"] for c in ranking["candidates"]] == [seed, candidate_seed(seed, 1)]


@pytest.mark.parametrize(("args", "message"), [
    (["--rerank", "0"], "--rerank must be a number of candidates >= 1"),
    (["--rerank", "2", "--rerank-metric", "text-similarity"], "--rerank-metric text-similarity: the conditioner (ByteText"),
    (["--rerank", "2", "--rerank-metric", "nope"], "unknown metric 'nope'"),
    (["--rerank", "2", "--rerank-metric", "loudness:nope"], "metric 'loudness' gives no 'nope'"),
])
def test_rerank_problems_are_one_line_before_generating(cli, tiny_spec, tmp_path, args, message):
    code, _, err = cli("generate", "x", "-p", tiny_spec, "-s", 0.3, *args, "-o", tmp_path / "o.wav", "-q")
    assert code in (1, 2) and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o.wav").exists()


def test_a_text_only_conditioner_reranks_by_the_prompts_stated_attributes(cli, tiny_spec, tmp_path):
    """No audio-text space to compare in (the tiny spec's byte-text conditioner): the default metric is
    adherence, reading what the prompt asks for from its words."""
    out = tmp_path / "o.wav"
    code, _, err = cli("generate", "a slow cello in D minor, no drums", "-p", tiny_spec, "-s", 0.5, "--rerank", 2,
                       "-o", out)
    assert code == 0, err
    ranking = json.loads(out.with_suffix(".json").read_text())["rerank"]
    assert ranking["metric"] == "adherence" and "kept candidate" in err and "adherence" in err
    values = ranking["candidates"][0]["values"]
    assert {"tempo_class_match", "key_match", "mode_match", "drums_match"} <= set(values)
    assert values["attributes_checked"] >= 4
