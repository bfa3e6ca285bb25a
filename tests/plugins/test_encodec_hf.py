"""The ``encodec`` tokenizer on transformers-format checkpoints, against ``transformers.EncodecModel``.

Tiny random ``EncodecModel`` s (4 filters, 16-dim latents; the published rates, hops, codebook
sizes and bandwidths) are saved with ``save_pretrained`` into a temporary Hugging Face cache in
the hub layout, under the ids a user's download would have, and loaded by hub id, offline,
through a spec, as the cascade builds a tokenizer. Cadenza's codes must be the library's own
``EncodecModel.encode`` codes on the same weights, and its audio the library's ``decode``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from cadenza.core.components import Tokenizer
from cadenza.core.engine.weights import parse_weights
from cadenza.core.errors import SpecError, WeightsError
from cadenza.core.spec.validate import check_tree
from cadenza.plugins.encodec import EncodecConfig
from hf_cache import cached_snapshot, use_cache
from tiny_specs import build_tokenizer, codec_spec

TINY = {"num_filters": 4, "hidden_size": 16, "num_lstm_layers": 1, "num_residual_layers": 1}
# transformers' conversion settings of the published codecs, at tiny widths.
CODECS = {
    "facebook/encodec_24khz": {},
    "facebook/encodec_32khz": {"sampling_rate": 32000, "upsampling_ratios": [8, 5, 4, 4], "codebook_size": 2048,
                               "target_bandwidths": [2.2], "use_causal_conv": False, "use_conv_shortcut": False},
    "facebook/encodec_48khz": {"sampling_rate": 48000, "audio_channels": 2, "target_bandwidths": [3.0, 6.0, 12.0, 24.0],
                               "use_causal_conv": False, "norm_type": "time_group_norm", "normalize": True,
                               "chunk_length_s": 1.0, "overlap": 0.01},
}
MUSICGEN = "facebook/musicgen-small"  # the hub layout: one config.json, audio_encoder.* tensors
CODEC_ONLY = "cadenza-tests/musicgen-codec-only"  # a MusicGen-style folder holding only audio_encoder/


def tiny_codec(hub_id: str, seed: int = 0):
    """A random EnCodec with random codebooks (transformers zero-inits them for k-means)."""
    from transformers import EncodecConfig as HFEncodecConfig
    from transformers import EncodecModel

    torch.manual_seed(seed)
    model = EncodecModel(HFEncodecConfig(**TINY, **CODECS[hub_id])).eval()
    with torch.no_grad():
        for layer in model.quantizer.layers:
            layer.codebook.embed.normal_()
    return model


def tiny_musicgen(codec):
    from transformers import MusicgenConfig, MusicgenDecoderConfig, MusicgenForConditionalGeneration, T5Config

    text = T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)
    decoder = MusicgenDecoderConfig(vocab_size=2048, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                    ffn_dim=32, num_codebooks=4, max_position_embeddings=64)
    config = MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=codec.config.to_dict(),
                            decoder=decoder.to_dict())
    model = MusicgenForConditionalGeneration(config).eval()
    model.audio_encoder.load_state_dict(codec.state_dict())
    return model


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """(cache folder, {hub id: the library model saved there})."""
    cache = tmp_path_factory.mktemp("hf-cache")
    models = {hub_id: tiny_codec(hub_id, seed) for seed, hub_id in enumerate(CODECS)}
    for hub_id, model in models.items():
        cached_snapshot(cache, hub_id, model.save_pretrained)
    musicgen = tiny_musicgen(tiny_codec("facebook/encodec_32khz", seed=7))
    cached_snapshot(cache, MUSICGEN, musicgen.save_pretrained)
    models[MUSICGEN] = musicgen.audio_encoder
    models[CODEC_ONLY] = tiny_codec("facebook/encodec_32khz", seed=8)
    cached_snapshot(cache, CODEC_ONLY, lambda folder: models[CODEC_ONLY].save_pretrained(folder / "audio_encoder"))
    return cache, models


@pytest.fixture
def offline_hub(hub, monkeypatch):
    use_cache(monkeypatch, hub[0])
    return hub[1]


def spec(weights: str, **params) -> dict:
    return codec_spec({"name": "encodec", "weights": weights, "params": params}, "encodec-hub")


def build(registry, weights: str, **params):
    """(tokenizer, described info), built from a checked spec as the cascade builds it."""
    return build_tokenizer(registry, spec(weights, **params))


def library(model, audio, bandwidth):
    with torch.no_grad():
        encoded = model.encode(audio, bandwidth=bandwidth, return_dict=True)
        return encoded.audio_codes[0], encoded.audio_scales[0]


@pytest.mark.parametrize(("hub_id", "params", "bandwidth", "shape"), [
    ("facebook/encodec_24khz", {}, 6.0, (24000, 75.0, 8, 1024, 1)),
    ("facebook/encodec_24khz", {"bandwidth": 1.5}, 1.5, (24000, 75.0, 2, 1024, 1)),
    ("facebook/encodec_32khz", {}, 2.2, (32000, 50.0, 4, 2048, 1)),
    (MUSICGEN, {}, 2.2, (32000, 50.0, 4, 2048, 1)),  # the codec of a MusicGen checkpoint, read alone
    (CODEC_ONLY, {}, 2.2, (32000, 50.0, 4, 2048, 1)),  # its audio_encoder/ subfolder
])
def test_codes_and_audio_are_the_librarys(registry, offline_hub, real_audio, hub_id, params, bandwidth, shape):
    tokenizer, info = build(registry, hub_id, **params)
    assert isinstance(tokenizer, Tokenizer) and tokenizer.info == info
    assert (info.sample_rate, info.frame_rate, info.num_codebooks, info.codebook_size, info.channels) == shape
    audio, _ = real_audio("24k", rate=info.sample_rate, seconds=0.7)
    codes = tokenizer.encode(audio)
    expected, _ = library(offline_hub[hub_id], audio, bandwidth)
    hop = round(info.sample_rate / info.frame_rate)
    assert codes.dtype == torch.int64 and codes.shape == (1, info.num_codebooks, math.ceil(audio.shape[-1] / hop))
    assert torch.equal(codes, expected) and codes.unique().numel() > 1
    decoded = tokenizer.decode(codes)
    with torch.no_grad():
        reference = offline_hub[hub_id].decode(expected[None], [None], return_dict=True).audio_values
    assert decoded.shape == (1, 1, codes.shape[-1] * hop)
    assert torch.allclose(decoded, reference, atol=1e-6)


def test_48khz_stereo_is_one_segment_at_a_fixed_level(registry, offline_hub, real_audio):
    """Within one 1 s chunk the codes are the library's; longer clips stay one stream (no chunks);
    decoding uses the level ``rms`` where the library would use the chunk's scale."""
    hub_id = "facebook/encodec_48khz"
    tokenizer, info = build(registry, hub_id, bandwidth=12.0, rms=0.2)
    assert (info.sample_rate, info.frame_rate, info.num_codebooks, info.channels) == (48000, 150.0, 8, 2)
    audio, _ = real_audio("48k", seconds=0.9)
    codes = tokenizer.encode(audio)
    expected, scale = library(offline_hub[hub_id], audio, 12.0)
    assert torch.equal(codes, expected) and scale is not None
    with torch.no_grad():
        reference = offline_hub[hub_id].decode(expected[None], [torch.full((1, 1), 0.2)], return_dict=True).audio_values
    assert torch.allclose(tokenizer.decode(codes), reference, atol=1e-6)
    longer, _ = real_audio("48k", seconds=2.5)
    assert tokenizer.encode(longer).shape == (1, 8, math.ceil(longer.shape[-1] / 320))  # not 3 chunks of 150


