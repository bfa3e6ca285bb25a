"""``clap``: a small real LAION-CLAP (its own model code), LAION checkpoints, offline errors."""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from cadenza.core.engine.cascade import Cascade
from cadenza.core.components import BuildContext
from cadenza.core.errors import InputError, WeightsError
from cadenza.core.spec.params import ParamsError, structure_config
from cadenza.core.spec.validate import load_pipeline
from cadenza.core.engine.weights import Weights, parse_weights
from cadenza.plugins.clap import ClapConfig
from tiny_specs import TINY_SPEC

# A real CLAP (HTSAT audio tower, CLIP-style text transformer) shrunk to ~3M parameters.
TINY = {"text_model": "transformer", "joint_dim": 32, "clip_seconds": 1.0, "mel_bins": 16,
        "htsat_dim": 8, "htsat_depths": [1, 1], "htsat_heads": [1, 2], "htsat_window": 4, "htsat_spec_size": 64,
        "text_width": 32, "text_layers": 1, "text_heads": 2, "text_context": 16}
PROMPTS = ["a calm solo piano", "distorted guitars and pounding drums"]

pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid")  # inside laion-clap's HTSAT


def build(registry, weights: str = "random", **params):
    entry = registry.get("conditioner", "clap")
    base = TINY if params.get("text_model", "transformer") == "transformer" else {
        k: v for k, v in TINY.items() if not k.startswith("text_")}
    config = structure_config(entry.config, {**base, **params})
    return entry.build(config, BuildContext(weights=parse_weights(weights))), config


@pytest.fixture(scope="module")
def tiny(registry):
    return build(registry)


@pytest.fixture(scope="module")
def clips(real_audio):
    audio, rate = real_audio("24k", seconds=1.6)
    return torch.cat([audio[..., : int(0.8 * rate)], audio[..., int(0.8 * rate):]]), rate


