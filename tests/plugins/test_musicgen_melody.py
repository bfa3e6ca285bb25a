"""The ``musicgen-melody`` stage against its reference, token for token, and its chroma.

A tiny random ``MusicgenMelodyForConditionalGeneration`` is saved with ``save_pretrained`` (with a
byte-level T5 tokenizer and the feature extractor's config) into a temporary Hugging Face cache
in the hub layout and loaded by hub id, offline, through a spec. Greedy decoding through
Cadenza's delayed decode loop must equal the library's ``generate(do_sample=False)`` with and
without guidance, for one prompt and three, with and without a melody (the library given the
same chroma as ``input_features``); Cadenza's torch chroma must equal the library's feature
extractor on the same audio.
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
from cadenza.core.steering.melody import Note, synthesize
from cadenza.plugins.musicgen.chroma import Chroma, ChromaSettings, chroma_filters
from hf_cache import cached_snapshot, generated_codes, use_cache

HUB_ID = "facebook/musicgen-melody"  # a tiny stand-in, found where the real one would be cached
CODEBOOKS, VOCAB, CHROMA_LENGTH = 4, 64, 12
PROMPTS = ["a calm piano", "fast drums and a bass line", "lo-fi"]
RATE = 32000


def tiny_melody_model(audio_channels: int = 1):
    from transformers import (EncodecConfig, MusicgenMelodyConfig, MusicgenMelodyDecoderConfig,
                              MusicgenMelodyForConditionalGeneration, T5Config)

    text = T5Config(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4, dropout_rate=0.0)
    codec = EncodecConfig(sampling_rate=RATE, audio_channels=1, num_filters=4, codebook_size=VOCAB, codebook_dim=16,
                          hidden_size=16, upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[1.2],
                          num_residual_layers=1, compress=2)
    decoder = MusicgenMelodyDecoderConfig(vocab_size=VOCAB, max_position_embeddings=256, num_hidden_layers=2,
                                          ffn_dim=64, num_attention_heads=4, hidden_size=48, num_codebooks=CODEBOOKS,
                                          pad_token_id=VOCAB, bos_token_id=VOCAB, decoder_start_token_id=VOCAB,
                                          dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                                          audio_channels=audio_channels)
    config = MusicgenMelodyConfig(text_encoder=text.to_dict(), audio_encoder=codec.to_dict(),
                                  decoder=decoder.to_dict(), num_chroma=12, chroma_length=CHROMA_LENGTH)
    torch.manual_seed(0)
    model = MusicgenMelodyForConditionalGeneration(config).eval()
    with torch.no_grad():  # random init is too weak for a melody to change greedy codes: make it count
        model.audio_enc_to_dec_proj.weight.mul_(100.0)
    return model


def save_checkpoint(model):
    from transformers import ByT5Tokenizer, MusicgenMelodyFeatureExtractor

    def save(folder):
        model.save_pretrained(folder)
        ByT5Tokenizer().save_pretrained(folder)
        MusicgenMelodyFeatureExtractor().save_pretrained(folder)

    return save


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(the library's model, the cache holding it as HUB_ID)."""
    model = tiny_melody_model()
    cache = tmp_path_factory.mktemp("hf-cache")
    cached_snapshot(cache, HUB_ID, save_checkpoint(model))
    return model, cache


def spec(guidance: float = 3.0, **stage) -> dict:
    return {"name": "tiny-musicgen-melody-hub",
            "conditioner": {"name": "t5", "weights": HUB_ID, "params": {"max_length": 64}},
            "tokenizer": {"name": "tiny-codec", "params": {"num_codebooks": CODEBOOKS, "codebook_size": VOCAB}},
            "stages": [{"name": "lm", "role": "acoustic", "model": "musicgen-melody", "weights": HUB_ID,
                        "writes": "acoustic", "conditioning": "prefix", "sampler": "greedy",
                        "guidance_scale": guidance, **stage}]}


@pytest.fixture
def cascade(reference, monkeypatch, registry):
    use_cache(monkeypatch, reference[1])
    return Cascade(check_tree(spec(), registry), registry)


def tune(seconds: float, shift: int = 0) -> torch.Tensor:
    """``[S]`` audio of a melody (rendered notes and a little noise) at 32 kHz."""
    notes = [Note(0.15 * i, 0.15 * i + 0.3, 52 + (5 * i + shift) % 19) for i in range(int(seconds / 0.15))]
    noise = 0.005 * torch.randn(round(seconds * RATE), generator=torch.Generator().manual_seed(shift))
    return synthesize(notes, RATE, seconds)[0, 0] + noise


