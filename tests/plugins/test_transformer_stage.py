"""The ``transformer`` stage model: layouts, conditioning, KV cache, checkpoints, config checks."""

from __future__ import annotations

import json
import subprocess
import sys

import attrs
import pytest
import torch

from cadenza.core.components import BuildContext, StageModel, StageRequest
from cadenza.core.errors import WeightsError
from cadenza.core.layout import StageLayout, StreamSlice
from cadenza.core.spec.params import ParamsError, structure_config
from cadenza.core.types import Conditioning, ConditioningInfo
from cadenza.core.engine.weights import Weights
from cadenza.plugins.transformer import TransformerConfig, register_stage_models
from cadenza.plugins.transformer.model import build_transformer

SEM = StreamSlice("semantic", 0, 1, 50, 25.0)


def acoustic(start: int, stop: int) -> StreamSlice:
    return StreamSlice("acoustic", start, stop, 64, 50.0)


ROLES = {
    "semantic": ((), SEM),
    "coarse": ((SEM,), acoustic(0, 2)),
    "fine": ((acoustic(0, 2),), acoustic(2, 4)),
}
CONDITIONINGS = {
    "pooled+prefix": (ConditioningInfo("pooled", dim=12), "prefix"),
    "tokens+prefix": (ConditioningInfo("tokens", length=3, vocab_size=20), "prefix"),
    "sequence+cross": (ConditioningInfo("sequence", dim=12, length=5), "cross"),
    "pooled+cross": (ConditioningInfo("pooled", dim=12), "cross"),
    "tokens+cross": (ConditioningInfo("tokens", length=3, vocab_size=20), "cross"),
    "none": (None, "none"),
}
TINY = TransformerConfig(d_model=32, layers=2, heads=4, prefix_length=2)


def make_layout(role: str = "coarse", cond: str = "pooled+prefix") -> StageLayout:
    reads, writes = ROLES[role]
    info, mode = CONDITIONINGS[cond]
    return StageLayout(role, reads, writes, info, mode)


def make_model(layout: StageLayout, config: TransformerConfig = TINY):
    return build_transformer(config, BuildContext(layout=layout))


def make_conditioning(info: ConditioningInfo | None, batch: int, seed: int = 0) -> Conditioning | None:
    gen = torch.Generator().manual_seed(seed)
    if info is None:
        return None
    if info.kind == "tokens":
        return Conditioning("tokens", torch.randint(0, info.vocab_size, (batch, info.length), generator=gen))
    if info.kind == "pooled":
        return Conditioning("pooled", torch.randn(batch, info.dim, generator=gen))
    mask = torch.ones(batch, info.length, dtype=torch.bool)
    mask[0, 2:] = False  # a padded row: padding must not leak into the cached path
    return Conditioning("sequence", torch.randn(batch, info.length, info.dim, generator=gen), mask)


def make_request(layout: StageLayout, batch: int = 2, frames: int = 3, seed: int = 0) -> StageRequest:
    gen = torch.Generator().manual_seed(seed + 1)
    reads = tuple(torch.randint(0, s.codebook_size, (batch, s.num_codebooks, frames), generator=gen) for s in layout.reads)
    return StageRequest(batch, reads, make_conditioning(layout.conditioning, batch, seed))


def written_tokens(layout: StageLayout, batch: int = 2, n: int = 7) -> torch.Tensor:
    return torch.randint(0, layout.writes.codebook_size, (batch, n), generator=torch.Generator().manual_seed(5))


