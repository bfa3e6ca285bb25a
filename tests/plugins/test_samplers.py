"""The built-in samplers: what they may pick, reproducibility, and param validation."""

import pluggy
import pytest
import torch

from cadenza.core import hookspecs
from cadenza.core.components import BuildContext, ComponentEntry, NoConfig, Sampler
from cadenza.core.spec.params import ParamsError, structure_config
from cadenza.plugins import samplers
def _registered() -> dict[str, ComponentEntry]:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(samplers)
    entries = {}

    def register(name, factory, *, config=NoConfig, description="", default_weights="random", needs_weights=True):
        entries[name] = ComponentEntry(name, "sampler", factory, config, description, default_weights,
                                       needs_weights=needs_weights)

    pm.hook.register_samplers(register=register)
    return entries


def build(name: str, **params):
    entry = _registered()[name]
    return entry.build(structure_config(entry.config, params), BuildContext())


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registers_the_four_samplers_with_lazy_factories():
    entries = _registered()
    assert set(entries) == {"greedy", "temperature", "top-k", "top-p"}
    for entry in entries.values():
        assert isinstance(entry.factory, str) and entry.description
        assert entry.needs_weights is False  # a sampling rule: nothing learned, never "untrained"
        assert isinstance(build(entry.name), Sampler)


def test_greedy_picks_argmax():
    logits = torch.randn(8, 100, generator=gen(1))
    assert torch.equal(build("greedy")(logits, gen()), logits.argmax(-1))


def test_temperature_matches_softmax_frequencies():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(20000, 1)
    tokens = build("temperature", temperature=1.0)(logits, gen())
    freq = torch.bincount(tokens, minlength=4).float() / len(tokens)
    assert torch.allclose(freq, torch.softmax(logits[0], -1), atol=0.02)


def test_low_temperature_concentrates_and_high_flattens():
    logits = torch.randn(64, 50, generator=gen(2))
    assert torch.equal(build("temperature", temperature=1e-3)(logits, gen()), logits.argmax(-1))
    flat = build("temperature", temperature=100.0)(logits[:1].repeat(2000, 1), gen())
    assert len(flat.unique()) > 40


def test_top_k_never_leaves_the_top_k():
    logits = torch.randn(4, 50, generator=gen(3))
    rows = logits.repeat_interleave(500, dim=0)
    tokens = build("top-k", k=5)(rows, gen())
    allowed = rows.topk(5, dim=-1).indices
    assert (allowed == tokens[:, None]).any(-1).all()
    assert len(tokens[:500].unique()) > 1  # it does sample, not just take the argmax
    assert torch.equal(build("top-k", k=1)(logits, gen()), logits.argmax(-1))
    assert build("top-k", k=10_000)(logits, gen()).max() < 50  # k above the vocabulary keeps all


def test_top_p_keeps_only_the_nucleus():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    rows = probs.log().repeat(4000, 1)
    tokens = build("top-p", p=0.75)(rows, gen())  # 0.5 + 0.3 reach 0.75: tokens 1 and 3 only
    assert set(tokens.tolist()) == {1, 3}
    peaked = torch.tensor([[0.0, 6.0, 0.0, 0.0, 0.0]]).repeat(2000, 1)  # head has ~0.93
    assert (build("top-p", p=0.9)(peaked, gen()) == 1).all()
    assert (build("top-p", p=1e-6)(rows, gen()) == 1).all()  # always at least the top token


def test_masked_logits_are_never_sampled():
    logits = torch.zeros(3000, 6)
    logits[:, ::2] = float("-inf")
    for name in ("temperature", "top-k", "top-p"):
        assert (build(name)(logits, gen()) % 2 == 1).all(), name


@pytest.mark.parametrize("name", ["temperature", "top-k", "top-p"])
def test_same_generator_seed_same_tokens(name):
    logits = torch.randn(256, 30, generator=gen(4))
    sampler = build(name)
    assert torch.equal(sampler(logits, gen(7)), sampler(logits, gen(7)))
    assert not torch.equal(sampler(logits, gen(7)), sampler(logits, gen(8)))
    assert sampler(logits, gen()).dtype == torch.int64


@pytest.mark.parametrize(
    "name, params, field",
    [
        ("temperature", {"temperature": 0}, "temperature"),
        ("temperature", {"temperature": -1.5}, "temperature"),
        ("top-k", {"k": 0}, "k"),
        ("top-k", {"k": 2.5}, "k"),
        ("top-p", {"p": 0.0}, "p"),
        ("top-p", {"p": 1.5}, "p"),
        ("top-p", {"temperature": float("nan")}, "temperature"),
        ("greedy", {"temperature": 1.0}, "temperature"),
    ],
)
def test_params_validation_names_the_field(name, params, field):
    with pytest.raises(ParamsError) as err:
        structure_config(_registered()[name].config, params)
    assert err.value.problems[0][0] == (field,)