def melodies(batch: int) -> torch.Tensor:
    return torch.stack([tune(1.5, shift=row) for row in range(batch)])


def library_codes(model, prompts, frames: int, guidance: float, audio=None) -> torch.Tensor:
    """``generate(do_sample=False)``'s codes, caught on their way into the library's codec."""
    from transformers import ByT5Tokenizer, MusicgenMelodyFeatureExtractor

    inputs = dict(ByT5Tokenizer()(prompts, padding="longest", return_tensors="pt"))
    if audio is not None:
        inputs["input_features"] = MusicgenMelodyFeatureExtractor()(
            list(audio.numpy()), sampling_rate=RATE, return_tensors="pt")["input_features"]
    return generated_codes(model, inputs, frames, guidance)


def stage_for(cascade, audio=None):
    model = cascade.models["lm"]
    return model if audio is None else model.with_melody(audio)


def cadenza_codes(cascade, prompts, frames: int, guidance: float, audio=None) -> torch.Tensor:
    request = StageRequest(len(prompts), conditioning=cascade.conditioner.embed_text(prompts))
    return decode_stage(stage_for(cascade, audio), request, frames, cascade.samplers["lm"], guidance_scale=guidance)


@pytest.mark.parametrize("with_melody", [False, True])
@pytest.mark.parametrize("guidance", [1.0, 3.0])
@pytest.mark.parametrize("batch", [1, 3])
def test_greedy_codes_equal_the_library_generate(cascade, reference, guidance, batch, with_melody):
    prompts, frames = PROMPTS[:batch], 10
    audio = melodies(batch) if with_melody else None
    ours = cadenza_codes(cascade, prompts, frames, guidance, audio)
    theirs = library_codes(reference[0], prompts, frames, guidance, audio)
    assert ours.shape == theirs.shape == (batch, CODEBOOKS, frames)
    assert torch.equal(ours, theirs)


def test_a_melody_changes_the_codes(cascade):
    """The chroma reaches the decoder: with a melody the greedy codes differ."""
    plain = cadenza_codes(cascade, PROMPTS[:2], 10, 3.0)
    followed = cadenza_codes(cascade, PROMPTS[:2], 10, 3.0, melodies(2))
    assert not torch.equal(plain, followed)


def test_the_cache_agrees_with_teacher_forcing(cascade):
    model = cascade.models["lm"].with_melody(melodies(2))
    request = StageRequest(2, conditioning=cascade.conditioner.embed_text(PROMPTS[:2]))
    state = model.prefill(request, 8)
    steps = torch.randint(0, VOCAB, (2, CODEBOOKS, 5))
    steps[:, 1:, 0] = -1  # before codebooks 1-3 start
    full = model.forward(request, steps)
    stepped = [state.logits] + [model.step(state, steps[:, :, s]) for s in range(5)]
    assert torch.allclose(full, torch.stack(stepped, dim=1), atol=1e-5)


def test_each_step_samples_from_the_library_distribution(cascade, reference):
    """Sampled decoding: the guided logits each codebook is sampled from equal the library's
    processed scores at that step, with a melody."""
    from transformers import ByT5Tokenizer, MusicgenMelodyFeatureExtractor

    prompts, frames, audio = PROMPTS[:2], 6, melodies(2)
    seen: list[torch.Tensor] = []

    def greedy_spy(logits, generator):
        seen.append(logits.clone())
        return logits.argmax(-1)

    request = StageRequest(2, conditioning=cascade.conditioner.embed_text(prompts))
    decode_stage(stage_for(cascade, audio), request, frames, greedy_spy, guidance_scale=3.0)
    inputs = dict(ByT5Tokenizer()(prompts, padding="longest", return_tensors="pt"))
    inputs["input_features"] = MusicgenMelodyFeatureExtractor()(list(audio.numpy()), sampling_rate=RATE,
                                                                 return_tensors="pt")["input_features"]
    out = reference[0].generate(**inputs, do_sample=False, guidance_scale=3.0, max_new_tokens=frames + CODEBOOKS - 1,
                                return_dict_in_generate=True, output_scores=True)
    calls = iter(seen)
    for step, score in enumerate(out.scores):
        score = score.view(2, CODEBOOKS, VOCAB)
        for k in range(CODEBOOKS):
            if 0 <= step - k < frames:  # the library also scores padding positions; those are not sampled
                assert torch.allclose(next(calls), score[:, k], atol=1e-4)
    assert next(calls, None) is None


