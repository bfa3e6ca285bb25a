"""Steering is a plugin kind: a third party registers one the way the built-ins do, and the
cascade runs any :class:`Steering` it is given, in order, without knowing what it steers."""

from __future__ import annotations

import json
import types

import attrs
import pytest
import torch
import yaml
from tiny_specs import TINY_SPEC

from cadenza.core.components import Steering, SteeringRun, SteeringWindow
from cadenza.core.engine.cascade import Cascade
from cadenza.core.errors import InputError
from cadenza.core.hookspecs import hookimpl
from cadenza.core.steering.beat_grid import DEFAULT_STRENGTH
from cadenza.core.steering.logit_bias import BiasedModel
from cadenza.core.steering.melody import Melody, Note
from cadenza.registry import discover


@attrs.frozen
class BanConfig:
    token: int = 0
    refuse_long: float | None = None  # refuse runs longer than this many seconds


class BanToken(Steering):
    """A third party's steering: the acoustic stages never write ``token``; it counts the windows."""

    def __init__(self, config: BanConfig):
        self.config = config
        self.windows = 0

    def plan(self, run: SteeringRun) -> None:
        if self.config.refuse_long is not None and run.seconds > self.config.refuse_long:
            raise InputError(f"ban-token: at most {self.config.refuse_long:g} s, got {run.seconds:g}")
        self.windows = 0

    def window(self, window: SteeringWindow) -> None:
        self.windows += 1

    def wrap(self, model, stage, window: SteeringWindow):
        if stage.layout.writes.stream != "acoustic":
            return model
        bias = torch.zeros(1, stage.layout.writes.codebook_size)
        bias[0, self.config.token] = -1e4  # finite: guidance subtracts the rows
        return BiasedModel(model, lambda position: bias)

    def describe(self, row: int) -> dict:
        return {"ban_token": {"token": self.config.token, "windows": self.windows}}


TOY_PLUGIN = types.SimpleNamespace(register_steering=hookimpl(
    lambda register: register("ban-token", lambda config, context: BanToken(config), config=BanConfig,
                              needs_weights=False, description="never write one acoustic token")))


def tiny_tree(**output) -> dict:
    tree = yaml.safe_load(TINY_SPEC)
    tree["output"] = {**tree.get("output", {}), **output}
    return tree


@pytest.fixture(scope="module")
def registry():
    registry = discover(environ={})
    registry.add_plugin(TOY_PLUGIN, "toy-steering")
    return registry


@pytest.fixture(scope="module")
def cascade(registry):
    return Cascade.from_spec(tiny_tree(), registry=registry)


def test_a_third_party_steering_is_registered_listed_and_run(cascade, registry, tmp_path):
    assert "ban-token" in registry.names("steering") and registry.plugins["toy-steering"].error is None
    entry = registry.get("steering", "ban-token")
    free = cascade.generate("x", seconds=2.0, seed=0, window=1.0)
    common = int(torch.mode(free.tokens["acoustic"].flatten()).values)  # an id the stages do write unsteered
    banned = entry.build(entry.config(token=common))
    assert isinstance(banned, Steering)
    steered = cascade.generate("x", seconds=2.0, seed=0, window=1.0, steering=[banned])
    assert (free.tokens["acoustic"] == common).any() and not (steered.tokens["acoustic"] == common).any()
    assert steered.steering == ({"ban_token": {"token": common, "windows": len(steered.windows)}},)
    sidecar = json.loads(steered.save(tmp_path / "banned.wav").with_suffix(".json").read_text())
    assert sidecar["ban_token"] == {"token": common, "windows": len(steered.windows)}


def test_a_steering_refuses_a_run_with_one_line(cascade, registry):
    entry = registry.get("steering", "ban-token")
    with pytest.raises(InputError, match="ban-token: at most 1 s, got 2"):
        cascade.generate("x", seconds=2.0, steering=[entry.build(entry.config(refuse_long=1.0))])


def test_steering_that_is_not_one_is_refused(cascade):
    with pytest.raises(InputError, match="steering 0: str is not a Steering"):
        cascade.generate("x", seconds=0.5, steering=["melody"])
    with pytest.raises(InputError, match="steering must be a list"):
        cascade.generate("x", seconds=0.5, steering="melody")


def test_steering_stacks_with_the_built_ins_in_list_order(cascade, registry):
    """A third party's steering beside piece memory: both apply, and memory still records its hold."""
    entry = registry.get("steering", "ban-token")
    free = cascade.generate("x", seconds=2.0, seed=0, window=1.0)
    common = int(torch.mode(free.tokens["acoustic"].flatten()).values)
    both = cascade.steering(hold=1e4) + [entry.build(entry.config(token=common))]
    steered = cascade.generate("x", seconds=2.0, seed=0, window=1.0, steering=both)
    assert steered.steering[0]["hold"] == 1e4 and "ban_token" in steered.steering[0]
    assert not (steered.tokens["acoustic"] == common).any()


def test_the_options_build_the_built_ins_from_the_spec_defaults(registry):
    plain = Cascade.from_spec(tiny_tree(), registry=registry)
    assert plain.steering() == [] and plain.generate("x", seconds=0.5).steering == ()
    held = Cascade.from_spec(tiny_tree(hold=2.0), registry=registry)
    [memory] = held.steering()
    assert type(memory).__name__ == "PieceMemory" and memory.strength == 2.0 and held.steering(hold=0) == []
    melody = Melody((Note(0.0, 0.5, 60),))
    kinds = [type(s).__name__ for s in held.steering(melody=melody, melody_strength=3.0)]
    assert kinds == ["MelodySteering", "PieceMemory"]  # the order they wrap a stage in
    with pytest.raises(InputError, match="a bpm needs the beat grid: beat 0 turns it off"):
        held.steering(bpm=100, beat=0)


def test_the_beat_grids_config_default_is_the_engines():
    from cadenza.plugins.steering import BeatGridConfig

    assert BeatGridConfig().strength == DEFAULT_STRENGTH


def test_one_steering_object_serves_many_runs(cascade, registry):
    """rerank reuses a steering list for each candidate: plan starts every run afresh."""
    [memory] = cascade.steering(hold=1e4)
    first = cascade.generate("x", seconds=2.0, seed=0, window=1.0, steering=[memory])
    again = cascade.generate("x", seconds=2.0, seed=0, window=1.0, steering=[memory])
    assert torch.equal(first.tokens["acoustic"], again.tokens["acoustic"]) and again.steering == first.steering