def test_weight_norm_tensors_of_older_checkpoints_load(registry, tmp_path, real_audio):
    """Checkpoints saved before torch's parametrized weight norm name their tensors ``weight_g`` /
    ``weight_v`` (the hub's MusicGen files date from then); they load into the same codec."""
    from safetensors.torch import load_file, save_file

    codec = tiny_codec("facebook/encodec_32khz", seed=3)
    tiny_musicgen(codec).save_pretrained(tmp_path / "musicgen")
    file = tmp_path / "musicgen" / "model.safetensors"
    legacy = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                                "weight_v"): v
              for k, v in load_file(file).items()}
    assert any(k.startswith("audio_encoder.") and k.endswith("weight_g") for k in legacy)
    save_file(legacy, file, metadata={"format": "pt"})
    tokenizer, _ = build(registry, str(tmp_path / "musicgen"))
    audio, _ = real_audio("24k", rate=32000, seconds=0.4)
    assert torch.equal(tokenizer.encode(audio), library(codec, audio, 2.2)[0])


def test_a_local_save_pretrained_folder(registry, hub, tmp_path, real_audio):
    model = hub[1]["facebook/encodec_24khz"]
    model.save_pretrained(tmp_path / "codec")
    tokenizer, info = build(registry, str(tmp_path / "codec"), bandwidth=3.0)
    assert info.num_codebooks == 4
    audio, _ = real_audio("24k", seconds=0.4)
    assert torch.equal(tokenizer.encode(audio), library(model, audio, 3.0)[0])


