"""The built-in tiny components: shapes, determinism, checkpoints, and the behaviour others rely on.

Sizes are tiny so the file runs in seconds; random weights make no claims about quality.
"""

import math
import subprocess
import sys

import attrs
import pluggy
import pytest
import torch

from cadenza.core import hookspecs
from cadenza.core.audio import dsp
from cadenza.core.components import BuildContext, ComponentEntry, Conditioner, NoConfig, SemanticTokenizer, Tokenizer
from cadenza.core.errors import InputError, WeightsError
from cadenza.core.spec.params import ParamsError, structure_config
from cadenza.core.engine.weights import Weights, parse_weights
from cadenza.plugins.tiny import byte_text
from cadenza.plugins.tiny import mel_kmeans
from cadenza.plugins import tiny
from cadenza.plugins.tiny import codec as tiny_codec
from cadenza.plugins.tiny import ByteTextConfig, MelKMeansConfig, TinyCodecConfig

CODEC = TinyCodecConfig(sample_rate=8000, strides=(2, 4), channels=4, latent_dim=8, num_codebooks=3, codebook_size=16)
MEL = MelKMeansConfig(sample_rate=16000, frame_rate=50, n_mels=32, vocab_size=16, n_fft=512)
TEXT = ByteTextConfig(dim=16, layers=1, heads=2, max_length=12)