def test_the_chroma_equals_the_feature_extractor():
    from transformers import MusicgenMelodyFeatureExtractor
    from transformers.audio_utils import chroma_filter_bank

    settings = ChromaSettings()
    theirs_filters = chroma_filter_bank(num_frequency_bins=settings.n_fft, num_chroma=12, sampling_rate=RATE, tuning=0)
    assert torch.allclose(chroma_filters(settings), torch.from_numpy(theirs_filters), atol=1e-9)
    extractor = MusicgenMelodyFeatureExtractor()
    long, short = tune(3.2, shift=1), tune(0.3, shift=2)  # one longer than a window, one shorter
    for audio in (long, short):
        theirs = extractor(audio.numpy(), sampling_rate=RATE, return_tensors="pt")["input_features"]
        ours = Chroma(settings)(audio[None])
        assert ours.shape == theirs.shape and torch.allclose(ours, theirs)
    batch = torch.stack([long, torch.nn.functional.pad(short, (0, long.shape[0] - short.shape[0]))])
    theirs = extractor([long.numpy(), short.numpy()], sampling_rate=RATE, return_tensors="pt")["input_features"]
    assert torch.allclose(Chroma(settings)(batch), theirs)  # a batch pads with silence, as the extractor does
    silence = Chroma(settings)(torch.zeros(1, RATE))
    assert torch.equal(silence.argmax(-1), torch.zeros(1, silence.shape[1], dtype=torch.long))  # silence is C


def test_a_spec_that_does_not_fit_the_checkpoint_is_refused_before_loading(reference, monkeypatch, registry):
    use_cache(monkeypatch, reference[1])
    wrong = spec()
    wrong["tokenizer"]["params"] = {"num_codebooks": 8, "codebook_size": 1024}
    wrong["stages"][0]["conditioning"] = "cross"
    with pytest.raises(SpecError) as caught:
        check_tree(wrong, registry)
    text = str(caught.value)
    assert "write 4 codebooks, but the tokenizer has 8" in text and "entries, but the tokenizer's have 1024" in text
    assert "musicgen-melody takes as its prefix its conditioning: use conditioning: prefix, not 'cross'" in text


def test_a_musicgen_checkpoint_given_to_the_melody_model_is_named(tmp_path, monkeypatch, registry):
    from test_musicgen import tiny_musicgen

    cache = tmp_path / "cache"
    cached_snapshot(cache, "facebook/musicgen-small", lambda folder: tiny_musicgen().save_pretrained(folder))
    use_cache(monkeypatch, cache)
    wrong = spec()
    wrong["stages"][0]["weights"] = "facebook/musicgen-small"
    wrong["conditioner"]["weights"] = "random"
    with pytest.raises(SpecError, match="are not a MusicGen-melody checkpoint .model_type 'musicgen', expected "
                                        "'musicgen_melody'.: use model 'musicgen'"):
        check_tree(wrong, registry)


def test_a_melody_checkpoint_given_to_musicgen_is_named(reference, monkeypatch, registry):
    use_cache(monkeypatch, reference[1])
    wrong = spec()
    wrong["stages"][0].update(model="musicgen", conditioning="cross")
    with pytest.raises(SpecError, match="are not a MusicGen checkpoint .model_type 'musicgen_melody'.*use model "
                                        "'musicgen-melody'"):
        check_tree(wrong, registry)


def test_a_stereo_checkpoint_is_refused(tmp_path, monkeypatch, registry):
    cache = tmp_path / "cache"
    cached_snapshot(cache, HUB_ID, save_checkpoint(tiny_melody_model(audio_channels=2)))
    use_cache(monkeypatch, cache)
    with pytest.raises(SpecError, match="are a stereo MusicGen-melody; only mono checkpoints are supported"):
        check_tree(spec(), registry)


# -- through the command line: --melody from a recording and from a MIDI file ----------------------


def published_spec(tmp_path, seconds: float = 0.5, **output) -> str:
    """t5, musicgen-melody and encodec all reading the one cached checkpoint, greedy, level untouched."""
    import yaml

    greedy = spec(guidance=3.0)
    greedy["tokenizer"] = {"name": "encodec", "weights": HUB_ID}
    greedy["output"] = {"seconds": seconds, "loudness": None, "true_peak": None, **output}
    path = tmp_path / "melody.yaml"
    path.write_text(yaml.safe_dump(greedy))
    return path


