"""The ``hubert`` and ``w2v-bert`` semantic tokenizers on real music, plus HF components in a cascade.

Models are tiny random configs of the real transformers architectures (no download); the audio
is the real recordings from tests/data at their own rates, resampled by the component.
"""

import pytest
import torch
from safetensors.torch import save_file

from cadenza.core.engine.cascade import Cascade
from cadenza.core.components import BuildContext, SemanticTokenizer
from cadenza.core.errors import SpecError, WeightsError
from cadenza.core.quantize.kmeans import assign
from cadenza.core.spec.validate import load_pipeline
from cadenza.core.engine.weights import parse_weights
from cadenza.plugins.hf import semantic_model as models
from cadenza.plugins.hf.semantic import (HUBERT_DEFAULT, W2V_BERT_DEFAULT, HubertSemanticConfig,
                                         W2VBertSemanticConfig)

RANDOM = parse_weights("random")
FAMILIES = {
    "hubert": (HubertSemanticConfig, models.build_hubert, HUBERT_DEFAULT),
    "w2v-bert": (W2VBertSemanticConfig, models.build_w2v_bert, W2V_BERT_DEFAULT),
}
TINY = {"vocab_size": 16, "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}


def build(name: str, **params):
    config_cls, factory, _ = FAMILIES[name]
    config = config_cls(**{**TINY, **params})
    return config, factory(config, BuildContext())


@pytest.fixture
def offline(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("CADENZA_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    config, tokenizer = build(request.param)
    return request.param, config, tokenizer


@pytest.mark.parametrize(("clip", "seconds"), [("24k", 2.0), ("48k", 1.0)])
def test_real_music_at_50_hz(family, real_audio, clip, seconds):
    _, config, tokenizer = family
    audio, rate = real_audio(clip, seconds=seconds)  # 24 kHz mono / 48 kHz stereo
    assert isinstance(tokenizer, SemanticTokenizer)
    assert tokenizer.info == config.describe(RANDOM) and tokenizer.info.frame_rate == 50.0
    features = tokenizer.features(audio, rate)
    ids = tokenizer.tokenize(audio, rate)
    assert features.shape[0] == 1 and features.shape[2] == 32
    assert abs(features.shape[1] - seconds * 50) <= 2 and ids.shape == features.shape[:2]
    assert ids.dtype == torch.int64 and 0 <= int(ids.min()) and int(ids.max()) < 16
    assert len(ids.unique()) > 1  # music is not one repeated token
    assert tokenizer.layer == 2  # random weights: the last layer unless asked


def test_too_short_audio_gives_no_frames(family):
    _, _, tokenizer = family
    assert tokenizer.tokenize(torch.zeros(2, 1, 100)).shape == (2, 0)


def test_chosen_layer_changes_features(family, real_audio):
    name, _, tokenizer = family
    audio, _ = real_audio("24k", rate=16000, seconds=1.0)
    _, first = build(name, layer=1)
    assert first.layer == 1
    assert not torch.allclose(first.features(audio), tokenizer.features(audio))
    # Same seed, same weights: the layer-1 output is layer 2's input, not a different model.
    assert torch.equal(first.features(audio), first.features(audio))


def test_kmeans_file_round_trip(family, real_audio, tmp_path):
    name, _, tokenizer = family
    audio, rate = real_audio("24k", seconds=1.0)
    features = tokenizer.features(audio, rate)[0]
    centroids = features[torch.randperm(len(features), generator=torch.Generator().manual_seed(0))[:16]].clone()
    path = tmp_path / "km.safetensors"
    save_file({"centroids": centroids}, str(path))
    config, loaded = build(name, kmeans=str(path))
    assert config.describe(RANDOM).vocab_size == 16
    assert torch.equal(loaded.centroids, centroids)
    assert torch.equal(loaded.tokenize(audio, rate)[0], assign(features, centroids))


def test_kmeans_file_mismatches_are_one_line(tmp_path):
    path = tmp_path / "km.safetensors"
    save_file({"centroids": torch.zeros(16, 32)}, str(path))
    cases = [
        ({"vocab_size": 8}, "has 16 centroids but params.vocab_size is 8: set vocab_size: 16"),
        ({"hidden_size": 64}, "has 32-d centroids but the model's features are 64-d"),
        ({"layer": 3}, "params.layer 3 is beyond the model's 2 layers"),
    ]
    for params, message in cases:
        with pytest.raises(WeightsError, match=message.replace("(", r"\(")):
            HubertSemanticConfig(**{**TINY, "kmeans": str(path), **params}).describe(RANDOM)
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{nope}")
    for file, message in [("bad.safetensors", "not a safetensors file"), ("missing.safetensors", "does not exist")]:
        with pytest.raises(WeightsError, match=message) as err:
            W2VBertSemanticConfig(**{**TINY, "kmeans": str(tmp_path / file)}).describe(RANDOM)
        assert "\n" not in str(err.value)


def test_vocab_mismatch_in_a_spec_points_at_its_line(write_spec, registry, tmp_path):
    path = tmp_path / "km.safetensors"
    save_file({"centroids": torch.zeros(16, 32)}, str(path))
    spec = write_spec(f"""\
        semantic_tokenizer:
          name: w2v-bert
          weights: random
          params: {{vocab_size: 32, hidden_size: 32, kmeans: {path}}}
        tokenizer: {{name: tiny-codec, params: {{num_codebooks: 2, codebook_size: 32, channels: 8, latent_dim: 16}}}}
        stages:
          - {{name: sem, role: semantic, model: transformer, params: {{d_model: 32, layers: 1, heads: 2}}, writes: semantic}}
          - {{name: ac, role: coarse, model: transformer, params: {{d_model: 32, layers: 1, heads: 2}}, reads: [semantic], writes: acoustic}}
        """)
    with pytest.raises(SpecError) as err:
        load_pipeline(spec, registry)
    expected = (f"{spec}:3: 'w2v-bert': kmeans file {str(path)!r} has 16 centroids but "
                "params.vocab_size is 32: set vocab_size: 16")
    assert err.value.problems == [expected]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_offline_default_weights_are_one_line(offline, name):
    config_cls, factory, hub_id = FAMILIES[name]
    weights = parse_weights(hub_id)
    assert config_cls().describe(weights).vocab_size == config_cls().vocab_size  # validates offline
    with pytest.raises(WeightsError) as err:
        factory(config_cls(), BuildContext(weights=weights))
    assert hub_id in str(err.value) and "\n" not in str(err.value) and str(err.value).startswith(name)


# -- a cascade with every family -----------------------------------------------------------------

CASCADE = """\
conditioner: {conditioner}
semantic_tokenizer:
  name: {semantic}
  weights: random
  params: {{vocab_size: 16, hidden_size: 32, num_layers: 2, num_heads: 2, intermediate_size: 64}}
tokenizer: {{name: tiny-codec, params: {{num_codebooks: 2, codebook_size: 32, channels: 8, latent_dim: 16}}}}
stages:
  - name: semantic
    role: semantic
    model: transformer
    params: {{d_model: 32, layers: 1, heads: 2}}
    writes: semantic
    guidance_scale: 2.0
  - name: coarse
    role: coarse
    model: transformer
    params: {{d_model: 32, layers: 1, heads: 2}}
    reads: [semantic]
    writes: acoustic
output: {{seconds: 0.5}}
"""
T5_SPEC = "{name: t5, weights: random, params: {max_length: 16, d_model: 32, num_layers: 1, num_heads: 2, d_ff: 64}}"


@pytest.mark.parametrize(("conditioner", "semantic", "mode"), [
    (T5_SPEC, "hubert", "cross"),
    ("{name: minilm, params: {output: pooled}}", "w2v-bert", "prefix"),
], ids=["t5-hubert", "minilm-w2v-bert"])
def test_cascade_with_hf_components(write_spec, registry, real_audio, conditioner, semantic, mode):
    spec = write_spec(CASCADE.format(conditioner=conditioner, semantic=semantic))
    cascade = Cascade.from_spec(spec, registry=registry)
    assert [s.layout.conditioning_mode for s in cascade.pipeline.stages] == [mode, mode]
    result = cascade.generate(["a slow sad piano melody", "fast drums"], seconds=0.5, seed=0)
    assert result.audio.shape == (2, 1, 8000)
    assert result.tokens["semantic"].shape == (2, 1, 25) and int(result.tokens["semantic"].max()) < 16
    audio, rate = real_audio("24k", seconds=0.5)
    ids = cascade.semantic_tokenizer.tokenize(audio, rate)
    assert ids.shape[0] == 1 and abs(ids.shape[1] - 25) <= 1 and int(ids.max()) < 16
