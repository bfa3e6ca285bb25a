"""The ``encodec`` tokenizer: a tiny real EnCodec on real music, its weights paths, and a cascade.

Tiny random EnCodecs (4 filters, 16-dim latents, the published 320-sample hop) run in
milliseconds yet go through exactly the library code the published models use.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from cadenza.core.engine.cascade import Cascade
from cadenza.core.components import BuildContext, Tokenizer
from cadenza.core.errors import WeightsError
from cadenza.core.spec.params import ParamsError, structure_config
from cadenza.core.spec.validate import load_pipeline
from cadenza.core.engine.weights import parse_weights
from cadenza.plugins.encodec import EncodecConfig

# Models the tests build with the library itself use torch's deprecated weight_norm.
pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*deprecated:FutureWarning")

TINY = {"n_filters": 4, "dimension": 16, "lstm": 1}
SPEC = """\
conditioner: {{name: byte-text, params: {{dim: 16, output: pooled}}}}
semantic_tokenizer: {{name: mel-kmeans, params: {{frame_rate: 25, vocab_size: 32}}}}
tokenizer: {{name: encodec, weights: {weights}, params: {params}}}
stages:
  - {{name: semantic, role: semantic, model: transformer, params: {{d_model: 32, layers: 1, heads: 2}}, writes: semantic}}
  - {{name: coarse, role: coarse, model: transformer, params: {{d_model: 32, layers: 1, heads: 2}},
     reads: [semantic], writes: "acoustic[0:2]"}}
  - {{name: fine, role: fine, model: transformer, params: {{d_model: 32, layers: 1, heads: 2}},
     reads: ["acoustic[0:2]"], writes: "acoustic[2:4]", conditioning: none}}