def cached_logits(model, request: StageRequest, written: torch.Tensor) -> torch.Tensor:
    state = model.prefill(request, written.shape[1] + 1)
    out = [state.logits]
    for i in range(written.shape[1]):
        out.append(model.step(state, written[:, i]))
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("role", sorted(ROLES))
def test_cached_logits_match_uncached_for_every_role(role):
    layout = make_layout(role)
    model, request, written = make_model(layout), make_request(layout), written_tokens(layout)
    assert isinstance(model, StageModel)
    full = model(request, written)
    assert full.shape == (2, written.shape[1] + 1, layout.writes.codebook_size)
    torch.testing.assert_close(cached_logits(model, request, written), full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cond", sorted(CONDITIONINGS))
def test_cached_logits_match_uncached_for_every_conditioning(cond):
    layout = make_layout("coarse", cond)
    model, request, written = make_model(layout), make_request(layout), written_tokens(layout)
    torch.testing.assert_close(cached_logits(model, request, written), model(request, written), atol=1e-4, rtol=1e-4)


ALIGNED = attrs.evolve(TINY, aligned_reads=True)


@pytest.mark.parametrize("role", ["coarse", "fine"])
def test_aligned_reads_keep_cached_and_uncached_logits_equal(role):
    layout = make_layout(role)
    model, request, written = make_model(layout, ALIGNED), make_request(layout), written_tokens(layout, n=13)
    torch.testing.assert_close(cached_logits(model, request, written), model(request, written), atol=1e-4, rtol=1e-4)


def test_aligned_reads_add_the_read_frame_of_the_same_time():
    """Coarse: 2 written codebooks at 50 Hz read 25 Hz semantic frames, so written tokens
    4k..4k+3 (frames 2k, 2k+1) carry semantic frame k; past the reads' end, their last frame."""
    layout = make_layout("coarse")
    model, request = make_model(layout, ALIGNED), make_request(layout, frames=3)
    written = written_tokens(layout, n=16)  # 8 written frames: 4 semantic frames' time, 3 given
    _, aligned = model._reads(request.reads, 2)
    base = model._embed_written(written, 0)
    added = model._embed_written(written, 0, aligned) - base
    expected = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2]
    torch.testing.assert_close(added, aligned[0][:, expected])
    late = model._embed_written(written[:, 5:], 5, aligned) - model._embed_written(written[:, 5:], 5)
    torch.testing.assert_close(late, aligned[0][:, expected[5:]])  # a decode step at index 5 gets the same
    plain = make_model(layout)
    assert plain._reads(request.reads, 2)[1] == []  # without the option nothing is added


@pytest.mark.parametrize("cond", [c for c in sorted(CONDITIONINGS) if c != "none"])
def test_null_condition_changes_logits_and_padding_is_ignored(cond):
    layout = make_layout("coarse", cond)
    model, request, written = make_model(layout), make_request(layout), written_tokens(layout)
    dropped = StageRequest(2, request.reads, request.conditioning, torch.tensor([True, False]))
    a, b = model(request, written), model(dropped, written)
    assert not torch.allclose(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])  # the other row is untouched
    if request.conditioning.mask is not None:  # changing padded values must not change anything
        values = request.conditioning.values.clone()
        values[0, 2:] = 100.0
        padded = StageRequest(2, request.reads, Conditioning("sequence", values, request.conditioning.mask))
        torch.testing.assert_close(model(padded, written), a)


def test_training_cond_dropout_one_uses_null_condition():
    layout = make_layout("coarse", "pooled+prefix")
    model = make_model(layout, TransformerConfig(d_model=32, layers=2, heads=4, cond_dropout=1.0))
    request, written = make_request(layout), written_tokens(layout)
    null = model(StageRequest(2, request.reads, request.conditioning, torch.ones(2, dtype=torch.bool)), written)
    model.train()
    torch.testing.assert_close(model(request, written), null)


def test_loss_is_a_finite_scalar_with_gradients():
    layout = make_layout("fine", "sequence+cross")
    model = make_model(layout).train()
    loss = model.loss(make_request(layout), written_tokens(layout))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.head_weight.grad is not None and model.embed.weight.grad.abs().sum() > 0


