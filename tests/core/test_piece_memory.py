"""Piece memory: later windows of a long piece keep to its opening's tokens and, where the
conditioner hears audio, are conditioned on its sound as well as on the text."""

from __future__ import annotations

import json
import types

import pytest
import torch
import yaml
from tiny_specs import TINY_SPEC

from cadenza.core.engine.cascade import Cascade
from cadenza.core.components import StageRequest
from cadenza.core.engine.decode import guided_logits
from cadenza.core.errors import InputError
from cadenza.core.hookspecs import hookimpl
from cadenza.core.steering.piece_memory import check_strength, memory_model, opening_conditioning, unused_tokens
from cadenza.core.spec.schema import parse_spec, spec_to_dict
from cadenza.core.types import Conditioning
from cadenza.registry import discover

MULAN = ("{name: mulan, params: {n_mels: 32, patch_mels: 8, patch_frames: 8, clip_seconds: 1.0, audio_dim: 32, "
         "audio_layers: 1, audio_heads: 2, text_dim: 32, text_layers: 1, text_heads: 2, dim: 16, "
         "num_quantizers: 3, codebook_size: 8, output: quantized}}")


def hold(generation) -> float | None:
    """The piece-memory penalty a generation ran with (its sidecar's ``hold``); None: none."""
    return generation.steering[0].get("hold") if generation.steering else None


def tiny_tree(**output) -> dict:
    tree = yaml.safe_load(TINY_SPEC)
    tree["output"] = {**tree.get("output", {}), **output}
    return tree