output: {{seconds: 0.5}}
"""


def tiny_params(model="24khz", bandwidth=6.0, **more) -> dict:
    return {"model": model, "bandwidth": bandwidth, **TINY, **more}


def build(registry, params, weights="random"):
    entry = registry.get("tokenizer", "encodec")
    config = structure_config(entry.config, params)
    w = parse_weights(weights) if isinstance(weights, str) else weights
    return entry.build(config, BuildContext(weights=w)), config.describe(w)


def flow(params: dict) -> str:
    return "{" + ", ".join(f"{k}: {list(v) if isinstance(v, tuple) else v}" for k, v in params.items()) + "}"


@pytest.mark.parametrize(("model", "bandwidth", "recording", "channels", "frame_rate", "codebooks"), [
    ("24khz", 6.0, "24k", 1, 75.0, 8),
    ("24khz", 1.5, "24k", 1, 75.0, 2),
    ("48khz", 6.0, "48k", 2, 150.0, 4),  # the stereo 48 kHz path on the stereo recording
])
def test_tiny_encodec_on_real_music(registry, real_audio, model, bandwidth, recording, channels, frame_rate, codebooks):
    tokenizer, described = build(registry, tiny_params(model, bandwidth))
    assert isinstance(tokenizer, Tokenizer)
    assert tokenizer.info == described
    assert (described.frame_rate, described.num_codebooks, described.codebook_size, described.channels) == (
        frame_rate, codebooks, 1024, channels)
    assert tokenizer.model.frame_rate == frame_rate  # what the library itself computes
    audio, _ = real_audio(recording, rate=described.sample_rate, seconds=1.3)
    assert audio.shape[1] == channels
    codes = tokenizer.encode(audio)
    frames = math.ceil(audio.shape[-1] / (described.sample_rate / frame_rate))
    assert codes.dtype == torch.int64 and codes.shape == (1, codebooks, frames)
    assert abs(frames - 1.3 * frame_rate) <= 1
    assert 0 <= int(codes.min()) and int(codes.max()) < 1024 and codes.unique().numel() > 1
    decoded = tokenizer.decode(codes)
    assert decoded.shape == (1, channels, frames * 320) and torch.isfinite(decoded).all()


def test_mono_and_stereo_inputs_are_adapted(registry, real_audio):
    """Stereo into the mono model is averaged; mono into the stereo model is duplicated."""
    mono, _ = build(registry, tiny_params("24khz"))
    stereo, info = build(registry, tiny_params("48khz"))
    audio, _ = real_audio("48k", rate=24000, seconds=0.5)
    assert torch.equal(mono.encode(audio), mono.encode(audio.mean(dim=1, keepdim=True)))
    left = real_audio("48k", seconds=0.5)[0][:, :1]
    assert torch.equal(stereo.encode(left), stereo.encode(left.repeat(1, 2, 1)))
    assert stereo.encode(left).shape == (1, info.num_codebooks, 75)


def test_48khz_level_is_normalised_in_and_fixed_out(registry, real_audio):
    """Codes do not depend on the input gain; decoded audio is the decoder output at level ``rms``."""
    tokenizer, _ = build(registry, tiny_params("48khz", rms=0.2))
    audio, _ = real_audio("48k", seconds=1.0)
    seen = []
    hook = tokenizer.model.encoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].mean(dim=1).pow(2).mean().sqrt()))
    codes = tokenizer.encode(audio)
    assert torch.equal(tokenizer.encode(audio * 0.1), codes)
    hook.remove()
    assert all(abs(float(r) - 1.0) < 1e-3 for r in seen)  # the encoder sees a unit-RMS mix at any input gain
    decoded = tokenizer.decode(codes)
    with torch.no_grad():
        unit = tokenizer.model.decode([(codes, torch.ones(1, 1))])
    assert torch.allclose(decoded, unit * 0.2, atol=1e-6)
    # Untrained, the 48 kHz decoder ends in a GroupNorm (unit RMS), so the level is exactly ``rms``.
    assert abs(float(decoded.pow(2).mean().sqrt()) - 0.2) < 0.01
    assert torch.allclose(tokenizer.decode(tokenizer.encode(audio * 0.1)), decoded)


@pytest.mark.parametrize(("model", "table"), [
    ("24khz", {1.5: 2, 3.0: 4, 6.0: 8, 12.0: 16, 24.0: 32}),
    ("48khz", {3.0: 2, 6.0: 4, 12.0: 8, 24.0: 16}),
])
def test_published_models_bandwidth_to_codebooks(model, table):
    for bandwidth, codebooks in table.items():
        info = EncodecConfig(model=model, bandwidth=bandwidth).describe(parse_weights("pretrained"))
        rate = 24000 if model == "24khz" else 48000
        assert (info.sample_rate, info.frame_rate, info.num_codebooks, info.codebook_size) == (
            rate, rate / 320, codebooks, 1024)


@pytest.mark.parametrize(("params", "message"), [
    ({"model": "24khz", "bandwidth": 5.0}, "bandwidth: bandwidth must be one of 1.5, 3, 6, 12, 24 (kbps) for model '24khz'"),
    ({"model": "48khz", "bandwidth": 1.5}, "bandwidth must be one of 3, 6, 12, 24 (kbps) for model '48khz'"),
    ({"model": "32khz"}, "model: invalid value '32khz': expected one of '24khz', '48khz'"),
    ({"ratios": [3, 7]}, "ratios must be integers >= 1 whose product divides the sample rate"),
])
def test_invalid_params_are_one_line(params, message):
    with pytest.raises(ParamsError) as info:
        structure_config(EncodecConfig, params)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_invalid_bandwidth_through_validate(cli, write_spec):
    spec = write_spec(SPEC.format(weights="random", params=flow(tiny_params(bandwidth=5))))
    code, _, stderr = cli("validate", spec)
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and ":3: tokenizer 'encodec': bandwidth" in stderr


def test_architecture_params_need_random_weights():
    with pytest.raises(WeightsError, match="params n_filters, dimension, lstm size a random EnCodec"):
        EncodecConfig(**TINY).describe(parse_weights("pretrained"))


def test_missing_pretrained_offline_is_one_line(registry, monkeypatch, tmp_path):
    monkeypatch.setenv("CADENZA_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsError) as info:
        build(registry, {"model": "48khz"}, "pretrained")
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "encodec_48khz-7e698e3e.th") in message
    assert "https://dl.fbaipublicfiles.com/encodec/v0/encodec_48khz-7e698e3e.th" in message
    assert "`weights:`" in message and "offline" in message


def test_missing_pretrained_offline_through_generate(cli, write_spec, monkeypatch, tmp_path):
    monkeypatch.setenv("CADENZA_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    spec = write_spec(SPEC.format(weights="pretrained", params="{bandwidth: 3}"))
    out = tmp_path / "out" / "x.wav"
    code, _, stderr = cli("generate", "a cello", "-p", spec, "-o", out, "-q")
    assert code != 0 and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert "encodec_24khz-d7cc33bc.th" in stderr and not out.exists() and not out.with_suffix(".json").exists()


@pytest.mark.parametrize(("model", "channels"), [("24khz", 1), ("48khz", 2)])
def test_cascade_validates_and_generates_at_the_codec_rate(registry, write_spec, cli, model, channels):
    spec = write_spec(SPEC.format(weights="random", params=flow(tiny_params(model, 3.0 if model == "24khz" else 6.0))))
    assert cli("validate", spec)[0] == 0
    pipeline = load_pipeline(spec, registry)
    assert pipeline.tokenizer.info.num_codebooks == 4
    fine = pipeline.stages[2].layout.writes
    assert (fine.codebook_size, fine.frame_rate) == (1024, pipeline.tokenizer.info.frame_rate)
    result = Cascade(pipeline, registry).generate("a slow piano", seed=1)
    rate = 24000 if model == "24khz" else 48000
    assert result.sample_rate == rate and result.audio.shape == (1, channels, rate // 2)
    assert result.tokens["acoustic"].shape == (1, 4, round(0.5 * rate / 320))


def test_save_and_load_through_a_local_path(registry, real_audio, tmp_path):
    tokenizer, _ = build(registry, tiny_params("24khz", seed=3))
    folder = tokenizer.save_pretrained(tmp_path / "codec")
    again, described = build(registry, {"bandwidth": 6.0}, str(folder))  # the saved config.json rules
    assert described == tokenizer.info
    audio, _ = real_audio("24k", seconds=0.5)
    assert torch.equal(again.encode(audio), tokenizer.encode(audio))


def test_official_checkpoint_from_the_library_cache(registry, real_audio, monkeypatch, tmp_path):
    """A state dict in the library's format, where the library caches it, loads with identical codes.

    It is the library's own (untrained) 24 kHz model: the published architecture, no download.
    """
    from encodec.model import EncodecModel

    torch.manual_seed(0)
    library = EncodecModel.encodec_model_24khz(pretrained=False)
    library.set_target_bandwidth(3.0)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CADENZA_OFFLINE", "1")
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "encodec_24khz-d7cc33bc.th"
    cached.parent.mkdir(parents=True)
    torch.save(library.state_dict(), cached)
    tokenizer, described = build(registry, {"bandwidth": 3.0}, "pretrained")
    audio, _ = real_audio("24k", seconds=0.5)
    with torch.no_grad():
        [(expected, _)] = library.encode(audio)
    assert torch.equal(tokenizer.encode(audio), expected) and described.num_codebooks == 4
    # The same file given as a local path (a folder holding it) works too.
    local, _ = build(registry, {"bandwidth": 3.0}, str(cached.parent))
    assert torch.equal(local.encode(audio), expected)


@pytest.mark.parametrize("model", ["24khz", "48khz"])
def test_checkpoint_names_and_url_are_the_librarys(model, monkeypatch):
    """The file the library would fetch (name and URL) is the one Cadenza looks for."""
    from encodec import model as library

    from cadenza.plugins.encodec.model import checkpoint_url

    asked = []

    def capture(name, repository=None):
        asked.append(name)
        raise RuntimeError("stop before loading")

    monkeypatch.setattr(library.EncodecModel, "_get_pretrained", staticmethod(capture))
    with pytest.raises(RuntimeError, match="stop before loading"):
        getattr(library.EncodecModel, f"encodec_model_{model}")(pretrained=True)
    assert checkpoint_url(EncodecConfig(model=model)) == library.ROOT_URL + asked[0]


def test_a_checkpoint_that_pickles_code_is_refused(registry, tmp_path):
    file = tmp_path / "evil.th"
    torch.save({"x": torch.zeros(1), "payload": WeightsError("not a tensor")}, file)
    with pytest.raises(WeightsError, match=r"evil.th: not a loadable EnCodec state dict \(UnpicklingError"):
        build(registry, {"bandwidth": 6.0}, str(file))


def test_registration_modules_stay_light():
    code = ("import sys, cadenza.plugins.encodec, cadenza.plugins.dac; "
            "print(sorted(m for m in ('torch', 'encodec', 'dac') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
