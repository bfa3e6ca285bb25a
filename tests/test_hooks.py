"""Hooks not exercised elsewhere, end to end: register_metrics and register_pipelines."""

from __future__ import annotations

import types

import attrs
import pytest

from cadenza.core.cascade import Cascade
from cadenza.core.hookspecs import hookimpl
from cadenza.core.params import structure_config
from tiny_specs import TINY_SPEC


@attrs.frozen
class GainConfig:
    reference: float = attrs.field(default=1.0)


def build_peak(config, context):
    return lambda audio, **inputs: {"peak_ratio": float(audio.abs().max()) / config.reference}


def test_register_metrics_metric_scores_generated_audio(register_plugin, cadenza_registry, tiny_pipeline):
    plugin = types.SimpleNamespace(register_metrics=hookimpl(
        lambda register: register("peak-ratio", build_peak, config=GainConfig, description="peak / reference")))
    assert register_plugin(plugin, "metrics").components == ["metric:peak-ratio"]
    entry = cadenza_registry.get("metric", "peak-ratio")
    metric = entry.build(structure_config(entry.config, {"reference": 0.5}))
    audio = tiny_pipeline().generate("a test", seconds=0.2).audio
    assert metric(audio) == {"peak_ratio": pytest.approx(float(audio.abs().max()) / 0.5)}


def test_register_pipelines_preset_is_usable_by_name(register_plugin, cadenza_registry, tmp_path, cli):
    cadenza_registry.add_builtins("tiny", "transformer", "samplers")
    preset = tmp_path / "my-preset.yaml"
    preset.write_text(TINY_SPEC)
    plugin = types.SimpleNamespace(register_pipelines=hookimpl(
        lambda register: register("my-preset", preset, description="a test preset")))
    assert register_plugin(plugin, "presets").components == ["pipeline:my-preset"]
    assert cadenza_registry.pipelines["my-preset"].description == "a test preset"
    code, out, _ = cli("validate", "my-preset")
    assert code == 0 and "valid: 3 stage(s)" in out
    assert Cascade.from_spec("my-preset").generate("x", seconds=0.2).audio.shape[-1] == 3200


def test_register_pipelines_bad_name_is_a_plugin_error(register_plugin, tmp_path):
    plugin = types.SimpleNamespace(register_pipelines=hookimpl(lambda register: register("My Preset", tmp_path)))
    record = register_plugin(plugin, "bad", allow_errors=True)
    assert "pipeline name 'My Preset'" in record.error and record.components == []
