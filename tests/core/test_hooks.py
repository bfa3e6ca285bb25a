"""Hooks not exercised elsewhere, end to end: register_metrics, register_pipelines, register_melody_sources."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path

import attrs
import pytest

from cadenza.core.engine.cascade import Cascade
from cadenza.core.hookspecs import hookimpl
from cadenza.core.spec.params import structure_config
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


@attrs.frozen
class NoteListConfig:
    """A third-party melody source: text files of ``start end pitch`` lines."""

    suffixes: typing.ClassVar[tuple[str, ...]] = (".notes",)
    transpose: int = 0


def build_note_list(config, context):
    from cadenza.core.steering.melody import Melody

    def source(path):
        rows = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
        return Melody(tuple((float(a), float(b), int(p) + config.transpose) for a, b, p in rows))

    return source


def test_register_melody_sources_source_is_picked_by_suffix_and_steers(register_plugin, cadenza_registry, tmp_path,
                                                                       cli):
    from cadenza.core.steering.melody import read_melody

    cadenza_registry.add_builtins("tiny", "transformer", "samplers", "melody", "steering")
    plugin = types.SimpleNamespace(register_melody_sources=hookimpl(
        lambda register: register("note-list", build_note_list, config=NoteListConfig, description="text notes")))
    assert register_plugin(plugin, "notes").components == ["melody_source:note-list"]
    tune = tmp_path / "tune.notes"
    tune.write_text("0 0.25 60\n0.25 0.5 64\n")
    melody = read_melody(tune, registry=cadenza_registry)
    assert melody.source == "note-list" and [n.pitch for n in melody.notes] == [60, 64]
    assert [n.pitch for n in read_melody(tune, "note-list:transpose=12", cadenza_registry).notes] == [72, 76]
    spec = tmp_path / "spec.yaml"
    spec.write_text(TINY_SPEC)
    code, _, err = cli("generate", "x", "-p", spec, "-s", 0.3, "--melody", tune, "-o", tmp_path / "o.wav", "-q")
    assert code == 0, err
    assert json.loads((tmp_path / "o.json").read_text())["melody"]["source"] == "note-list"
