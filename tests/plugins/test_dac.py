"""The ``dac`` tokenizer: a tiny real ``dac.DAC`` on real music, release files, and a cascade."""

from __future__ import annotations

import math

import pytest
import torch

from cadenza.core.engine.cascade import Cascade
from cadenza.core.components import BuildContext, Tokenizer
from cadenza.core.errors import WeightsError
from cadenza.core.spec.params import ParamsError, structure_config
from cadenza.core.spec.validate import load_pipeline
from cadenza.core.engine.weights import parse_weights
from cadenza.plugins.dac import DacConfig

# Models the tests build with the library itself (the release-format files) warn about torch deprecations.
pytestmark = [pytest.mark.filterwarnings("ignore:.*weight_norm.*deprecated:FutureWarning"),
              pytest.mark.filterwarnings("ignore:.*torch.jit.script.*deprecated:DeprecationWarning")]

TINY = {"encoder_dim": 4, "decoder_dim": 32, "latent_dim": 16, "n_codebooks": 4, "codebook_dim": 4}
SPEC = """\
conditioner: {{name: byte-text, params: {{dim: 16, output: pooled}}}}
tokenizer: {{name: dac, weights: {weights}, params: {params}}}
stages:
  - {{name: coarse, role: coarse, model: transformer, params: {{d_model: 32, layers: 1, heads: 2}}, writes: "acoustic[0:2]"}}
  - {{name: fine, role: fine, model: transformer, params: {{d_model: 32, layers: 1, heads: 2}},
     reads: ["acoustic[0:2]"], writes: "acoustic[2:4]", conditioning: none}}
output: {{seconds: 0.5}}
"""


def build(registry, params, weights="random"):
    entry = registry.get("tokenizer", "dac")
    config = structure_config(entry.config, params)
    w = parse_weights(weights)
    return entry.build(config, BuildContext(weights=w)), config.describe(w)


def flow(params: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in params.items()) + "}"


def library_dac(**kwargs):
    """A small ``dac.DAC`` in a published model's shape (rates, codebooks), saved as DAC saves its releases."""
    import dac

    torch.manual_seed(0)
    args = {"encoder_dim": 4, "decoder_dim": 32, "latent_dim": 16, "codebook_dim": 4, "sample_rate": 16000,
            "encoder_rates": [2, 4, 5, 8], "decoder_rates": [8, 5, 4, 2], "n_codebooks": 12, **kwargs}
    return dac.DAC(**args).eval()


@pytest.mark.parametrize(("model", "recording", "hop", "used"), [
    ("16khz", "24k", 320, None), ("24khz", "24k", 320, 3), ("44khz", "48k", 512, 2)])
def test_tiny_dac_on_real_music(registry, real_audio, model, recording, hop, used):
    params = {"model": model, **TINY, **({"num_codebooks": used} if used else {})}
    tokenizer, described = build(registry, params)
    assert isinstance(tokenizer, Tokenizer) and tokenizer.info == described
    rate = {"16khz": 16000, "24khz": 24000, "44khz": 44100}[model]
    assert (described.sample_rate, described.frame_rate, described.num_codebooks, described.codebook_size,
            described.channels) == (rate, rate / hop, used or 4, 1024, 1)
    assert tokenizer.model.hop_length == hop
    audio, _ = real_audio(recording, rate=rate, seconds=1.1)  # 44khz: the stereo recording, mixed to mono
    codes = tokenizer.encode(audio)
    frames = math.ceil(audio.shape[-1] / hop)
    assert codes.dtype == torch.int64 and codes.shape == (1, used or 4, frames)
    assert abs(frames - 1.1 * described.frame_rate) <= 1
    assert 0 <= int(codes.min()) and int(codes.max()) < 1024 and codes.unique().numel() > 1
    decoded = tokenizer.decode(codes)  # odd strides lose samples in DAC's decoder: padded back to frames * hop
    assert decoded.shape == (1, 1, frames * hop) and torch.isfinite(decoded).all()


