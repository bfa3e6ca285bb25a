"""The typed configs of ``cadenza train``: the CLI's defaults and one-line checks, from Python too."""

from __future__ import annotations

import attrs
import pytest

from cadenza.core.cli.main import build_parser
from cadenza.core.errors import InputError
from cadenza.plugins.workflows.train.config import (
    InstrumentTrainConfig,
    MulanTrainConfig,
    TrainConfig,
    config_from_args,
)


def parsed(*argv: str):
    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_a_config_made_in_python_equals_the_one_the_command_line_builds():
    assert parsed("-p", "tiny", "--stage", "coarse", "--cache", "c", "--out", "o") == \
        TrainConfig(pipeline="tiny", stage="coarse", cache="c", out="o")
    assert parsed("-p", "tiny", "--stage", "mulan", "--data", "d.jsonl", "--out", "o", "--steps", "5") == \
        MulanTrainConfig(pipeline="tiny", data="d.jsonl", out="o", steps=5)
    assert parsed("--stage", "instrument", "--data", "corpus", "--out", "o", "--resume") == \
        InstrumentTrainConfig(data="corpus", out="o", resume=True)


def test_paths_are_kept_as_text_so_run_files_record_them_as_given(tmp_path):
    config = TrainConfig(pipeline=tmp_path / "spec.yaml", stage="fine", cache=tmp_path / "cache", out=tmp_path / "run")
    assert (config.pipeline, config.cache, config.out) == (str(tmp_path / "spec.yaml"), str(tmp_path / "cache"),
                                                           str(tmp_path / "run"))


@pytest.mark.parametrize("make, message", [
    (lambda: TrainConfig(pipeline="tiny", stage="coarse", cache="c", out="o", steps=0), "--steps must be >= 1, got 0"),
    (lambda: TrainConfig(pipeline="tiny", stage="coarse", out="o"), "--cache is required to train a stage"),
    (lambda: TrainConfig(pipeline="tiny", stage="coarse", cache="c", out="o", ema_decay=1.0),
     r"--ema-decay must be in \[0, 1\)"),
    (lambda: MulanTrainConfig(pipeline="tiny", out="o"), "--stage mulan needs --data"),
    (lambda: InstrumentTrainConfig(data="corpus", out="o", lr=float("nan")), "--lr must be a positive number"),
    (lambda: InstrumentTrainConfig(out="o"), "--stage instrument needs --data"),
    (lambda: InstrumentTrainConfig(data="d", out="o", mixed_precision="fp32"), "--mixed-precision must be one of"),
    (lambda: TrainConfig(pipeline="tiny", stage="coarse", cache="c", out="o", conditioning="midi"),
     "--conditioning must be audio or text"),
])
def test_bad_values_are_one_line_when_the_config_is_made(make, message):
    with pytest.raises(InputError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_mulan_takes_0_for_never_where_the_others_need_1():
    assert MulanTrainConfig(pipeline="tiny", data="d", out="o", valid_every=0, checkpoint_every=0).valid_every == 0
    with pytest.raises(InputError, match="--valid-every must be >= 1"):
        InstrumentTrainConfig(data="d", out="o", valid_every=0)


def test_configs_are_frozen():
    config = InstrumentTrainConfig(data="d", out="o")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.steps = 3  # type: ignore[misc]
    assert attrs.evolve(config, steps=3).steps == 3
    with pytest.raises(InputError, match="--steps"):
        attrs.evolve(config, steps=-1)
