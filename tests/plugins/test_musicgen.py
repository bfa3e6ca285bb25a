"""The ``musicgen`` stage against its reference, token for token.

A tiny random MusicGen is built from transformers configs, saved with ``save_pretrained`` (and a
byte-level T5 tokenizer) into a temporary Hugging Face cache in the hub layout, and loaded by hub
id, offline, through a spec: the path a user's cached ``facebook/musicgen-small`` takes. Greedy
decoding through Cadenza's delayed decode loop must equal ``transformers``' own
``generate(do_sample=False)`` on the same weights and prompts, with and without guidance, for
one prompt and for three.
"""

from __future__ import annotations

import json

import pytest
import torch

from cadenza.core.components import StageRequest
from cadenza.core.engine.cascade import Cascade
from cadenza.core.engine.decode import decode_stage
from cadenza.core.errors import SpecError
from cadenza.core.spec.validate import check_tree
from hf_cache import cached_snapshot, generated_codes, use_cache

HUB_ID = "facebook/musicgen-small"  # a tiny stand-in, found where the real one would be cached
CODEBOOKS, VOCAB = 4, 64
PROMPTS = ["a calm piano", "fast drums and a bass line", "lo-fi"]


def tiny_musicgen():
    from transformers import (EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, MusicgenForConditionalGeneration,
                              T5Config)

    text = T5Config(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4, dropout_rate=0.0)
    codec = EncodecConfig(sampling_rate=32000, audio_channels=1, num_filters=4, codebook_size=VOCAB, codebook_dim=16,
                          hidden_size=16, upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[1.2],
                          num_residual_layers=1, compress=2)
    decoder = MusicgenDecoderConfig(vocab_size=VOCAB, max_position_embeddings=256, num_hidden_layers=2, ffn_dim=64,
                                    num_attention_heads=4, hidden_size=48, num_codebooks=CODEBOOKS, pad_token_id=VOCAB,
                                    bos_token_id=VOCAB, decoder_start_token_id=VOCAB, dropout=0.0,
                                    attention_dropout=0.0, activation_dropout=0.0)
    config = MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=codec.to_dict(), decoder=decoder.to_dict())
    torch.manual_seed(0)
    return MusicgenForConditionalGeneration(config).eval()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(the library's model, the cache holding it as HUB_ID)."""
    from transformers import ByT5Tokenizer

    model = tiny_musicgen()
    cache = tmp_path_factory.mktemp("hf-cache")
    cached_snapshot(cache, HUB_ID, lambda folder: (model.save_pretrained(folder), ByT5Tokenizer().save_pretrained(folder)))
    return model, cache


def spec(guidance: float = 3.0, **stage) -> dict:
    return {"name": "tiny-musicgen-hub",
            "conditioner": {"name": "t5", "weights": HUB_ID, "params": {"max_length": 64}},
            "tokenizer": {"name": "tiny-codec", "params": {"num_codebooks": CODEBOOKS, "codebook_size": VOCAB}},
            "stages": [{"name": "lm", "role": "acoustic", "model": "musicgen", "weights": HUB_ID, "writes": "acoustic",
                        "conditioning": "cross", "sampler": "greedy", "guidance_scale": guidance, **stage}]}


@pytest.fixture
def cascade(reference, monkeypatch, registry):
    use_cache(monkeypatch, reference[1])
    return Cascade(check_tree(spec(), registry), registry)


def library_codes(model, prompts: list[str], frames: int, guidance: float) -> torch.Tensor:
    """``generate(do_sample=False)``'s codes, caught on their way into the library's codec."""
    from transformers import ByT5Tokenizer

    return generated_codes(model, ByT5Tokenizer()(prompts, padding="longest", return_tensors="pt"), frames, guidance)


def cadenza_codes(cascade, prompts: list[str], frames: int, guidance: float) -> torch.Tensor:
    conditioning = cascade.conditioner.embed_text(prompts)
    request = StageRequest(len(prompts), conditioning=conditioning)
    return decode_stage(cascade.models["lm"], request, frames, cascade.samplers["lm"], guidance_scale=guidance)


@pytest.mark.parametrize("guidance", [1.0, 3.0])
@pytest.mark.parametrize("batch", [1, 3])
def test_greedy_codes_equal_the_library_generate(cascade, reference, guidance, batch):
    prompts, frames = PROMPTS[:batch], 12
    ours = cadenza_codes(cascade, prompts, frames, guidance)
    theirs = library_codes(reference[0], prompts, frames, guidance)
    assert ours.shape == theirs.shape == (batch, CODEBOOKS, frames)
    assert torch.equal(ours, theirs)


def test_the_stage_predicts_every_codebook_with_its_delay(cascade):
    model = cascade.models["lm"]
    assert model.codebook_delays == (0, 1, 2, 3)
    conditioning = cascade.conditioner.embed_text(PROMPTS[:2])
    request = StageRequest(2, conditioning=conditioning)
    state = model.prefill(request, 8)
    assert state.logits.shape == (2, CODEBOOKS, VOCAB)
    steps = torch.randint(0, VOCAB, (2, CODEBOOKS, 5))
    steps[:, 1:, 0] = -1  # before codebooks 1-3 start
    full = model.forward(request, steps)
    stepped = [state.logits] + [model.step(state, steps[:, :, s]) for s in range(5)]
    assert torch.allclose(full, torch.stack(stepped, dim=1), atol=1e-5)  # the cache agrees with teacher forcing


def test_a_spec_that_does_not_fit_the_checkpoint_is_refused_before_loading(reference, monkeypatch, registry):
    use_cache(monkeypatch, reference[1])
    wrong = spec()
    wrong["tokenizer"]["params"] = {"num_codebooks": 8, "codebook_size": 1024}
    with pytest.raises(SpecError) as caught:
        check_tree(wrong, registry)
    text = str(caught.value)
    assert "write 4 codebooks, but the tokenizer has 8" in text and "entries, but the tokenizer's have 1024" in text


def test_a_checkpoint_that_is_not_musicgen_is_named(tmp_path, monkeypatch, registry):
    from transformers import T5Config, T5EncoderModel

    cache = tmp_path / "cache"
    cached_snapshot(cache, "google/t5-tiny", lambda folder: T5EncoderModel(
        T5Config(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)).save_pretrained(folder))
    use_cache(monkeypatch, cache)
    not_musicgen = spec()
    not_musicgen["stages"][0]["weights"] = "google/t5-tiny"
    not_musicgen["conditioner"]["weights"] = "random"
    with pytest.raises(SpecError, match="are not a MusicGen checkpoint .model_type 't5'"):
        check_tree(not_musicgen, registry)


def test_an_uncached_checkpoint_offline_is_one_line(tmp_path, monkeypatch, registry):
    use_cache(monkeypatch, tmp_path / "empty")
    missing = spec()
    missing["stages"][0]["weights"] = "facebook/musicgen-nope"
    missing["conditioner"]["weights"] = "random"
    with pytest.raises(SpecError, match="'facebook/musicgen-nope': not in the Hugging Face cache"):
        check_tree(missing, registry)


def test_generate_long_form_and_continuation_through_the_cli(reference, monkeypatch, cli, tmp_path):
    """Windows that continue each other's codes, and a prime, through the delayed loop (tiny codec)."""
    import soundfile
    import yaml

    use_cache(monkeypatch, reference[1])
    long_form = spec(guidance=3.0)
    long_form["stages"][0]["sampler"] = {"name": "top-k", "params": {"k": 8}}
    long_form["output"] = {"seconds": 1.0, "window": 0.4, "overlap": 0.2}
    path = tmp_path / "musicgen.yaml"
    path.write_text(yaml.safe_dump(long_form))
    code, _, err = cli("generate", "a calm piano", "-p", path, "-o", tmp_path / "long.wav", "--seed", "3")
    assert code == 0, err
    audio, rate = soundfile.read(tmp_path / "long.wav")
    assert abs(len(audio) / rate - 1.0) < 0.05
    assert len(json.loads((tmp_path / "long.json").read_text())["long_form"]["windows"]) == 4
    again = tmp_path / "again.wav"
    assert cli("generate", "a calm piano", "-p", path, "-o", again, "--seed", "3", "-q")[0] == 0
    assert again.read_bytes() == (tmp_path / "long.wav").read_bytes()  # same seed, same audio
    prime = tmp_path / "prime.wav"
    soundfile.write(prime, audio[: rate // 2], rate)
    code, _, err = cli("generate", "a calm piano", "-p", path, "-o", tmp_path / "cont.wav", "--prime", prime,
                       "--seconds", "1.2", "-q")
    assert code == 0, err
    continued, _ = soundfile.read(tmp_path / "cont.wav")
    assert abs(len(continued) / rate - 1.2) < 0.05


def test_piece_memory_steers_every_codebook_at_its_delayed_frame(cascade):
    """A logit penalty (piece memory) reaches each codebook at the frame the delayed loop writes."""
    from cadenza.core.steering.piece_memory import memory_model

    model = cascade.models["lm"]
    opening = torch.randint(0, 8, (2, CODEBOOKS, 20))  # the piece's opening used ids 0-7 only
    held = memory_model(model, opening, 1000.0)
    assert held.codebook_delays == model.codebook_delays  # so decode_stage picks the delayed loop
    request = StageRequest(2, conditioning=cascade.conditioner.embed_text(PROMPTS[:2]))
    sample = cascade.registry.get("sampler", "top-k").build(
        cascade.registry.get("sampler", "top-k").config(k=VOCAB), None)
    free = decode_stage(model, request, 10, sample, generator=torch.Generator().manual_seed(0))
    kept = decode_stage(held, request, 10, sample, generator=torch.Generator().manual_seed(0))
    assert free.max() >= 8 and kept.max() < 8


def test_the_preset_generates_from_the_cached_checkpoint_offline(reference, monkeypatch, cli, tmp_path):
    """`cadenza generate --pipeline musicgen-small` on a machine whose cache holds the checkpoint."""
    import json

    import soundfile

    use_cache(monkeypatch, reference[1])
    out = tmp_path / "lofi.wav"
    code, _, err = cli("generate", "lo-fi piano", "--pipeline", "musicgen-small", "--seconds", "1", "-o", out)
    assert code == 0, err
    audio, rate = soundfile.read(out)
    assert rate == 32000 and len(audio) == 32000 and "random" not in err
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert {(c["slot"], c["name"], c.get("weights")) for c in sidecar["components"]} >= {
        ("conditioner", "t5", HUB_ID), ("tokenizer", "encodec", HUB_ID), ("stages.musicgen.model", "musicgen", HUB_ID)}


def test_each_step_samples_from_the_library_distribution(cascade, reference):
    """Sampled decoding: the guided logits each codebook is sampled from equal the library's
    processed scores at that step (so any sampler sees the same distribution)."""
    from transformers import ByT5Tokenizer

    model, prompts, frames = reference[0], PROMPTS[:2], 6
    seen: list[torch.Tensor] = []

    def greedy_spy(logits, generator):
        seen.append(logits.clone())
        return logits.argmax(-1)

    conditioning = cascade.conditioner.embed_text(prompts)
    decode_stage(cascade.models["lm"], StageRequest(2, conditioning=conditioning), frames, greedy_spy,
                 guidance_scale=3.0)
    inputs = ByT5Tokenizer()(prompts, padding="longest", return_tensors="pt")
    out = model.generate(**inputs, do_sample=False, guidance_scale=3.0, max_new_tokens=frames + CODEBOOKS - 1,
                         return_dict_in_generate=True, output_scores=True)
    theirs = [score.view(2, CODEBOOKS, VOCAB) for score in out.scores]  # one [B * Q, V] per step
    calls = iter(seen)
    for step, score in enumerate(theirs):
        for k in range(CODEBOOKS):
            if 0 <= step - k < frames:  # the library also scores padding positions; those are not sampled
                assert torch.allclose(next(calls), score[:, k], atol=1e-4)
    assert next(calls, None) is None


def test_decoded_audio_equals_the_library_generate(reference, monkeypatch, cli, tmp_path):
    """Greedy, guided, through the published path (t5, musicgen and encodec from one cached checkpoint):
    the WAV holds the library's ``generate`` audio within float tolerance."""
    import soundfile
    import yaml
    from transformers import ByT5Tokenizer

    use_cache(monkeypatch, reference[1])
    greedy = spec(guidance=3.0)
    greedy["tokenizer"] = {"name": "encodec", "weights": HUB_ID}
    greedy["output"] = {"seconds": 0.5, "loudness": None, "true_peak": None}  # the level the model made
    path = tmp_path / "greedy.yaml"
    path.write_text(yaml.safe_dump(greedy))
    code, _, err = cli("generate", PROMPTS[1], "-p", path, "-o", tmp_path / "ours.wav", "-q",
                       "--no-watermark")  # the library writes no mark
    assert code == 0, err
    ours, rate = soundfile.read(tmp_path / "ours.wav", dtype="float32")
    frames = 25  # 0.5 s at 50 Hz
    inputs = ByT5Tokenizer()([PROMPTS[1]], padding="longest", return_tensors="pt")
    theirs = reference[0].generate(**inputs, do_sample=False, guidance_scale=3.0,
                                   max_new_tokens=frames + CODEBOOKS - 1)[0, 0].numpy()
    assert rate == 32000 and len(ours) == len(theirs) == 16000
    assert abs(ours - theirs).max() < 1e-3  # 16-bit WAV quantisation and clipping to [-1, 1]: within 2^-10