@pytest.mark.parametrize(("model", "bitrate", "rate", "frame_rate", "codebooks"), [
    ("16khz", "8kbps", 16000, 50.0, 12), ("24khz", "8kbps", 24000, 75.0, 32),
    ("44khz", "8kbps", 44100, 44100 / 512, 9), ("44khz", "16kbps", 44100, 44100 / 512, 18)])
def test_published_models_describe_without_weights(model, bitrate, rate, frame_rate, codebooks):
    info = DacConfig(model=model, bitrate=bitrate).describe(parse_weights("pretrained"))
    assert (info.sample_rate, info.frame_rate, info.num_codebooks, info.codebook_size, info.channels) == (
        rate, frame_rate, codebooks, 1024, 1)
    assert round(info.frame_rate, 2) in (50.0, 75.0, 86.13)
    fewer = DacConfig(model=model, bitrate=bitrate, num_codebooks=2).describe(parse_weights("pretrained"))
    assert fewer.num_codebooks == 2


@pytest.mark.parametrize(("params", "message"), [
    ({"model": "8khz"}, "model: invalid value '8khz': expected one of '16khz', '24khz', '44khz'"),
    ({"model": "24khz", "bitrate": "16kbps"}, "bitrate '16kbps' is not published for model '24khz' (available: 8kbps)"),
    ({"model": "16khz", "num_codebooks": 13}, "num_codebooks must be <= the model's 12 codebooks, got 13"),
    ({"encoder_rates": [2, 4]}, "decoder_rates must multiply to the encoder hop (8)"),
])
def test_invalid_params_are_one_line(params, message):
    with pytest.raises(ParamsError) as info:
        structure_config(DacConfig, params)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_invalid_model_through_validate(cli, write_spec):
    spec = write_spec(SPEC.format(weights="random", params="{model: 22khz}"))
    code, _, stderr = cli("validate", spec)
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and ":2: tokenizer 'dac': invalid value '22khz'" in stderr


def test_architecture_params_need_random_weights():
    with pytest.raises(WeightsError, match="params encoder_dim, .* size a random DAC"):
        DacConfig(**TINY).describe(parse_weights("pretrained"))


