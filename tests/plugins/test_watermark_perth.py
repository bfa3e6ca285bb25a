"""The optional ``perth`` watermark (resemble-perth's Perth-Net): registration, embed/detect, errors."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
import torch

from cadenza.core.components import BuildContext, Watermark
from cadenza.core.engine.weights import parse_weights
from cadenza.core.errors import CadenzaError, WeightsError
from cadenza.core.types import Detection
from cadenza.plugins.perth import MISSING, PACKAGED, PerthConfig
from cadenza.plugins.perth.model import null_for, p_value
from cadenza.plugins.perth.null_sample import (BUCKETS, FILE_NAME, null_scores, null_scores_file, read_null_scores,
                                               write_null_scores)

ROOT = Path(__file__).resolve().parents[2]


def test_registration_module_imports_neither_torch_nor_perth():
    code = ("import sys, cadenza.plugins.perth, cadenza.plugins.perth.null_sample as n; n.null_scores(); "
            "print('torch' in sys.modules, 'perth' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_registers_one_watermark_with_a_lazy_factory(register_plugin, cadenza_registry):
    from cadenza.plugins import perth

    register_plugin(perth)
    entry = cadenza_registry.get("watermark", "perth")
    assert entry.factory == "cadenza.plugins.perth.model:build"
    assert entry.config is PerthConfig and entry.default_weights == PACKAGED
    assert cadenza_registry.names("watermark") == ["perth"]


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, float("nan"), True])
def test_threshold_must_be_a_probability(bad):
    with pytest.raises(ValueError, match="^threshold"):
        PerthConfig(threshold=bad)


def test_p_value_counts_the_null_sample_at_or_above_the_score():
    null = (0.1, 0.2, 0.2, 0.9)
    assert p_value(0.95, null) == 1 / 5
    assert p_value(0.9, null) == 2 / 5
    assert p_value(0.2, null) == 4 / 5
    assert p_value(0.0, null) == 1.0
    buckets = {1.5: (1.0,), 3.0: (2.0,), float("inf"): (3.0,)}
    assert [null_for(s, buckets) for s in (0.2, 1.5, 2.0, 60.0)] == [(1.0,), (1.0,), (2.0,), (3.0,)]


# The stored null sample, pinned as it was when it moved from model.py's source into null_scores.json:
# a digest of all 4,000 scores in bucket order, and p-values (as k / 1001) computed before the move.
NULL_SAMPLE_DIGEST = "9892ddf561dce2780581784cec2340c597295223a0bbea0350b9f5cdd5ad077a"
P_VALUES_BEFORE_THE_MOVE = {  # (seconds, score): k, where p = k / 1001
    (0.5, 0.0): 989, (0.5, 0.1): 424, (0.5, 0.9): 105, (2.0, 0.0001): 938, (2.0, 0.5): 241, (2.0, 0.95): 36,
    (5.0, 0.1): 646, (5.0, 0.7): 88, (5.0, 0.95): 14, (30.0, 0.0): 987, (30.0, 0.9): 4, (30.0, 0.95): 1,
}


def test_the_packaged_null_sample_is_the_one_that_was_in_the_source():
    null = null_scores()
    assert tuple(sorted(null)) == BUCKETS and all(len(scores) == 1000 for scores in null.values())
    digest = hashlib.sha256(" ".join(repr(s) for upper in sorted(null) for s in null[upper]).encode()).hexdigest()
    assert digest == NULL_SAMPLE_DIGEST
    got = {key: p_value(key[1], null_for(key[0], null)) for key in P_VALUES_BEFORE_THE_MOVE}
    assert got == {key: k / 1001 for key, k in P_VALUES_BEFORE_THE_MOVE.items()}
    assert null_scores() is null  # read once per process


def test_the_null_sample_is_package_data_beside_its_module():
    assert Path(str(null_scores_file())) == ROOT / "plugins" / "perth" / FILE_NAME
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(fnmatch(FILE_NAME, pattern) for pattern in patterns.get("cadenza.plugins.perth", []))


def test_written_null_sample_reads_back_and_a_bad_one_is_a_one_line_error(tmp_path):
    written = {1.5: [0.3, -0.1, 0.2], math.inf: [0.5]}
    path = tmp_path / FILE_NAME
    write_null_scores(path, written, "three clips")
    assert read_null_scores(path) == {1.5: (-0.1, 0.2, 0.3), math.inf: (0.5,)}
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]  # no temporary file left beside it
    path.write_text('{"buckets": [{"scores": [1]}]}')
    with pytest.raises(WeightsError) as caught:
        read_null_scores(path)
    assert "not perth's null sample" in str(caught.value) and "\n" not in str(caught.value)


def test_building_without_resemble_perth_fails_with_one_line(monkeypatch):
    from cadenza.plugins.perth.model import build

    for name in [m for m in sys.modules if m == "perth" or m.startswith("perth.")] or ["perth"]:
        monkeypatch.setitem(sys.modules, name, None)  # "import perth..." now fails as if it were not installed
    monkeypatch.setitem(sys.modules, "perth", None)
    with pytest.raises(WeightsError) as caught:
        build(PerthConfig(), BuildContext(weights=parse_weights(PACKAGED)))
    assert str(caught.value) == MISSING == "the perth watermark needs the optional extra: pip install resemble-perth"
    assert isinstance(caught.value, CadenzaError)


# -- with resemble-perth installed ----------------------------------------------------------------

@pytest.fixture(scope="module")
def perth_mark():
    pytest.importorskip("perth", reason="resemble-perth is not installed (pip install resemble-perth)")
    from cadenza.plugins.perth.model import build

    return build(PerthConfig(), BuildContext(weights=parse_weights(PACKAGED)))


@pytest.fixture(scope="module")
def music(real_audio):
    audio, rate = real_audio("24k", seconds=4.0)
    return audio[0], rate  # [1, S] at 24 kHz


def test_embed_keeps_the_shape_and_detect_finds_the_mark(perth_mark, music):
    audio, rate = music
    assert isinstance(perth_mark, Watermark)
    marked = perth_mark.embed(audio, rate, payload=12345)  # the payload is ignored
    assert marked.shape == audio.shape and marked.dtype == audio.dtype
    assert torch.isfinite(marked).all() and not torch.equal(marked, audio)
    assert torch.equal(perth_mark.embed(audio, rate, payload=0), marked)  # no payload: the same mark
    found, clean = perth_mark.detect(marked, rate), perth_mark.detect(audio, rate)
    assert isinstance(found, Detection) and found.payload is None and clean.payload is None
    assert found.score > 0.9 and found.score > clean.score
    assert found.marked and found.p_value <= found.threshold == 0.01
    assert found.p_value < clean.p_value


def test_stereo_48k_and_edge_cases(perth_mark, real_audio):
    audio, rate = real_audio("48k", seconds=2.0)
    stereo = audio[0]
    assert stereo.shape[0] == 2
    assert perth_mark.embed(stereo, rate, 0).shape == stereo.shape
    silence = perth_mark.detect(torch.zeros(1, 16000), 16000)
    assert (silence.score, silence.p_value, silence.marked) == (0.0, 1.0, False)
    short = torch.randn(1, 100, generator=torch.Generator().manual_seed(0)) * 0.1
    assert perth_mark.embed(short, 24000, 0).shape == short.shape
    assert 0.0 < perth_mark.detect(short, 24000).p_value <= 1.0


def test_bad_input_and_bad_weights_are_one_line_errors(perth_mark, tmp_path):
    from cadenza.plugins.perth.model import build

    with pytest.raises(CadenzaError, match="channels, samples"):
        perth_mark.embed(torch.zeros(1, 1, 100), 24000, 0)
    with pytest.raises(CadenzaError, match="NaN"):
        perth_mark.detect(torch.full((1, 1000), float("nan")), 24000)
    junk = tmp_path / "junk.pth.tar"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError) as caught:
        build(PerthConfig(), BuildContext(weights=parse_weights(str(junk))))
    assert "not Perth-Net weights" in str(caught.value) and "\n" not in str(caught.value)