@pytest.fixture(scope="module")
def cascade(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return Cascade.from_spec(path, registry=discover(environ={}))


def test_unused_tokens_are_counted_per_row_and_codebook():
    tokens = torch.tensor([[[0, 2, 2], [1, 1, 3]], [[3, 3, 3], [0, 1, 2]]])
    unused = unused_tokens(tokens, 4)
    assert unused.tolist() == [[[0, 1, 0, 1], [1, 0, 1, 0]], [[1, 1, 1, 0], [0, 0, 0, 1]]]


def test_check_strength():
    assert check_strength(None) is None and check_strength(0) is None and check_strength(2) == 2.0
    for bad in (-1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(InputError, match="hold must be a number >= 0"):
            check_strength(bad)


def test_memory_penalises_unused_ids_by_codebook_in_cache_and_teacher_forcing(cascade):
    """The KV-cache decode and teacher forcing see the same biased logits (position p is codebook p % Q)."""
    stage = cascade.pipeline.stages[1]  # coarse: two codebooks
    model = cascade.models[stage.spec.name]
    vocab = stage.layout.writes.codebook_size
    history = torch.randint(0, vocab, (1, 2, 30), generator=torch.Generator().manual_seed(0))
    wrapped = memory_model(model, history, 3.0)
    reads = cascade.generate("x", seconds=0.4, seed=0).tokens["semantic"]
    req = StageRequest(1, (reads,), None)
    written = torch.randint(0, vocab, (1, 6))
    plain, biased = model.forward(req, written), wrapped.forward(req, written)
    unused = unused_tokens(history, vocab)
    for p in range(written.shape[1] + 1):
        torch.testing.assert_close(biased[:, p], plain[:, p] - 3.0 * unused[:, p % 2])
    state = wrapped.prefill(req, 7)
    cached = [state.logits]
    for j in range(written.shape[1]):
        cached.append(wrapped.step(state, written[:, j]))
    torch.testing.assert_close(torch.stack(cached, 1), biased, atol=1e-4, rtol=1e-4)
    assert torch.equal(guided_logits(wrapped, req, written, 1.0), biased.float())


def test_a_strong_hold_keeps_later_windows_to_the_openings_tokens(cascade):
    free = cascade.generate("x", seconds=3.0, seed=0, window=1.0, overlap=0.5)
    held = cascade.generate("x", seconds=3.0, seed=0, window=1.0, overlap=0.5, steering=cascade.steering(hold=1e4))
    assert hold(held) == 1e4 and hold(free) is None
    escaped = 0
    for stream, rate in cascade.frame_rates.items():
        opening = round(rate * 1.0)  # the first window: generated exactly as without memory
        assert torch.equal(held.tokens[stream][..., :opening], free.tokens[stream][..., :opening])
        for q in range(held.tokens[stream].shape[1]):
            used = set(held.tokens[stream][0, q, :opening].tolist())
            assert set(held.tokens[stream][0, q, opening:].tolist()) <= used
            escaped += len(set(free.tokens[stream][0, q, opening:].tolist()) - used)
    assert escaped > 0  # without memory the later windows do use other ids: the check above can fail


def test_hold_zero_is_off_and_the_spec_sets_the_default(cascade, tmp_path):
    free = cascade.generate("x", seconds=2.0, seed=1, window=1.0)
    assert torch.equal(cascade.generate("x", seconds=2.0, seed=1, window=1.0, steering=cascade.steering(hold=0)).tokens["acoustic"],
                       free.tokens["acoustic"])
    path = tmp_path / "held.yaml"
    path.write_text(yaml.safe_dump(tiny_tree(hold=1e4)))
    held = Cascade.from_spec(path, registry=discover(environ={}))
    spec_default = held.generate("x", seconds=2.0, seed=1, window=1.0)
    explicit = cascade.generate("x", seconds=2.0, seed=1, window=1.0, steering=cascade.steering(hold=1e4))
    assert hold(spec_default) == 1e4 and torch.equal(spec_default.tokens["acoustic"], explicit.tokens["acoustic"])
    assert torch.equal(held.generate("x", seconds=2.0, seed=1, window=1.0, steering=held.steering(hold=0)).tokens["acoustic"],
                       free.tokens["acoustic"])
    assert hold(held.generate("x", seconds=1.0, seed=1)) is None  # one window, no prime: nothing to hold to


def test_a_prime_is_the_memory_of_a_continuation(cascade):
    prime = cascade.generate("x", seconds=1.0, seed=5)
    audio = prime.audio[0]
    held = cascade.generate("x", seconds=1.6, seed=0, prime=audio, steering=cascade.steering(hold=1e4))
    frames = held.tokens["acoustic"].shape[2]
    have = frames - round(0.6 * cascade.frame_rates["acoustic"])
    for q in range(held.tokens["acoustic"].shape[1]):
        assert set(held.tokens["acoustic"][0, q, have:].tolist()) <= set(held.tokens["acoustic"][0, q, :have].tolist())


@pytest.mark.parametrize(("hold", "message"), [(-1, "hold must be a number >= 0"), ("x", "hold must be a number >= 0"),
                                               (float("nan"), "hold must be a number >= 0")])
def test_a_bad_hold_in_a_spec_names_where(hold, message):
    _, problems = parse_spec(tiny_tree(hold=hold))
    assert [p for p in problems if p[0] == ("output", "hold") and message in p[1]]


def test_generate_command_holds_and_records_it(cli, tiny_spec, tmp_path):
    out = tmp_path / "long.wav"
    code, _, stderr = cli("generate", "a drone", "-p", tiny_spec, "-s", "2", "--window", "1", "--hold", "4", "-o", out)
    assert code == 0, stderr
    assert json.loads(out.with_suffix(".json").read_text())["hold"] == 4.0
    code, _, stderr = cli("generate", "a drone", "-p", tiny_spec, "-s", "2", "--hold", "-1", "-o", tmp_path / "x.wav")
    assert code == 2 and "--hold must be a number >= 0" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.wav").exists()


def test_a_spec_keeps_its_hold():
    spec, problems = parse_spec(tiny_tree(hold=2.5))
    assert not problems and spec.output.hold == 2.5 and spec_to_dict(spec)["output"]["hold"] == 2.5
    assert "hold" not in spec_to_dict(parse_spec(tiny_tree())[0])["output"]


# -- the opening's sound in the conditioning ---------------------------------------------------


@pytest.fixture(scope="module")
def mulan_cascade(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "mulan.yaml"
    path.write_text(TINY_SPEC.replace("{name: byte-text, params: {dim: 16, output: pooled}}", MULAN))
    return path


def test_opening_conditioning_mixes_text_and_the_openings_audio_embedding(mulan_cascade):
    cascade = Cascade.from_spec(mulan_cascade, registry=discover(environ={}))
    text = cascade.conditioner.embed_text(["a flute", "drums"])
    audio = torch.randn(2, 1, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    mixed = opening_conditioning(cascade.conditioner, text, audio, 16000)
    heard = cascade.conditioner.embed_audio(audio, 16000).values
    expected = torch.nn.functional.normalize(text.values + heard, dim=-1)
    assert mixed.kind == "pooled" and torch.allclose(mixed.values, expected, atol=1e-6)
    assert not torch.allclose(mixed.values, text.values, atol=1e-3)


def test_conditioning_that_cannot_be_mixed_is_left_as_it_is(cascade):
    text = cascade.conditioner.embed_text(["x"])  # byte-text: it cannot embed audio
    assert opening_conditioning(cascade.conditioner, text, torch.zeros(1, 1, 800), 16000) is text
    ids = Conditioning("tokens", torch.zeros(1, 3, dtype=torch.long))
    hears = types.SimpleNamespace(embed_audio=lambda audio, rate: Conditioning("pooled", torch.ones(1, 16)))
    assert opening_conditioning(hears, ids, torch.zeros(1, 1, 800), 16000) is ids
    assert opening_conditioning(hears, None, torch.zeros(1, 1, 800), 16000) is None


def test_windows_after_the_opening_are_conditioned_on_its_sound(mulan_cascade):
    seen = []
    observer = types.SimpleNamespace(before_stage=hookimpl(
        lambda stage, request: seen.append((stage.name, None if request.conditioning is None
                                            else request.conditioning.values.clone()))))
    registry = discover(environ={})
    registry.add_plugin(observer, "observer")
    cascade = Cascade.from_spec(mulan_cascade, registry=registry)
    free = cascade.generate("a flute", seconds=2.0, seed=0, window=1.0)
    text = cascade.conditioner.embed_text(["a flute"]).values
    assert all(torch.equal(values, text) for name, values in seen if name != "fine")
    seen.clear()
    held = cascade.generate("a flute", seconds=2.0, seed=0, window=1.0, steering=cascade.steering(hold=2.0))
    opening = held.tokens["acoustic"][:, :, :50]  # the first window: 1 s at 50 frames a second
    assert torch.equal(opening, free.tokens["acoustic"][:, :, :50])
    with torch.inference_mode():
        mixed = opening_conditioning(cascade.conditioner, cascade.conditioner.embed_text(["a flute"]),
                                     cascade.tokenizer.decode(opening).float(), cascade.sample_rate).values
    conditioned = [values for name, values in seen if name != "fine"]  # fine: conditioning none
    assert len(conditioned) == 3 * 2  # semantic and coarse in each of three windows
    assert all(torch.equal(v, text) for v in conditioned[:2])
    assert all(torch.allclose(v, mixed, atol=1e-6) for v in conditioned[2:])
