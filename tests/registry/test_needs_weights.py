"""``needs_weights``: a component with nothing learned or fitted says so when it registers,
and is then never reported as random, untrained weights."""

from __future__ import annotations

import json
import types

import pytest

import weightless_plugin
from cadenza.core.hookspecs import hookimpl
from cadenza.registry import Registry

# Built-ins that hold nothing learned or fitted: a keyed DSP watermark, classical estimators,
# distances between signals, FAD and text similarity (whose embedding is another component,
# with weights of its own), and melody readers (MIDI parsing, YIN pitch tracking).
NO_WEIGHTS = {("watermark", "spread-spectrum"), ("melody_source", "midi"), ("melody_source", "audio")} | {
    ("metric", name) for name in ("tempo", "key", "register", "loudness", "drums", "mel-distance", "si-sdr", "fad",
                                  "text-similarity")}
# Kinds a cascade loads weights into: every built-in one has learned or k-means-fitted weights.
WEIGHTED_KINDS = ("tokenizer", "semantic_tokenizer", "conditioner", "stage_model")


def test_builtins_declare_which_of_them_need_no_weights(registry):
    for kind, name in NO_WEIGHTS:
        assert registry.get(kind, name).needs_weights is False, (kind, name)
    for kind in WEIGHTED_KINDS:
        assert all(entry.needs_weights for entry in registry.entries(kind)), kind
    # a trained classifier, and the metrics built on it
    assert all(registry.get("metric", name).needs_weights for name in ("instrument", "attributes", "adherence"))


def test_a_plugin_declares_it_at_registration(register_plugin, cadenza_registry):
    register_plugin(weightless_plugin)
    cadenza_registry.add_builtins("tiny")
    assert cadenza_registry.get("tokenizer", "mu-law").needs_weights is False
    assert cadenza_registry.get("tokenizer", "tiny-codec").needs_weights is True  # the default


@pytest.mark.parametrize(("options", "message"), [
    ({"needs_weights": "no"}, "tokenizer 'odd': needs_weights must be True or False, got 'no'"),
    ({"needs_weights": False, "default_weights": "someone/model"},
     "tokenizer 'odd': needs_weights=False but default_weights='someone/model'"),
])
def test_a_contradictory_declaration_is_that_plugins_error(options, message):
    plugin = types.SimpleNamespace(register_tokenizers=hookimpl(
        lambda register: register("odd", weightless_plugin.build, config=weightless_plugin.MuLawConfig, **options)))
    record = Registry().add_plugin(plugin, "odd-plugin")
    assert message in record.error and record.components == []


def test_random_components_leave_out_what_needs_no_weights(register_plugin, tiny_pipeline):
    register_plugin(weightless_plugin)
    weightless = tiny_pipeline(tokenizer="mu-law", conditioner=None).cascade()
    assert weightless.random_components() == ["stages.acoustic.model"]
    assert tiny_pipeline(conditioner=None).cascade().random_components() == ["tokenizer", "stages.acoustic.model"]


def test_generate_calls_no_weightless_component_untrained(register_plugin, tiny_pipeline, cli, tmp_path):
    """With its only weighted part loaded from a file, a pipeline on the mu-law codec prints no
    "random, untrained" note; the same stage at random weights is the only slot the note names."""
    register_plugin(weightless_plugin)
    pipeline = tiny_pipeline(tokenizer={"name": "mu-law", "params": {"sample_rate": 2000}}, conditioner=None)
    random_spec = pipeline.write(tmp_path / "random.yaml")
    code, _, stderr = cli("generate", "a tone", "-p", random_spec, "-s", "0.1", "-o", tmp_path / "random.wav")
    assert code == 0, stderr
    [note] = [line for line in stderr.splitlines() if "random, untrained" in line]
    assert note.endswith("weights in stages.acoustic.model: expect noise, not music.")

    pipeline.cascade().models["acoustic"].save_pretrained(tmp_path / "stage")
    pipeline.spec["stages"][0]["weights"] = "./stage"
    loaded_spec = pipeline.write(tmp_path / "loaded.yaml")
    code, _, stderr = cli("generate", "a tone", "-p", loaded_spec, "-s", "0.1", "-o", tmp_path / "loaded.wav")
    assert code == 0, stderr
    assert "random" not in stderr
    sidecar = json.loads((tmp_path / "loaded.json").read_text())
    assert sidecar["random_weights"] == []


def test_cadenza_components_shows_which_need_weights(cli, registry):
    """``--json`` carries the flag; the table's WEIGHTS column says ``none`` where there are none to load."""
    code, stdout, stderr = cli("components", "--kind", "metric", "--json")
    assert code == 0, stderr
    flags = {entry["name"]: entry["needs_weights"] for entry in json.loads(stdout)}
    assert flags["tempo"] is False and flags["instrument"] is True

    code, stdout, stderr = cli("components", "--kind", "metric")
    assert code == 0, stderr
    header, *rows = stdout.splitlines()
    column = header.split().index("WEIGHTS")
    assert header.split()[:5] == ["KIND", "NAME", "PLUGIN", "WEIGHTS", "DESCRIPTION"]
    weights = {row.split()[1]: row.split()[column] for row in rows}
    assert weights["tempo"] == "none"
    assert weights["instrument"] == registry.get("metric", "instrument").default_weights


def test_evaluate_reports_untrained_slots_by_the_same_rule(register_plugin, cadenza_registry, tiny_pipeline, cli,
                                                           tmp_path):
    """``cadenza evaluate``'s summary names the random slots as the cascade does: not the mu-law codec."""
    register_plugin(weightless_plugin)
    cadenza_registry.add_builtins("evaluation", "estimators")  # the adherence metric evaluate scores with
    spec = tiny_pipeline(tokenizer={"name": "mu-law", "params": {"sample_rate": 2000}},
                         conditioner=None).write(tmp_path / "mu-law.yaml")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "tone", "prompt": "a slow tone", "tempo_class": "slow"}) + "\n")
    code, _, stderr = cli("evaluate", "--pipeline", spec, "--prompts", prompts, "--out", tmp_path / "eval",
                          "--seconds", "0.5", "--fad-embedding", "none", "--quiet")
    assert code == 0, stderr
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["random_components"] == ["stages.acoustic.model"]