def test_random_init_is_seeded_and_leaves_global_rng_alone():
    layout = make_layout()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = make_model(layout), make_model(layout)
    assert torch.rand(1) == before
    c = make_model(layout, TransformerConfig(d_model=32, layers=2, heads=4, prefix_length=2, seed=1))
    torch.testing.assert_close(a.head_weight, b.head_weight)
    assert not torch.equal(a.head_weight, c.head_weight)
    assert not a.training


def test_save_and_load_round_trip(tmp_path):
    layout = make_layout("coarse", "sequence+cross")
    model = make_model(layout)
    request, written = make_request(layout), written_tokens(layout)
    folder = model.save_pretrained(tmp_path / "ckpt")
    saved = json.loads((folder / "config.json").read_text())
    assert saved["component"] == "transformer" and StageLayout.from_dict(saved["layout"]) == layout
    # The spec's params differ, but the checkpoint's saved config is authoritative.
    spec_config = TransformerConfig(d_model=64, heads=4, seed=9)
    loaded = build_transformer(spec_config, BuildContext(Weights(str(folder), "path", folder), layout=layout))
    assert loaded.config == TINY
    torch.testing.assert_close(loaded(request, written), model(request, written), atol=0, rtol=0)
    assert TINY.check(layout, Weights(str(folder), "path", folder)) == []


def test_checkpoint_for_another_layout_is_rejected(tmp_path):
    folder = make_model(make_layout("coarse")).save_pretrained(tmp_path / "ckpt")
    other = StageLayout("coarse", (SEM,), StreamSlice("acoustic", 0, 2, 128, 50.0), *CONDITIONINGS["pooled+prefix"])
    weights = Weights(str(folder), "path", folder)
    with pytest.raises(WeightsError) as info:
        build_transformer(TINY, BuildContext(weights, layout=other))
    assert "\n" not in str(info.value) and "another stage layout" in str(info.value) and "writes" in str(info.value)
    problems = TINY.check(other, weights)
    assert len(problems) == 1 and "writes" in problems[0] and "in the weights" in problems[0]


def test_check_reports_unsupported_conditioning():
    layout = StageLayout("coarse", (SEM,), acoustic(0, 2), ConditioningInfo("sequence", dim=8, length=4), "prefix")
    problems = TransformerConfig().check(layout, Weights("random", "random"))
    assert len(problems) == 1 and "use mode 'cross'" in problems[0]
    assert TransformerConfig().check(make_layout("fine", "sequence+cross"), Weights("random", "random")) == []


def test_config_validation():
    with pytest.raises(ValueError, match=r"^d_model 30 is not divisible by heads 4"):
        TransformerConfig(d_model=30, heads=4)
    with pytest.raises(ValueError, match=r"^d_model .*odd head dim"):
        TransformerConfig(d_model=12, heads=4)
    with pytest.raises(ValueError, match=r"^cond_dropout"):
        TransformerConfig(cond_dropout=1.5)
    with pytest.raises(ParamsError) as info:
        structure_config(TransformerConfig, {"d_model": 30, "heads": 4})
    assert info.value.problems[0][0] == ("d_model",)
    assert structure_config(TransformerConfig, {"layers": 2}).layers == 2


def test_registration_is_lazy_and_does_not_import_torch():
    calls = []
    register_stage_models(lambda name, factory, **kw: calls.append((name, factory, kw)))
    [(name, factory, kw)] = calls
    assert name == "transformer" and factory == "cadenza.plugins.transformer.model:build_transformer"
    assert kw["config"] is TransformerConfig and kw["description"]
    code = "import sys, cadenza.plugins.transformer; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_bad_inputs_are_clear_errors():
    layout = make_layout("coarse")
    model, request = make_model(layout), make_request(layout)
    with pytest.raises(ValueError, match="written tokens"):
        model(request, torch.full((2, 3), 64))
    with pytest.raises(ValueError, match="read semantic"):
        model(StageRequest(2, (torch.zeros(2, 2, 3, dtype=torch.long),), request.conditioning), torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="context.layout"):
        build_transformer(TINY, BuildContext())