def sine(freq: float, seconds: float = 0.5, sr: int = 16000, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    return (amp * torch.sin(2 * math.pi * freq * t)).reshape(1, 1, -1)


def noise(samples: int, batch: int = 2, channels: int = 1, seed: int = 0) -> torch.Tensor:
    return 0.3 * torch.randn(batch, channels, samples, generator=torch.Generator().manual_seed(seed))


def load(module, config, folder):
    """Build from a checkpoint folder the way a spec's ``weights: ./folder`` does."""
    return module.build(config, BuildContext(weights=parse_weights(str(folder))))


# -- registration ------------------------------------------------------------------------------------

def test_registration_is_lazy_and_torch_free():
    code = "import sys, cadenza.plugins.tiny, cadenza.plugins.samplers; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(tiny)
    found = {}
    for kind, hook in [("tokenizer", pm.hook.register_tokenizers), ("semantic_tokenizer", pm.hook.register_semantic_tokenizers),
                       ("conditioner", pm.hook.register_conditioners)]:
        def register(name, factory, *, config=NoConfig, description="", default_weights="random", kind=kind):
            found[name] = ComponentEntry(name, kind, factory, config, description, default_weights)
        hook(register=register)
    assert set(found) == {"tiny-codec", "mel-kmeans", "byte-text"}
    assert "noise until trained" in found["tiny-codec"].description
    built = found["tiny-codec"].build(CODEC)
    assert isinstance(built, Tokenizer) and not built.training
    assert isinstance(found["mel-kmeans"].build(MEL), SemanticTokenizer)
    assert isinstance(found["byte-text"].build(TEXT), Conditioner)


@pytest.mark.parametrize(
    "cls, params, field",
    [
        (TinyCodecConfig, {"strides": [1, 4]}, "strides"),
        (TinyCodecConfig, {"strides": []}, "strides"),
        (TinyCodecConfig, {"codebook_size": 1}, "codebook_size"),
        (MelKMeansConfig, {"frame_rate": 30}, "frame_rate"),
        (MelKMeansConfig, {"n_fft": 256}, "n_fft"),
        (ByteTextConfig, {"heads": 3}, "heads"),
        (ByteTextConfig, {"output": "tokens"}, "output"),
    ],
)
def test_config_validation_names_the_field(cls, params, field):
    with pytest.raises(ParamsError) as err:
        structure_config(cls, params)
    assert err.value.problems[0][0] == (field,)


def test_default_infos():
    assert TinyCodecConfig().describe(Weights("random", "random")).frame_rate == 50.0
    assert TinyCodecConfig().info().num_codebooks == 4
    assert MelKMeansConfig().info().frame_rate == 25.0
    assert ByteTextConfig().info().length == 1
    assert ByteTextConfig(output="sequence").info().length == 64


# -- tiny-codec ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def codec():
    return tiny_codec.build(CODEC, BuildContext())


@pytest.mark.parametrize("samples", [80, 81, 1, 8 * 37 - 3])
def test_codec_shapes_and_ranges(codec, samples):
    codes = codec.encode(noise(samples))
    frames = math.ceil(samples / 8)
    assert codes.shape == (2, 3, frames) and codes.dtype == torch.int64
    assert 0 <= codes.min() and codes.max() < 16
    audio = codec.decode(codes)
    assert audio.shape == (2, 1, frames * 8) and audio.abs().max() <= 1
    again = codec.encode(audio)  # its own decode re-encodes to the same shape and range
    assert again.shape == codes.shape and again.max() < 16


@pytest.mark.parametrize("strides", [(3, 5), (4, 4, 4, 5)])
def test_codec_frames_exact_for_odd_and_default_strides(strides):
    codec = tiny_codec.build(TinyCodecConfig(strides=strides, channels=2, latent_dim=4, codebook_size=8), BuildContext())
    hop = math.prod(strides)
    assert codec.encode(noise(hop * 3 + 1, batch=1)).shape[-1] == 4
    assert codec.decode(torch.zeros(1, 4, 5, dtype=torch.long)).shape == (1, 1, hop * 5)


def test_codec_mono_mix_and_bad_codes(codec):
    x = noise(160, batch=1)
    assert torch.equal(codec.encode(x.repeat(1, 2, 1)), codec.encode(x))
    with pytest.raises(InputError):
        codec.decode(torch.full((1, 3, 4), 16))
    with pytest.raises(InputError):
        codec.decode(torch.zeros(1, 2, 4, dtype=torch.long))


def test_codec_seed_decides_weights_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = tiny_codec.build(CODEC, BuildContext())
    assert torch.equal(torch.rand(3), expected)
    b = tiny_codec.build(CODEC, BuildContext())
    c = tiny_codec.build(attrs.evolve(CODEC, seed=1), BuildContext())
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_codec_checkpoint_round_trip(codec, tmp_path):
    codec.save_pretrained(tmp_path / "codec")
    # The spec's config says defaults; the checkpoint's config.json decides the architecture.
    weights = parse_weights(str(tmp_path / "codec"))
    assert TinyCodecConfig().describe(weights) == codec.info
    loaded = load(tiny_codec, TinyCodecConfig(), tmp_path / "codec")
    assert loaded.info == codec.info == CODEC.describe(Weights("random", "random"))
    x = noise(200)
    assert torch.equal(loaded.encode(x), codec.encode(x))
    codes = codec.encode(x)
    assert torch.equal(loaded.decode(codes), codec.decode(codes))


def test_corrupt_or_foreign_checkpoint_is_one_line_weights_error(codec, tmp_path):
    folder = codec.save_pretrained(tmp_path / "codec")
    (folder / "model.safetensors").write_bytes(b"\x00garbage" * 8)
    with pytest.raises(WeightsError) as err:
        load(tiny_codec, CODEC, folder)
    assert "model.safetensors" in str(err.value) and "\n" not in str(err.value)

    mel = mel_kmeans.build(MEL, BuildContext())
    mel.save_pretrained(tmp_path / "mel")
    with pytest.raises(WeightsError, match="mel-kmeans"):
        load(tiny_codec, CODEC, tmp_path / "mel")


# -- mel-kmeans ---------------------------------------------------------------------------------------

def test_mel_filterbank_is_sane():
    fb = dsp.mel_filterbank(257, 32, 16000)
    assert fb.shape == (257, 32) and fb.dtype == torch.float32 and (fb >= 0).all()
    assert (fb.sum(0) > 0).all()  # no empty filter
    assert fb.max() <= 1 + 1e-6
    centres = fb.argmax(0)
    assert (centres[1:] >= centres[:-1]).all()  # filters ordered by frequency
    inside = fb[centres[0] + 1 : centres[-1]].sum(1)
    assert torch.allclose(inside, torch.ones_like(inside), atol=1e-4)  # triangles tile to 1
    assert dsp.mel_filterbank(257, 32, 16000, scale="htk").shape == (257, 32)
    assert float(dsp.hz_to_mel(torch.tensor(1000.0))) == pytest.approx(15.0)
    hz = torch.tensor([100.0, 1000.0, 5000.0], dtype=torch.float64)
    for scale in ("slaney", "htk"):
        assert torch.allclose(dsp.mel_to_hz(dsp.hz_to_mel(hz, scale), scale), hz)


@pytest.fixture(scope="module")
def mel():
    return mel_kmeans.build(MEL, BuildContext())


@pytest.mark.parametrize("samples", [320, 321, 5, 16000])
def test_mel_tokens_shape_and_range(mel, samples):
    ids = mel.tokenize(noise(samples, channels=2))
    assert ids.shape == (2, math.ceil(samples / 320)) and ids.dtype == torch.int64
    assert 0 <= ids.min() and ids.max() < 16


def test_mel_separates_tones_with_fitted_centroids():
    model = mel_kmeans.build(MEL, BuildContext())
    low, high = sine(440), sine(2000)
    f_low, f_high = model.features(low)[0], model.features(high)[0]
    model.centroids[:] = 10.0  # far from everything
    model.centroids[3] = f_low.mean(0)
    model.centroids[11] = f_high.mean(0)
    a, b = model.tokenize(low)[0], model.tokenize(high)[0]
    assert (a[1:-1] == 3).all() and (b[1:-1] == 11).all()
    # Loudness is normalised away: a quieter tone gets the same tokens.
    assert torch.equal(model.tokenize(sine(440, amp=0.05))[0, 1:-1], a[1:-1])

    fitted = mel_kmeans.build(MEL, BuildContext())
    fitted.fit(torch.cat([f_low, f_high]), generator=torch.Generator().manual_seed(0))
    a, b = fitted.tokenize(low)[0, 1:-1], fitted.tokenize(high)[0, 1:-1]
    assert not set(a.tolist()) & set(b.tolist())


def test_mel_checkpoint_round_trip(mel, tmp_path):
    folder = mel.save_pretrained(tmp_path / "mel")
    loaded = load(mel_kmeans, MelKMeansConfig(), folder)
    assert set(loaded.state_dict()) == {"centroids"}
    assert loaded.info == mel.info == MelKMeansConfig().describe(parse_weights(str(folder)))
    x = noise(4000)
    assert torch.equal(loaded.tokenize(x), mel.tokenize(x))


# -- byte-text ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def text():
    return byte_text.build(TEXT, BuildContext())


def test_byte_text_pooled(text):
    c = text.embed_text(["calm piano", "fast techno", "calm piano"])
    assert c.kind == "pooled" and c.values.shape == (3, 16) and c.mask is None
    assert torch.allclose(c.values[0], c.values[2])
    assert not torch.allclose(c.values[0], c.values[1], atol=1e-3)
    alone = text.embed_text(["calm piano"]).values[0]  # padding in a batch does not leak in
    assert torch.allclose(alone, c.values[0], atol=1e-5)


def test_byte_text_sequence_mask_and_truncation():
    seq = byte_text.build(ByteTextConfig(dim=16, heads=2, max_length=12, output="sequence"), BuildContext())
    assert seq.info == ByteTextConfig(dim=16, heads=2, max_length=12, output="sequence").describe(Weights("random", "random"))
    c = seq.embed_text(["abc", "hello"])
    assert c.kind == "sequence" and c.values.shape == (2, 5, 16)
    assert c.mask.tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    long = seq.embed_text(["a prompt that is much longer than twelve bytes"])
    assert long.values.shape == (1, 12, 16) and long.mask.all()


def test_byte_text_unicode_and_empty(text):
    c = text.embed_text(["日本の音楽 🎵 with ünïcödé"])  # truncation may split a character: fine for bytes
    assert torch.isfinite(c.values).all()
    for bad in (["", "ok"], ["   \n\t"]):
        with pytest.raises(InputError, match="^prompt 1 is empty"):
            text.embed_text(bad)


def test_byte_text_checkpoint_round_trip(text, tmp_path):
    folder = text.save_pretrained(tmp_path / "text")
    loaded = load(byte_text, ByteTextConfig(), folder)
    prompts = ["ambient drones", "jazz trio"]
    assert torch.equal(loaded.embed_text(prompts).values, text.embed_text(prompts).values)
    assert loaded.info == text.info
