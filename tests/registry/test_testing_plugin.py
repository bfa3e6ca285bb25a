"""`cadenza.testing`: the pytest fixtures Cadenza ships for plugin authors, used here as they would."""

from __future__ import annotations

import importlib.metadata
import types

import attrs
import pytest
import torch

from cadenza.core.errors import SpecError
from cadenza.core.hookspecs import hookimpl
from cadenza.registry import get_registry
from cadenza.testing import SandboxRegistry, tiny_spec


@attrs.frozen
class PeakConfig:
    scale: float = 1.0


def peak(config, context):
    return lambda audio, **inputs: {"peak": float(audio.abs().max()) * config.scale}


PLUGIN = types.SimpleNamespace(register_metrics=hookimpl(lambda register: register("peak", peak, config=PeakConfig)))


def test_the_plugin_is_registered_through_the_pytest11_entry_point(pytestconfig):
    [ep] = [ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.value.startswith("cadenza.")]
    assert pytestconfig.pluginmanager.get_plugin(ep.name) is ep.load()


def test_cadenza_registry_starts_empty_and_is_the_process_registry(cadenza_registry):
    assert isinstance(cadenza_registry, SandboxRegistry) and get_registry() is cadenza_registry
    assert cadenza_registry.plugins == {} and cadenza_registry.entries() == []
    cadenza_registry.add_builtins("samplers")
    assert cadenza_registry.names("sampler") == ["greedy", "temperature", "top-k", "top-p"]
    with pytest.raises(KeyError, match="no built-in plugin 'nope'"):
        cadenza_registry.add_builtins("nope")


@pytest.mark.cadenza_builtins("tiny", "presets")
def test_the_marker_chooses_the_builtins(cadenza_registry):
    assert set(cadenza_registry.plugins) == {"tiny", "presets"}
    assert "tiny-random" in cadenza_registry.pipelines and cadenza_registry.names("stage_model") == []


def test_register_plugin_adds_a_plugin_for_one_test(register_plugin, cadenza_registry, test_audio):
    record = register_plugin(PLUGIN, "peaks")
    assert record.components == ["metric:peak"] and record.distribution == "cadenza.testing"
    metric = cadenza_registry.get("metric", "peak").build(PeakConfig(2.0))
    assert metric(test_audio()) == {"peak": pytest.approx(2 * float(test_audio().abs().max()))}


def test_register_plugin_reports_a_broken_plugin(register_plugin):
    broken = types.SimpleNamespace(register_metrics=hookimpl(lambda register: register("Bad Name", peak)))
    record = register_plugin(broken, "broken", allow_errors=True)
    assert "must be lowercase letters" in record.error
    with pytest.raises(pytest.fail.Exception, match="plugin 'broken2' failed to register"):
        register_plugin(broken, "broken2")


def test_tiny_pipeline_builds_validates_and_generates(tiny_pipeline, tmp_path, cli):
    pipeline = tiny_pipeline(layout="musiclm", guidance_scale=2.0)
    assert [s.spec.name for s in pipeline.validate().stages] == ["semantic", "coarse", "fine"]
    result = pipeline.generate("a test", seconds=0.2)
    assert result.audio.shape == (1, 1, 3200) and set(result.tokens) == {"semantic", "acoustic"}
    code, out, _ = cli("validate", pipeline.write(tmp_path / "tiny.yaml"))  # the CLI sees the same registry
    assert code == 0 and "valid: 3 stage(s)" in out


def test_tiny_pipeline_reports_an_unknown_component(tiny_pipeline):
    with pytest.raises(SpecError, match="unknown sampler 'nope'"):
        tiny_pipeline(sampler="nope").validate()


def test_tiny_spec_swaps_only_what_is_named():
    spec = tiny_spec(tokenizer={"name": "codec-x", "params": {"q": 2}}, conditioner=None)
    assert spec["tokenizer"] == {"name": "codec-x", "params": {"q": 2}} and "conditioner" not in spec
    assert [s["writes"] for s in spec["stages"]] == ["acoustic"] and spec["stages"][0]["model"] == "transformer"
    with pytest.raises(ValueError, match="layout must be one of"):
        tiny_spec(layout="nope")


def test_test_audio_is_deterministic_tones(test_audio):
    audio = test_audio(sample_rate=8000, seconds=1.5, channels=2, batch=3)
    assert audio.shape == (3, 2, 12000) and audio.dtype == torch.float32
    assert torch.equal(audio, test_audio(sample_rate=8000, seconds=1.5, channels=2, batch=3))
    assert 0.3 < float(audio.abs().max()) <= 0.5 and not torch.equal(audio[0], audio[1])
    spectrum = torch.fft.rfft(audio[0, 0, :2000]).abs()  # the first note: A3 = 220 Hz
    assert abs(int(spectrum.argmax()) * 8000 / 2000 - 220) <= 4
