"""``mulan``: MuLan-style joint audio-text embeddings, the residual-VQ quantiser, save/load."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F

from cadenza.core.engine.cascade import Cascade
from cadenza.core.components import BuildContext
from cadenza.core.errors import InputError, WeightsError
from cadenza.core.spec.params import structure_config
from cadenza.core.spec.validate import load_pipeline
from cadenza.core.engine.weights import Weights, parse_weights
from cadenza.plugins.mulan.model import contrastive_loss, minilm_folder
from cadenza.plugins.mulan.rvq import ResidualVQ
from tiny_specs import TINY_SPEC

TINY = {"n_mels": 32, "patch_mels": 8, "patch_frames": 8, "clip_seconds": 2.0, "audio_dim": 32,
        "audio_layers": 1, "audio_heads": 2, "text_dim": 32, "text_layers": 1, "text_heads": 2,
        "dim": 16, "num_quantizers": 4, "codebook_size": 32}


def build(registry, weights: str = "random", **params):
    entry = registry.get("conditioner", "mulan")
    config = structure_config(entry.config, {**TINY, **params})
    return entry.build(config, BuildContext(weights=parse_weights(weights))), config


@pytest.fixture(scope="module")
def pooled(registry):
    return build(registry, output="pooled")


@pytest.fixture(scope="module")
def clips(real_audio):
    """Two real 1.5 s excerpts at 24 kHz mono, batched, and a stereo 48 kHz recording."""
    audio, rate = real_audio("24k", seconds=3.0)
    return torch.cat([audio[..., : int(1.5 * rate)], audio[..., int(1.5 * rate):]]), rate


def test_text_and_audio_share_a_unit_space(pooled, clips, real_audio):
    model, config = pooled
    assert model.info == config.describe(Weights("random", "random"))
    assert model.info.kind == "pooled" and model.info.dim == 16 and model.info.has_audio
    text = model.embed_text(["a calm solo piano", "distorted guitars and pounding drums"])
    assert text.kind == "pooled" and text.values.shape == (2, 16)
    assert torch.allclose(text.values.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(text.values[0], text.values[1], atol=1e-3)
    audio = model.embed_audio(*clips)
    assert audio.values.shape == (2, 16) and torch.allclose(audio.values.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(audio.values[0], audio.values[1], atol=1e-4)
    stereo, rate = real_audio("48k", seconds=1.0)  # 2 channels at 48 kHz: downmixed and resampled
    assert stereo.shape[1] == 2 and model.embed_audio(stereo, rate).values.shape == (1, 16)


def test_long_audio_is_the_average_of_windows(pooled, real_audio):
    model, _ = pooled
    audio, rate = real_audio("24k", seconds=5.0)  # clip_seconds is 2: three windows
    whole = model.audio_embedding(audio, rate)
    windows = [model.audio_embedding(audio[..., s: s + 2 * rate], rate) for s in (0, int(1.5 * rate), 3 * rate)]
    expected = F.normalize(torch.stack(windows).mean(0), dim=-1)
    assert torch.allclose(whole, expected, atol=1e-4)
    short = model.audio_embedding(audio[..., : rate // 10], rate)  # 0.1 s: padded to one patch
    assert short.shape == (1, 16) and torch.isfinite(short).all()


def test_tokens_output_is_the_quantised_embedding(registry, clips):
    model, config = build(registry, output="tokens")
    info = config.describe(Weights("random", "random"))
    assert (info.kind, info.length, info.vocab_size, info.has_audio) == ("tokens", 4, 32, True) and model.info == info
    text = model.embed_text(["a calm solo piano", "pounding drums"])
    audio = model.embed_audio(*clips)
    for cond in (text, audio):
        assert cond.kind == "tokens" and cond.values.shape == (2, 4) and cond.values.dtype == torch.int64
        assert int(cond.values.min()) >= 0 and int(cond.values.max()) < 32
    assert torch.equal(text.values, model.quantizer.quantize(model.text_embedding(["a calm solo piano", "pounding drums"])))


def test_quantized_output_is_the_summed_codebook_vector(registry, clips):
    """``quantized``: the RVQ ids summed back into their codebook entries, as one pooled unit vector."""
    model, config = build(registry, output="quantized")
    info = config.describe(Weights("random", "random"))
    assert (info.kind, info.dim, info.has_audio) == ("pooled", 16, True) and model.info == info
    prompts = ["a calm solo piano", "pounding drums"]
    text = model.embed_text(prompts)
    ids = model.quantizer.quantize(model.text_embedding(prompts))
    assert text.kind == "pooled" and text.values.shape == (2, 16)
    assert torch.allclose(text.values, F.normalize(model.quantizer.dequantize(ids), dim=-1))
    audio = model.embed_audio(*clips)
    assert torch.allclose(audio.values.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_the_spec_picks_the_output_of_saved_weights(registry, clips, tmp_path):
    """``output`` is a usage, not a shape: weights saved as ``tokens`` serve a ``quantized`` spec."""
    model, _ = build(registry, output="tokens", seed=2)
    folder = model.save_pretrained(tmp_path / "mulan")
    for output, kind in (("quantized", "pooled"), ("tokens", "tokens")):
        entry = registry.get("conditioner", "mulan")
        config = structure_config(entry.config, {**TINY, "output": output})
        loaded, _ = build(registry, weights=str(folder), output=output)
        assert loaded.config.output == output and loaded.info.kind == kind
        assert config.describe(parse_weights(str(folder))) == loaded.info
    tokens = model.embed_text(["a calm solo piano"]).values
    vector = build(registry, weights=str(folder), output="quantized")[0].embed_text(["a calm solo piano"]).values
    assert torch.allclose(vector, F.normalize(model.quantizer.dequantize(tokens), dim=-1))


def test_music_features_add_a_row_of_tokens_the_tower_reads(registry, clips, tmp_path):
    """``music_features``: one token per patch duration from the music-features DSP, trained
    (its embedding gets gradients), saved with the model, absent from plain towers."""
    model, _ = build(registry, output="pooled", music_features=True, seed=3)
    tower = model.audio
    from cadenza.core.audio.io import prepare
    wave = prepare(clips[0], clips[1], 16000, 1)[:, 0]
    tokens = tower.music_tokens(wave)
    mel_columns = tower.log_mel(wave).shape[-1] // 8
    assert tokens.shape[0] == 2 and tokens.shape[-1] == 32 and abs(tokens.shape[1] - mel_columns) <= 1
    emb = model.audio_embedding(*clips)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    emb.sum().backward()
    assert tower.music_embed.weight.grad is not None and tower.music_embed.weight.grad.abs().sum() > 0
    with torch.no_grad():
        tower.music_row.add_(torch.randn(32))  # the row's tokens take part in the pooled embedding
    assert not torch.allclose(model.audio_embedding(*clips), emb.detach(), atol=1e-4)
    assert "audio.music_embed.weight" in model.state_dict()
    assert not any("music" in key for key in build(registry, output="pooled")[0].state_dict())
    folder = model.save_pretrained(tmp_path / "m")
    loaded, _ = build(registry, weights=str(folder), output="pooled")
    assert loaded.config.music_features and torch.allclose(loaded.audio_embedding(*clips), model.audio_embedding(*clips))


@pytest.mark.parametrize("prompts", [[""], ["fine", "   "], []])
def test_empty_prompts_are_input_errors(pooled, prompts):
    with pytest.raises(InputError):
        pooled[0].embed_text(prompts)


def test_bad_audio_is_an_input_error(pooled):
    with pytest.raises(InputError, match=r"\[batch, channels, samples\]"):
        pooled[0].embed_audio(torch.zeros(16000), 16000)


def test_minilm_text_tower_is_the_pretrained_minilm(registry):
    """Random weights + text=minilm: the BERT tensors are the shipped MiniLM ones, and its
    pooled sentence features (before the random projection) rank a paraphrase above an
    unrelated sentence, which a random encoder would not."""
    from safetensors.torch import load_file

    model, _ = build(registry, text="minilm", output="pooled")
    shipped = load_file(str(minilm_folder() / "model.safetensors"))
    key = "embeddings.word_embeddings.weight"
    assert torch.equal(model.text.bert.state_dict()[key], shipped[key])
    with torch.no_grad():
        feats = F.normalize(model.text_features([
            "a calm, slow piano melody", "a gentle and slow piano tune", "the stock market fell sharply today"]), dim=-1)
    paraphrase, unrelated = float(feats[0] @ feats[1]), float(feats[0] @ feats[2])
    assert paraphrase > unrelated + 0.3
    emb = model.embed_text(["a calm, slow piano melody"]).values
    assert emb.shape == (1, 16) and abs(float(emb.detach().norm()) - 1) < 1e-5


def test_frozen_minilm_is_never_trained_nor_saved(registry, tmp_path):
    """text=minilm-frozen: the encoder is the shipped MiniLM, has no trainable tensors, and a
    checkpoint holds only the rest (so a trained MuLan is small enough to ship), yet loads back
    to the same text embeddings."""
    from safetensors.torch import load_file

    model, _ = build(registry, text="minilm-frozen", output="pooled")
    names = [n for n, _ in model.named_parameters()]
    assert names and not any("bert" in n or "encoder.layer" in n for n in names if n.startswith("text."))
    assert [n for n in names if n.startswith("text.")] == ["text.proj.weight", "text.proj.bias"]
    shipped = load_file(str(minilm_folder() / "model.safetensors"))
    key = "embeddings.word_embeddings.weight"
    assert torch.equal(model.text.encoder.state_dict()[key], shipped[key])
    prompts = ["a calm, slow piano melody", "a gentle and slow piano tune", "the stock market fell sharply today"]
    with torch.no_grad():
        feats = F.normalize(model.text_features(prompts), dim=-1)
        before = model.text_embedding(prompts)
    assert float(feats[0] @ feats[1]) > float(feats[2] @ feats[0]) + 0.3
    folder = model.save_pretrained(tmp_path / "mulan")
    saved = load_file(str(folder / "model.safetensors"))
    assert not any("word_embeddings" in k for k in saved) and sum(v.numel() for v in saved.values()) < 200_000
    loaded, _ = build(registry, weights=str(folder))
    with torch.no_grad():
        assert torch.allclose(loaded.text_embedding(prompts), before)


# -- the quantiser --------------------------------------------------------------------------------

def unit(n: int, dim: int = 16, seed: int = 0) -> torch.Tensor:
    # Clustered unit vectors, like embeddings of a music collection: the same 8 clusters for
    # every seed, which picks the points.
    centres = torch.randn(8, dim, generator=torch.Generator().manual_seed(1234))
    gen = torch.Generator().manual_seed(seed)
    points = centres[torch.randint(8, (n,), generator=gen)] + 0.3 * torch.randn(n, dim, generator=gen)
    return F.normalize(points, dim=-1)


def test_rvq_shapes_and_ranges():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        rvq = ResidualVQ(16, num_quantizers=3, codebook_size=10)
    x = unit(5)
    ids = rvq.quantize(x)
    assert ids.shape == (5, 3) and ids.dtype == torch.int64 and 0 <= int(ids.min()) and int(ids.max()) < 10
    assert rvq.quantize(x, num_quantizers=2).shape == (5, 2)
    assert rvq.dequantize(ids).shape == (5, 16)
    assert torch.equal(rvq.dequantize(ids[:, :1]), rvq.codebooks[0][ids[:, 0]])
    with pytest.raises(ValueError):
        rvq.dequantize(torch.full((1, 3), 10))
    with pytest.raises(ValueError):
        rvq.quantize(torch.zeros(2, 15))


def test_rvq_fit_beats_random_and_more_stages_help():
    data, held_out = unit(512), unit(128, seed=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        rvq = ResidualVQ(16, num_quantizers=4, codebook_size=16)

    def error(n=None):
        return float((rvq.reconstruct(held_out, n) - held_out).pow(2).sum(-1).mean())

    random_error = error()
    rvq.fit(data, iterations=10)
    errors = [error(n) for n in (1, 2, 3, 4)]
    assert errors[-1] < 0.5 * random_error
    assert all(a > b for a, b in zip(errors, errors[1:])), errors


def test_contrastive_loss_prefers_matched_pairs(pooled):
    audio = unit(16)
    text = F.normalize(audio + 0.2 * torch.randn(16, 16, generator=torch.Generator().manual_seed(3)), dim=-1)
    shuffled = text[torch.roll(torch.arange(16), 5)]
    assert contrastive_loss(audio, text, 2.0) < contrastive_loss(audio, shuffled, 2.0)
    model, _ = pooled
    loss = model.contrastive_loss(audio, text)
    loss.backward()  # the temperature is learnable
    assert model.logit_scale.grad is not None and float(model.logit_scale.grad) != 0.0
    model.zero_grad()


# -- weights --------------------------------------------------------------------------------------

def test_save_and_load_round_trip(registry, clips, tmp_path):
    model, config = build(registry, output="tokens", seed=4)
    with torch.no_grad():
        model.fit_quantizer(torch.cat([model.text_embedding(["piano", "drums", "a choir", "synth bass"]),
                                       model.audio_embedding(*clips)]), iterations=3)
    folder = model.save_pretrained(tmp_path / "mulan")
    # The spec's params are overridden by the checkpoint's own config.json.
    assert config.describe(parse_weights(str(folder))) == model.info
    loaded, _ = build(registry, weights=str(folder), num_quantizers=2)
    assert loaded.config == model.config
    prompts = ["a calm solo piano", "pounding drums"]
    assert torch.equal(loaded.embed_text(prompts).values, model.embed_text(prompts).values)
    assert torch.equal(loaded.embed_audio(*clips).values, model.embed_audio(*clips).values)
    assert torch.allclose(loaded.audio_embedding(*clips), model.audio_embedding(*clips))


def test_corrupt_weights_are_one_line(registry, tmp_path, pooled):
    folder = pooled[0].save_pretrained(tmp_path / "m")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError) as info:
        build(registry, weights=str(folder))
    assert "\n" not in str(info.value) and "model.safetensors" in str(info.value)


# -- in a cascade and discovery -------------------------------------------------------------------

def test_mulan_tokens_condition_a_cascade(registry, write_spec, cli):
    params = {**TINY, "output": "tokens"}
    spec = write_spec(TINY_SPEC.replace("{name: byte-text, params: {dim: 16, output: pooled}}",
                                        "{name: mulan, params: %s}" % json.dumps(params)))
    assert cli("validate", spec)[0] == 0
    pipeline = load_pipeline(spec, registry)
    layout = pipeline.stages[0].layout
    assert layout.conditioning_mode == "prefix" and layout.conditioning.kind == "tokens"
    assert layout.conditioning.length == 4 and layout.conditioning.vocab_size == 32
    cascade = Cascade(pipeline, registry)
    result = cascade.generate(["a slow piano", "fast drums"], seconds=0.5, seed=1)
    assert result.audio.shape == (2, 1, 8000)
    # The MuLan trick: the same stages take the audio embedding of a clip as their condition.
    assert cascade.conditioner.embed_audio(torch.zeros(1, 1, 16000), 16000).values.shape == (1, 4)


def test_registration_imports_no_heavy_library():
    code = ("import sys; import cadenza.plugins.mulan as m; m.MulanConfig().describe; "
            "print([n for n in ('torch', 'transformers', 'tokenizers', 'safetensors') if n in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