def library_audio(model, prompt: str, frames: int, melody: torch.Tensor) -> torch.Tensor:
    from transformers import ByT5Tokenizer, MusicgenMelodyFeatureExtractor

    inputs = dict(ByT5Tokenizer()([prompt], padding="longest", return_tensors="pt"))
    inputs["input_features"] = MusicgenMelodyFeatureExtractor()(melody.numpy(), sampling_rate=RATE,
                                                                return_tensors="pt")["input_features"]
    return model.generate(**inputs, do_sample=False, guidance_scale=3.0, max_new_tokens=frames + CODEBOOKS - 1)[0, 0]


def midi_tune(path) -> list[Note]:
    """A MIDI file of a short tune (one lead track); returns its notes."""
    from cadenza.plugins.workflows.corpus.compose import Song, Track

    tune = [(0, 1, 67), (1, 0.5, 72), (1.5, 0.5, 71), (2, 1, 64)]
    path.write_bytes(Song(bpm=240, beats=3, tracks=[Track("lead", 0, 73, [(s, n, p, 100) for s, n, p in tune])]).to_midi())
    return [Note(s / 4, (s + n) / 4, p) for s, n, p in tune]


@pytest.mark.parametrize("kind", ["wav", "mid"])
def test_generate_with_a_melody_writes_the_library_audio(reference, monkeypatch, cli, tmp_path, kind):
    """``cadenza generate --melody x.wav`` (the recording's chroma) and ``--melody x.mid`` (the chroma
    of its rendering): the WAV holds the library's ``generate`` audio given the same chroma."""
    import soundfile

    use_cache(monkeypatch, reference[1])
    melody_file = tmp_path / f"x.{kind}"
    if kind == "wav":
        soundfile.write(melody_file, tune(1.5).numpy(), RATE, subtype="FLOAT")
        heard = torch.from_numpy(soundfile.read(melody_file, dtype="float32")[0])[: RATE // 2]  # the run's 0.5 s
    else:
        notes = midi_tune(melody_file)
        heard = synthesize(notes, RATE, 0.5)[0, 0]
    out = tmp_path / "ours.wav"
    code, _, err = cli("generate", PROMPTS[1], "-p", published_spec(tmp_path), "-o", out, "--melody", melody_file,
                       "--no-watermark")  # the library writes no mark
    assert code == 0, err
    ours, rate = soundfile.read(out, dtype="float32")
    theirs = library_audio(reference[0], PROMPTS[1], 25, heard).numpy()  # 0.5 s at 50 Hz
    assert rate == RATE and len(ours) == len(theirs) == RATE // 2
    assert abs(ours - theirs).max() < 1e-3  # 16-bit WAV quantisation
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["melody"]["file"] == str(melody_file) and sidecar["melody"]["source"] == ("audio" if kind == "wav" else "midi")


def test_long_form_windows_hear_the_melody_from_their_start(reference, monkeypatch, cli, tmp_path):
    """Windows continue each other's codes; each hears the melody from its first frame on."""
    import soundfile

    use_cache(monkeypatch, reference[1])
    melody_file = tmp_path / "x.wav"
    soundfile.write(melody_file, tune(1.5).numpy(), RATE)
    path = published_spec(tmp_path, seconds=1.0, window=0.4, overlap=0.2)
    code, _, err = cli("generate", "a calm piano", "-p", path, "-o", tmp_path / "long.wav", "--melody", melody_file)
    assert code == 0, err
    audio, rate = soundfile.read(tmp_path / "long.wav")
    assert abs(len(audio) / rate - 1.0) < 0.05
    assert len(json.loads((tmp_path / "long.json").read_text())["long_form"]["windows"]) == 4


def test_continuation_without_a_melody_runs(reference, monkeypatch, cli, tmp_path):
    import soundfile

    use_cache(monkeypatch, reference[1])
    prime = tmp_path / "prime.wav"
    soundfile.write(prime, tune(0.4).numpy(), RATE)
    code, _, err = cli("generate", "a calm piano", "-p", published_spec(tmp_path), "-o", tmp_path / "cont.wav",
                       "--prime", prime, "--seconds", "0.8", "-q")
    assert code == 0, err
    continued, rate = soundfile.read(tmp_path / "cont.wav")
    assert abs(len(continued) / rate - 0.8) < 0.05


def test_an_unreadable_melody_file_is_one_line(reference, monkeypatch, cli, tmp_path):
    use_cache(monkeypatch, reference[1])
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file")
    code, _, err = cli("generate", "a calm piano", "-p", published_spec(tmp_path), "-o", tmp_path / "o.wav",
                       "--melody", broken)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "broken.wav" in err and "Traceback" not in err
    assert not (tmp_path / "o.wav").exists()


def test_a_melody_strength_is_refused_for_a_chroma_stage(reference, monkeypatch, registry):
    from cadenza.core.errors import InputError
    from cadenza.core.steering.melody import Melody

    use_cache(monkeypatch, reference[1])
    cascade = Cascade(check_tree(spec(), registry), registry)
    with pytest.raises(InputError, match="conditions stage 'lm' on the melody's chroma: a melody strength"):
        cascade.generate("a calm piano", seconds=0.2, steering=cascade.steering(melody=Melody([(0.0, 0.2, 60)]), melody_strength=2.0))


def test_the_preset_follows_a_melody_from_the_cached_checkpoint_offline(reference, monkeypatch, cli, tmp_path):
    """`cadenza generate --pipeline musicgen-melody --melody x.wav` on a machine whose cache holds it."""
    import soundfile

    use_cache(monkeypatch, reference[1])
    melody_file = tmp_path / "hum.wav"
    soundfile.write(melody_file, tune(1.0).numpy(), 16000)  # another rate: resampled to the chroma's
    out = tmp_path / "tune.wav"
    code, _, err = cli("generate", "a flute", "--pipeline", "musicgen-melody", "--seconds", "1", "-o", out,
                       "--melody", melody_file)
    assert code == 0, err
    audio, rate = soundfile.read(out)
    assert rate == RATE and len(audio) == RATE and "random" not in err
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert {(c["slot"], c["name"], c.get("weights")) for c in sidecar["components"]} >= {
        ("conditioner", "t5", HUB_ID), ("tokenizer", "encodec", HUB_ID),
        ("stages.musicgen.model", "musicgen-melody", HUB_ID)}


def test_download_names_the_hub_id_and_offline_is_one_line(tmp_path, monkeypatch, cli):
    use_cache(monkeypatch, tmp_path / "empty")
    code, out, err = cli("download", "musicgen-melody", "--list")
    assert HUB_ID in out + err and "not cached" in out + err
    code, _, err = cli("generate", "a flute", "--pipeline", "musicgen-melody", "-o", tmp_path / "x.wav")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert HUB_ID in err and "cadenza download" in err and not (tmp_path / "x.wav").exists()


def test_each_window_hears_the_melody_from_its_start():
    from cadenza.core.steering.melody import melody_window

    rows = [torch.arange(10.0), torch.arange(4.0)]
    window = melody_window(rows, 6)
    assert torch.equal(window[0], torch.tensor([6.0, 7, 8, 9, 0, 1, 2, 3, 4, 5]))  # cycled, as audiocraft's windows
    assert torch.equal(window[1], torch.tensor([2.0, 3, 0, 1, 0, 0, 0, 0, 0, 0]))  # then silence to the longest
    assert torch.equal(melody_window(rows, 0)[0], rows[0])


def test_each_long_form_window_is_conditioned_from_its_own_start(cascade, monkeypatch):
    """The cascade gives window k the melody from its first frame (its context included) on."""
    from cadenza.core.steering.melody import Melody, melody_audio, melody_window
    from cadenza.plugins.musicgen.melody_model import MusicgenMelodyStage

    heard = []
    with_melody = MusicgenMelodyStage.with_melody

    def keep(stage, audio):
        heard.append(audio.clone())
        return with_melody(stage, audio)

    monkeypatch.setattr(MusicgenMelodyStage, "with_melody", keep)
    melody = Melody([(0.0, 0.3, 60), (0.3, 0.7, 64), (0.7, 1.0, 67)])
    result = cascade.generate("a calm piano", seconds=1.0, window=0.4, overlap=0.2, steering=cascade.steering(melody=melody))
    starts = [round(w["start"] * RATE) for w in result.windows]
    assert len(heard) == len(starts) == 4 and starts[0] == 0
    rows = melody_audio([melody], RATE, 1.0)
    for audio, start in zip(heard, starts):
        assert torch.equal(audio, melody_window(rows, start))