def test_missing_pretrained_offline_is_one_line(registry, monkeypatch, tmp_path):
    monkeypatch.setenv("CADENZA_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(WeightsError) as info:
        build(registry, {"model": "24khz"}, "pretrained")
    message = str(info.value)
    assert "\n" not in message and "offline" in message and "`weights:`" in message
    assert str(tmp_path / ".cache" / "descript" / "dac" / "weights_24khz_8kbps_0.0.4.pth") in message
    assert "https://github.com/descriptinc/descript-audio-codec/releases/download/0.0.4/weights_24khz.pth" in message


def test_missing_pretrained_offline_through_generate(cli, write_spec, monkeypatch, tmp_path):
    monkeypatch.setenv("CADENZA_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    spec = write_spec(SPEC.format(weights="pretrained", params="{model: 16khz, num_codebooks: 4}"))
    out = tmp_path / "x.wav"
    code, _, stderr = cli("generate", "drums", "-p", spec, "-o", out, "-q")
    assert code != 0 and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert "weights_16khz_8kbps_0.0.5.pth" in stderr and not out.exists() and not out.with_suffix(".json").exists()


def test_cascade_validates_and_generates_at_the_codec_rate(registry, write_spec, cli):
    spec = write_spec(SPEC.format(weights="random", params=flow({"model": "16khz", **TINY})))
    assert cli("validate", spec)[0] == 0
    pipeline = load_pipeline(spec, registry)
    assert pipeline.stages[1].layout.writes.frame_rate == 50.0
    result = Cascade(pipeline, registry).generate("fast drums", seed=2)
    assert result.sample_rate == 16000 and result.audio.shape == (1, 1, 8000)
    assert result.tokens["acoustic"].shape == (1, 4, 25)


def test_save_and_load_through_a_local_path(registry, real_audio, tmp_path):
    tokenizer, _ = build(registry, {"model": "24khz", **TINY, "seed": 5})
    folder = tokenizer.save_pretrained(tmp_path / "dac-tiny")
    again, described = build(registry, {"model": "16khz"}, str(folder))  # the saved config.json rules
    assert described == tokenizer.info and described.sample_rate == 24000
    audio, _ = real_audio("24k", seconds=0.5)
    assert torch.equal(again.encode(audio), tokenizer.encode(audio))


def test_release_file_from_the_library_cache(registry, real_audio, monkeypatch, tmp_path):
    """A file in DAC's release format (``DAC.save(package=False)``), where ``dac.utils.download``
    keeps it, is built from its metadata and encodes exactly as the library does."""
    library = library_dac()
    monkeypatch.setenv("HOME", str(tmp_path))
    cached = tmp_path / ".cache" / "descript" / "dac" / "weights_16khz_8kbps_0.0.5.pth"
    cached.parent.mkdir(parents=True)
    library.save(str(cached), package=False)
    tokenizer, described = build(registry, {"model": "16khz", "num_codebooks": 6}, "pretrained")
    assert described.num_codebooks == 6 and tokenizer.model.encoder_dim == 4  # from the file's metadata
    audio, _ = real_audio("24k", rate=16000, seconds=0.5)
    with torch.no_grad():
        _, expected, *_ = library.encode(library.preprocess(audio, 16000), n_quantizers=6)
        z = library.quantizer.from_codes(expected)[0]
        expected_audio = library.decode(z)
    codes = tokenizer.encode(audio)
    assert torch.equal(codes, expected)
    assert torch.allclose(tokenizer.decode(codes)[..., :expected_audio.shape[-1]], expected_audio)
    local, _ = build(registry, {"model": "16khz"}, str(cached))  # the file as a local path
    assert local.info.num_codebooks == 12


@pytest.mark.parametrize(("model", "bitrate"), [("16khz", "8kbps"), ("24khz", "8kbps"), ("44khz", "8kbps"), ("44khz", "16kbps")])
def test_cache_path_and_url_are_the_librarys(model, bitrate, monkeypatch, tmp_path):
    """``dac.utils.download`` returns a cached file without downloading: it must be the one Cadenza uses."""
    import dac.utils

    from cadenza.plugins.dac.model import cached_release, release_url

    monkeypatch.setenv("HOME", str(tmp_path))
    config = DacConfig(model=model, bitrate=bitrate)
    cached_release(config).parent.mkdir(parents=True, exist_ok=True)
    cached_release(config).write_bytes(b"")
    assert dac.utils.download(model, bitrate) == cached_release(config)
    assert release_url(config) == dac.utils.__MODEL_URLS__[(model, dac.utils.__MODEL_LATEST_TAGS__[(model, bitrate)], bitrate)]


def test_release_file_of_another_model_is_refused(registry, tmp_path):
    file = tmp_path / "weights.pth"
    library_dac(n_codebooks=4).save(str(file), package=False)
    with pytest.raises(WeightsError, match=r"weights.pth: a DAC at 16000 Hz, 50 frames/s, 4 codebooks of 1024, "
                                           r"not the 16000 Hz, 50 frames/s, 12 x 1024 of model '16khz'"):
        build(registry, {"model": "16khz"}, str(file))
    with pytest.raises(WeightsError, match="not the 24000 Hz"):
        build(registry, {"model": "24khz", "num_codebooks": 2}, str(file))


def test_a_release_file_that_pickles_code_is_refused(registry, tmp_path):
    file = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "metadata": {"kwargs": {}, "hook": WeightsError("not data")}}, file)
    with pytest.raises(WeightsError, match=r"evil.pth: not a loadable DAC weights file \(UnpicklingError"):
        build(registry, {"model": "16khz"}, str(file))
