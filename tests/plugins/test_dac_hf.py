"""The ``dac`` tokenizer on transformers-format checkpoints, against ``transformers.DacModel``.

Tiny random ``DacModel`` s in the published models' shapes (rates, hops, codebook counts of 1024;
4-channel encoders, 4-dim codebooks) are saved with ``save_pretrained`` into a temporary Hugging
Face cache in the hub layout, under ``descript/dac_*``, and loaded by hub id, offline, through a
spec, as the cascade builds a tokenizer. Cadenza's codes must be the library's own
``DacModel.encode`` codes on the same weights, and its audio the library's ``decode``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F

from cadenza.core.components import Tokenizer
from cadenza.core.engine.weights import parse_weights
from cadenza.core.errors import SpecError, WeightsError
from cadenza.core.spec.validate import check_tree
from cadenza.plugins.dac import DacConfig
from hf_cache import cached_snapshot, use_cache
from tiny_specs import build_tokenizer, codec_spec

TINY = {"encoder_hidden_size": 4, "decoder_hidden_size": 32, "codebook_dim": 4, "codebook_size": 1024}
# (sampling_rate, downsampling_ratios, n_codebooks) of the published models.
SHAPES = {"descript/dac_16khz": (16000, [2, 4, 5, 8], 12), "descript/dac_44khz": (44100, [2, 4, 8, 8], 9)}


def tiny_dac(hub_id: str, seed: int = 0, **more):
    from transformers import DacConfig as HFDacConfig
    from transformers import DacModel

    rate, ratios, codebooks = SHAPES[hub_id]
    torch.manual_seed(seed)
    fields = {"sampling_rate": rate, "downsampling_ratios": ratios, "n_codebooks": codebooks, **TINY, **more}
    config = HFDacConfig(**fields)
    return DacModel(config).eval()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """(cache folder, {hub id: the library model saved there})."""
    cache = tmp_path_factory.mktemp("hf-cache")
    models = {hub_id: tiny_dac(hub_id, seed) for seed, hub_id in enumerate(SHAPES)}
    for hub_id, model in models.items():
        cached_snapshot(cache, hub_id, model.save_pretrained)
    return cache, models


@pytest.fixture
def offline_hub(hub, monkeypatch):
    use_cache(monkeypatch, hub[0])
    return hub[1]


def spec(weights: str, **params) -> dict:
    return codec_spec({"name": "dac", "weights": weights, "params": params}, "dac-hub")


def build(registry, weights: str, **params):
    """(tokenizer, described info), built from a checked spec as the cascade builds it."""
    return build_tokenizer(registry, spec(weights, **params))


@pytest.mark.parametrize(("hub_id", "params", "shape"), [
    ("descript/dac_16khz", {"model": "16khz"}, (16000, 50.0, 12)),
    ("descript/dac_16khz", {"model": "16khz", "num_codebooks": 4}, (16000, 50.0, 4)),
    ("descript/dac_44khz", {"num_codebooks": 2}, (44100, 44100 / 512, 2)),
])
def test_codes_and_audio_are_the_librarys(registry, offline_hub, real_audio, hub_id, params, shape):
    tokenizer, info = build(registry, hub_id, **params)
    assert isinstance(tokenizer, Tokenizer) and tokenizer.info == info
    assert (info.sample_rate, info.frame_rate, info.num_codebooks) == shape
    assert (info.codebook_size, info.channels) == (1024, 1)
    model, hop = offline_hub[hub_id], round(info.sample_rate / info.frame_rate)
    audio, _ = real_audio("24k", rate=info.sample_rate, seconds=0.7)
    audio = audio[..., : audio.shape[-1] // hop * hop - 7]  # not a whole number of hops: padded as dac pads
    frames = math.ceil(audio.shape[-1] / hop)
    codes = tokenizer.encode(audio)
    with torch.no_grad():
        expected = model.encode(F.pad(audio, (0, frames * hop - audio.shape[-1])), n_quantizers=info.num_codebooks,
                                return_dict=True).audio_codes
    assert codes.dtype == torch.int64 and codes.shape == (1, info.num_codebooks, frames)
    assert torch.equal(codes, expected) and codes.unique().numel() > 1
    decoded = tokenizer.decode(codes)
    with torch.no_grad():
        reference = model.decode(audio_codes=expected, return_dict=True).audio_values[:, None]
    assert decoded.shape == (1, 1, frames * hop)  # odd strides lose samples: zero-padded back to frames * hop
    kept = reference.shape[-1]
    assert torch.allclose(decoded[..., :kept], reference[..., :frames * hop], atol=1e-6)
    assert not decoded[..., kept:].any()


def test_a_batch_is_coded_row_by_row(registry, offline_hub, real_audio):
    tokenizer, _ = build(registry, "descript/dac_16khz", model="16khz", num_codebooks=3)
    audio, _ = real_audio("24k", rate=16000, seconds=0.5)
    batch = torch.cat([audio, audio.flip(-1)])
    codes = tokenizer.encode(batch)
    assert torch.equal(codes[:1], tokenizer.encode(audio))
    assert tokenizer.decode(codes).shape == (2, 1, codes.shape[-1] * 320)


def test_a_local_save_pretrained_folder(registry, tmp_path, real_audio):
    model = tiny_dac("descript/dac_16khz", seed=5)
    model.save_pretrained(tmp_path / "dac")
    tokenizer, info = build(registry, str(tmp_path / "dac"), model="16khz", num_codebooks=5)
    audio, _ = real_audio("24k", rate=16000, seconds=0.4)
    with torch.no_grad():
        expected = model.encode(audio, n_quantizers=5).audio_codes
    assert info.num_codebooks == 5 and torch.equal(tokenizer.encode(audio), expected)


def test_validate_reads_config_json_only(hub, write_spec):
    """``cadenza validate`` sizes the stage from the cached config.json: no torch, no transformers."""
    path = write_spec(json.dumps(spec("descript/dac_16khz", model="16khz", num_codebooks=6)))
    code = ("import sys\n"
            "from cadenza.core.cli.main import main\n"
            f"status = main(['validate', {str(path)!r}])\n"
            "print([m for m in ('torch', 'transformers', 'dac') if m in sys.modules], status)")
    env = {**os.environ, "HF_HUB_CACHE": str(hub[0]), "HF_HUB_OFFLINE": "1", "CADENZA_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "valid: 1 stage(s): lm (acoustic[0:6])" in out.stdout
    assert out.stdout.strip().endswith("[] 0")


def test_a_checkpoint_of_another_model_is_one_line(registry, offline_hub):
    """``model`` says which published DAC the spec expects; the message names the params that fit."""
    with pytest.raises(SpecError) as info:
        check_tree(spec("descript/dac_16khz"), registry)  # model defaults to 44khz
    message = str(info.value)
    assert "weights 'descript/dac_16khz': a DAC at 16000 Hz, 50 frames/s, 12 codebooks of 1024, not the 44100 Hz" \
        in message
    assert "set params model: 16khz" in message and "\n" not in message


def test_fewer_codebooks_than_used_is_one_line(registry, tmp_path):
    tiny_dac("descript/dac_16khz", n_codebooks=6).save_pretrained(tmp_path / "dac")
    with pytest.raises(WeightsError, match="hold 6 codebooks, fewer than the 12 used; set num_codebooks to at most 6"):
        DacConfig(model="16khz").describe(parse_weights(str(tmp_path / "dac")))


def test_architecture_params_are_refused_with_a_checkpoint(offline_hub):
    with pytest.raises(WeightsError, match="params encoder_dim size a random DAC; weights 'descript/dac_44khz' "
                                           "bring their own architecture"):
        DacConfig(encoder_dim=4).describe(parse_weights("descript/dac_44khz"))


def test_missing_offline_is_one_line(cli, write_spec, monkeypatch, tmp_path):
    """An unknown id cannot be validated; a published one validates but cannot be built. One line each."""
    use_cache(monkeypatch, tmp_path / "empty-cache")
    code, _, stderr = cli("validate", write_spec(json.dumps(spec("someone/dac-nobody-has")), "unknown.yaml"))
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "weights 'someone/dac-nobody-has': not in the local Hugging Face cache" in stderr
    known = write_spec(json.dumps(spec("descript/dac_24khz", model="24khz")), "known.yaml")
    code, out, _ = cli("validate", known)
    assert code == 0 and "lm (acoustic[0:32])" in out  # the published model's shape is known offline
    wav = tmp_path / "x.wav"
    code, _, stderr = cli("generate", "a cello", "-p", known, "-o", wav, "-q")
    assert code != 0 and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert "'descript/dac_24khz'" in stderr and "offline" in stderr and not wav.exists()