def test_text_and_audio_share_a_unit_space(tiny, clips, real_audio):
    model, config = tiny
    assert model.info == config.describe(Weights("random", "random"))
    assert (model.info.kind, model.info.dim, model.info.has_audio) == ("pooled", 32, True)
    text = model.embed_text(PROMPTS).values
    assert text.shape == (2, 32) and torch.allclose(text.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(text[0], text[1], atol=1e-3)
    audio = model.embed_audio(*clips).values  # 24 kHz -> the model's 48 kHz
    assert audio.shape == (2, 32) and torch.allclose(audio.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(audio[0], audio[1], atol=1e-4)
    stereo, rate = real_audio("48k", seconds=0.5)
    assert stereo.shape[1] == 2 and model.embed_audio(stereo, rate).values.shape == (1, 32)


def test_long_audio_is_the_average_of_windows(tiny, real_audio):
    model, _ = tiny
    audio, rate = real_audio("48k", seconds=2.5)  # clip is 1 s: windows at 0, 0.75 and 1.5 s
    whole = model.audio_embedding(audio, rate)
    parts = [model.audio_embedding(audio[..., int(s * rate): int(s * rate) + rate], rate) for s in (0, 0.75, 1.5)]
    assert torch.allclose(whole, F.normalize(torch.stack(parts).mean(0), dim=-1), atol=1e-5)


def test_fusion_model_embeds_short_and_long_clips(registry, real_audio):
    model, _ = build(registry, enable_fusion=True)
    audio, rate = real_audio("48k", seconds=2.5)
    long = model.embed_audio(audio, rate).values
    short = model.embed_audio(audio[..., : rate // 2], rate).values
    assert long.shape == short.shape == (1, 32) and abs(float(long.norm()) - 1) < 1e-5
    assert torch.equal(long, model.embed_audio(audio, rate).values)  # deterministic chunks


def test_long_prompts_keep_the_end_token(tiny):
    model, _ = tiny
    ids = model.tokenize(["piano " * 40])
    assert ids.shape == (1, 16) and int(ids[0, -1]) == int(ids.max())  # <end> is the largest id
    assert model.embed_text(["piano " * 40]).values.shape == (1, 32)


@pytest.mark.parametrize("prompts", [[""], ["fine", " \n"], []])
def test_empty_prompts_are_input_errors(tiny, prompts):
    with pytest.raises(InputError):
        tiny[0].embed_text(prompts)


@pytest.mark.parametrize(("params", "message"), [
    ({"audio_model": "PANN-14", "htsat_dim": 8}, "htsat_dim shrinks an HTSAT audio model"),
    ({"text_model": "roberta", "text_width": 32}, "text_width sizes the 'transformer' text model"),
    ({"audio_model": "HTSAT-huge"}, "audio_model must be one of HTSAT-tiny"),
    ({"htsat_depths": [1, 1], "htsat_heads": [2]}, "htsat_heads and htsat_depths go together"),
    ({**TINY, "htsat_window": 3}, "htsat_window (3) must divide the Swin grid of every stage (16, 8)"),
    ({**TINY, "mel_bins": 20}, "mel_bins (20) must divide htsat_spec_size (64)"),
    ({**TINY, "clip_seconds": 10.0}, "clip_seconds gives 1001 mel frames, more than the 256"),
])
def test_invalid_params_are_one_line(params, message):
    with pytest.raises(ParamsError) as info:
        structure_config(ClapConfig, params)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_published_architectures_are_valid():
    for model in ("HTSAT-tiny", "HTSAT-base", "HTSAT-large", "HTSAT-tiny-win-1536", "PANN-14"):
        assert ClapConfig(audio_model=model).describe(Weights("random", "random")).dim == 512


def test_roberta_text_tower_is_built_without_a_download(monkeypatch, tmp_path):
    """The published checkpoints' text tower: roberta-base's architecture, built from its config
    (CLAP itself would download roberta-base's weights only to have the checkpoint replace them)."""
    from cadenza.plugins.clap.model import Clap

    offline(monkeypatch, tmp_path)
    params = {k: v for k, v in TINY.items() if not k.startswith("text_")}
    with torch.random.fork_rng(devices=[]):
        model = Clap(structure_config(ClapConfig, {**params, "text_model": "roberta"}))
    state = model.model.state_dict()
    assert state["text_branch.embeddings.word_embeddings.weight"].shape == (50265, 768)
    assert "text_branch.encoder.layer.11.output.LayerNorm.weight" in state and "text_branch.pooler.dense.weight" in state
    tokens = {"input_ids": torch.tensor([[0, 100, 2, 1]]), "attention_mask": torch.tensor([[1, 1, 1, 0]])}
    with torch.no_grad():
        assert model.model.encode_text(tokens, device="cpu").shape == (1, 32)


def test_roberta_tokenizer_missing_offline_is_one_line(registry, monkeypatch, tmp_path):
    offline(monkeypatch, tmp_path)
    params = {k: v for k, v in TINY.items() if not k.startswith("text_")}
    with pytest.raises(WeightsError) as info:
        build(registry, **{**params, "text_model": "roberta"})
    assert "\n" not in str(info.value) and "'roberta-base' tokenizer" in str(info.value)


# -- weights --------------------------------------------------------------------------------------

class Exploit:
    def __reduce__(self):
        return (exec, ("raise SystemExit('code from the checkpoint ran')",))


def test_laion_checkpoint_layout_loads_with_weights_only(registry, tiny, clips, tmp_path):
    """LAION's .pt layout: DDP ``module.`` keys under ``state_dict``, metadata beside it with numpy
    scalars (refused by plain ``weights_only=True``; allowlisted, being plain data)."""
    model, _ = tiny
    path = tmp_path / "tiny-clap.pt"
    state = {f"module.{k}": v for k, v in model.model.state_dict().items()}
    torch.save({"epoch": 3, "name": "tiny", "best_metric": np.float64(0.5), "state_dict": state}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    loaded, _ = build(registry, weights=str(path), seed=7)
    assert torch.equal(loaded.embed_text(PROMPTS).values, model.embed_text(PROMPTS).values)
    assert torch.equal(loaded.embed_audio(*clips).values, model.embed_audio(*clips).values)


@pytest.mark.parametrize("payload", [Exploit, lambda: argparse.Namespace(lr=1e-4)])
def test_checkpoints_with_other_objects_are_refused_without_running_them(registry, tiny, tmp_path, payload):
    model, _ = tiny
    path = tmp_path / "hostile.pt"
    torch.save({"args": payload(), "state_dict": model.model.state_dict()}, path)
    with pytest.raises(WeightsError) as info:
        build(registry, weights=str(path))
    assert "\n" not in str(info.value) and "Unsupported global" in str(info.value)


@pytest.mark.parametrize("content", [b"garbage", "wrong-architecture"])
def test_bad_laion_files_are_one_line(registry, tmp_path, content):
    path = tmp_path / "bad.pt"
    if content == "wrong-architecture":
        torch.save({"state_dict": {"module.text_projection.0.weight": torch.zeros(3, 3)}}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(WeightsError) as info:
        build(registry, weights=str(path))
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_save_and_load_round_trip(registry, tiny, clips, tmp_path):
    model, _ = tiny
    folder = model.save_pretrained(tmp_path / "clap")
    loaded, config = build(registry, weights=str(folder), joint_dim=64)  # the folder's config rules
    assert loaded.config == model.config and config.describe(parse_weights(str(folder))).dim == 32
    assert torch.equal(loaded.embed_text(PROMPTS).values, model.embed_text(PROMPTS).values)
    assert torch.equal(loaded.embed_audio(*clips).values, model.embed_audio(*clips).values)
    (folder / "model.safetensors").write_bytes(b"corrupt")
    with pytest.raises(WeightsError) as info:
        build(registry, weights=str(folder))
    assert "\n" not in str(info.value) and "model.safetensors" in str(info.value)


def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("CADENZA_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def test_default_hub_weights_offline_are_one_line(registry, monkeypatch, tmp_path):
    offline(monkeypatch, tmp_path)
    entry = registry.get("conditioner", "clap")
    assert entry.default_weights == "lukewys/laion_clap"
    with pytest.raises(WeightsError) as info:
        entry.build(ClapConfig(), BuildContext(weights=parse_weights(entry.default_weights)))
    message = str(info.value)
    assert "\n" not in message and "'lukewys/laion_clap'" in message and "630k-audioset-best.pt" in message
    assert "offline" in message and "`weights:`" in message


def test_default_hub_weights_offline_through_the_cli(cli, write_spec, monkeypatch, tmp_path):
    offline(monkeypatch, tmp_path)
    spec = write_spec(TINY_SPEC.replace("{name: byte-text, params: {dim: 16, output: pooled}}", "{name: clap}"))
    assert cli("validate", spec)[0] == 0  # validation resolves no weights
    out = tmp_path / "out.wav"
    code, _, stderr = cli("generate", "a cello", "-p", spec, "-o", out, "-q")
    assert code != 0 and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert "lukewys/laion_clap" in stderr and not out.exists()


def test_checkpoint_architecture_mismatch_fails_validation(cli, write_spec):
    spec = write_spec(TINY_SPEC.replace("{name: byte-text, params: {dim: 16, output: pooled}}",
                                        "{name: clap, params: {checkpoint: 630k-audioset-fusion-best.pt}}"))
    code, _, stderr = cli("validate", spec)
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "enable_fusion: true" in stderr and ":2:" in stderr


# -- in a cascade and discovery -------------------------------------------------------------------

def test_clap_conditions_a_cascade(registry, write_spec, cli):
    spec = write_spec(TINY_SPEC.replace("{name: byte-text, params: {dim: 16, output: pooled}}",
                                        "{name: clap, weights: random, params: %s}" % json.dumps(TINY)))
    assert cli("validate", spec)[0] == 0
    pipeline = load_pipeline(spec, registry)
    layout = pipeline.stages[0].layout
    assert layout.conditioning_mode == "prefix" and (layout.conditioning.kind, layout.conditioning.dim) == ("pooled", 32)
    result = Cascade(pipeline, registry).generate(["a slow piano", "fast drums"], seconds=0.5, seed=1)
    assert result.audio.shape == (2, 1, 8000)


def test_registration_imports_no_heavy_library():
    code = ("import sys; import cadenza.plugins.clap as m; m.ClapConfig(); "
            "print([n for n in ('torch', 'transformers', 'laion_clap', 'clap_module') if n in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