def test_validate_reads_config_json_only(hub, write_spec, tmp_path):
    """``cadenza validate`` sizes the stage from the cached config.json: no torch, no transformers."""
    path = write_spec(json.dumps(spec(MUSICGEN)))
    code = ("import sys\n"
            "from cadenza.core.cli.main import main\n"
            f"status = main(['validate', {str(path)!r}])\n"
            "print([m for m in ('torch', 'transformers') if m in sys.modules], status)")
    env = {**os.environ, "HF_HUB_CACHE": str(hub[0]), "HF_HUB_OFFLINE": "1", "CADENZA_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "valid: 1 stage(s): lm (acoustic[0:4])" in out.stdout
    assert out.stdout.strip().endswith("[] 0")


def test_a_bandwidth_the_checkpoint_lacks_is_one_line(registry, offline_hub):
    with pytest.raises(SpecError) as info:
        check_tree(spec(MUSICGEN, bandwidth=6.0), registry)
    message = str(info.value)
    assert "bandwidth 6 kbps is not offered by weights 'facebook/musicgen-small' (offered: 2.2)" in message
    assert "\n" not in message


def test_architecture_params_are_refused_with_a_checkpoint(offline_hub):
    with pytest.raises(WeightsError, match="params n_filters size a random EnCodec; weights 'facebook/encodec_24khz' "
                                           r"bring their own architecture \(config.json\)"):
        EncodecConfig(n_filters=4).describe(parse_weights("facebook/encodec_24khz"))


def test_another_models_checkpoint_is_refused_in_one_line(tmp_path):
    from transformers import DacConfig, DacModel

    DacModel(DacConfig(encoder_hidden_size=2, decoder_hidden_size=16, n_codebooks=1, codebook_dim=2)).save_pretrained(
        tmp_path / "dac")
    with pytest.raises(WeightsError, match="a transformers 'dac' checkpoint, not an EnCodec"):
        EncodecConfig().describe(parse_weights(str(tmp_path / "dac")))


def test_missing_offline_is_one_line(cli, write_spec, monkeypatch, tmp_path):
    """An unknown id cannot be validated; a published one validates but cannot be built. One line each."""
    use_cache(monkeypatch, tmp_path / "empty-cache")
    code, _, stderr = cli("validate", write_spec(json.dumps(spec("someone/encodec-nobody-has")), "unknown.yaml"))
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "weights 'someone/encodec-nobody-has': not in the local Hugging Face cache" in stderr
    known = write_spec(json.dumps(spec("facebook/encodec_32khz")), "known.yaml")
    code, out, _ = cli("validate", known)
    assert code == 0 and "lm (acoustic[0:4])" in out  # the published codec's shape is known offline
    wav = tmp_path / "x.wav"
    code, _, stderr = cli("generate", "a cello", "-p", known, "-o", wav, "-q")
    assert code != 0 and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert "'facebook/encodec_32khz'" in stderr and "offline" in stderr and not wav.exists()
