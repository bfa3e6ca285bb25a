"""Continuation: a prime's tokens are the written prefix of every stage, the audio starts with it."""

from __future__ import annotations

import json

import pytest
import soundfile
import torch

from cadenza.core.engine import decode as decode_module
from cadenza.core.audio.io import prepare
from cadenza.core.engine.cascade import Cascade
from cadenza.core.components import BuildContext, StageRequest
from cadenza.core.engine.decode import decode_stage
from cadenza.core.engine.longform import PRIME_CONTEXT, plan_windows
from cadenza.core.errors import InputError
from cadenza.core.layout import StageLayout, StreamSlice
from cadenza.core.types import Conditioning, ConditioningInfo
from cadenza.plugins.transformer import TransformerConfig
from cadenza.plugins.transformer.model import build_transformer
from cadenza.registry import discover

HOP = 320  # tiny spec: 16 kHz, 50 Hz acoustic frames


@pytest.fixture(scope="module")
def cascade(tmp_path_factory):
    from tiny_specs import TINY_SPEC

    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return Cascade.from_spec(path, registry=discover(environ={}))


@pytest.fixture(scope="module")
def prime(real_audio):
    """Half a second of real music at 24 kHz (the codec runs at 16 kHz: the prime is resampled)."""
    audio, rate = real_audio("24k", seconds=0.5)
    return audio[0], rate


def spy_decode(monkeypatch):
    """Record every decode_stage call as (model, prefix, returned tokens)."""
    calls = []

    def spy(model, request, num_frames, sampler, **kwargs):
        tokens = decode_stage(model, request, num_frames, sampler, **kwargs)
        calls.append((model, kwargs.get("prefix"), tokens))
        return tokens

    monkeypatch.setattr(decode_module, "decode_stage", spy)
    return calls


def test_prefix_is_exactly_the_primes_codes(cascade, prime, monkeypatch):
    audio, rate = prime
    calls = spy_decode(monkeypatch)
    result = cascade.generate("a cello", seconds=1.0, seed=4, prime=audio, prime_rate=rate, watermark=False)
    with torch.inference_mode():
        codes = cascade.tokenizer.encode(prepare(audio[None], rate, 16000, 1))
        semantic = cascade.semantic_tokenizer.tokenize(prepare(audio[None], rate, 16000, 1))
    assert codes.shape[2] == 25 and result.prime_seconds == 0.5
    by_stage = {name: (prefix, out) for name, model in cascade.models.items() for m, prefix, out in calls if m is model}
    assert torch.equal(by_stage["semantic"][0], semantic[:, None, :12])  # 25 Hz: the 12 whole frames of 0.5 s
    assert torch.equal(by_stage["coarse"][0], codes[:, 0:2])
    assert torch.equal(by_stage["fine"][0], codes[:, 2:4])
    assert torch.equal(result.tokens["acoustic"][:, :, :25], codes)  # the prime's codes, then the new ones
    assert result.tokens["acoustic"].shape == (1, 4, 50) and result.tokens["semantic"].shape == (1, 1, 25)
    assert by_stage["coarse"][1].shape == (1, 2, 25)  # only the new frames are generated


def test_audio_begins_with_the_primes_decoded_codes(cascade, prime):
    audio, rate = prime
    result = cascade.generate("a cello", seconds=1.0, seed=4, prime=audio, prime_rate=rate, watermark=False)
    assert result.audio.shape == (1, 1, 16000)
    with torch.inference_mode():
        reference = cascade.tokenizer.decode(cascade.tokenizer.encode(prepare(audio[None], rate, 16000, 1)))
    # The codec decoder sees a few frames ahead, so only the prime's last frames feel the continuation.
    exact = 8000 - 5 * HOP
    torch.testing.assert_close(result.audio[..., :exact], reference[..., :exact], atol=1e-5, rtol=0)
    assert (result.audio[..., 8000:] - reference[..., -1:]).abs().max() > 0  # and new audio follows


def test_only_new_is_the_part_after_the_prime(cascade, prime):
    audio, rate = prime
    full = cascade.generate("a cello", seconds=1.2, seed=4, prime=audio, prime_rate=rate, watermark=False)
    new = cascade.generate("a cello", seconds=1.2, seed=4, prime=audio, prime_rate=rate, only_new=True,
                           watermark=False)  # a mark on the whole and one on the part differ: compare the audio
    assert new.audio.shape == (1, 1, round(0.7 * 16000)) and new.only_new
    assert torch.equal(new.audio, full.audio[..., 8000:])


def test_a_prime_per_prompt_and_per_row_seeds(cascade, prime):
    audio, rate = prime
    both = cascade.generate(["a cello", "drums"], seconds=0.8, seed=[4, 9], prime=audio, prime_rate=rate)
    alone = cascade.generate("drums", seconds=0.8, seed=9, prime=audio, prime_rate=rate)
    assert all(torch.equal(both.tokens[k][1], alone.tokens[k][0]) for k in alone.tokens)
    assert both.row_seeds == (4, 9)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"seconds": 0.5}, "the prime is 0.5 s long but only 0.5 s were asked for"),
    ({"seconds": 0.3}, "the prime is 0.5 s long"),
    ({"seconds": 1.0, "prime_rate": 0}, "prime_rate must be a positive integer"),
])
def test_prime_errors_are_one_line(cascade, prime, kwargs, message):
    audio, rate = prime
    kwargs = {"prime": audio, "prime_rate": rate, **kwargs}
    with pytest.raises(InputError, match=message):
        cascade.generate("x", **kwargs)


def test_prime_shorter_than_a_frame_and_only_new_without_prime(cascade):
    with pytest.raises(InputError, match="shorter than one codec frame"):
        cascade.generate("x", seconds=1.0, prime=torch.zeros(1, 100), prime_rate=16000)
    with pytest.raises(InputError, match="only_new needs a prime"):
        cascade.generate("x", seconds=1.0, only_new=True)


# -- the seam: the first window continuing a long prime hears all of it ---------------------------


def spans(windows):
    return [(w.start, w.new, w.end) for w in windows]


def test_the_first_window_after_a_long_prime_hears_up_to_prime_context_of_it():
    """Past a window's length a prime used to be heard through its last ``overlap`` seconds only."""
    assert PRIME_CONTEXT == 10.0
    assert spans(plan_windows(6, 2.5, 0.5, prime=4)) == [(0, 4, 6)]  # all of it, then window - overlap more
    assert spans(plan_windows(20, 2.5, 0.5, prime=14)) == [(4, 14, 16), (15.5, 16, 18), (17.5, 18, 20)]
    assert spans(plan_windows(20, 10, 2, prime=12)) == [(2, 12, 20)]
    assert spans(plan_windows(40, 30, 20, prime=31)) == [(11, 31, 40)]  # never less than the overlap
    assert spans(plan_windows(8, 10, 5, prime=3)) == [(0, 3, 8)]  # a prime inside one window: as before


@pytest.fixture(scope="module")
def default():
    return Cascade.from_spec("default", registry=discover(environ={}))


def test_the_default_continues_a_long_prime_from_all_of_it(default, real_audio, monkeypatch):
    """The bundled default's windows are 2.5 s. A 3 s recording used to reach its stages as the
    last 0.5 s of codes, and the continuation went to the pipeline's own level for the prompt:
    the seam's jump followed that gap (docs/benchmarks/continuation_seam.md). Now every stage's
    written prefix in the first window is the whole prime, and the windows after it continue
    as long-form windows do."""
    audio, rate = real_audio("24k", seconds=3.0)
    calls = spy_decode(monkeypatch)
    result = default.generate("a lively song with drums, bass and guitar", seconds=5.5, seed=0, prime=audio[0],
                              prime_rate=rate, watermark=False)
    assert result.windows == ({"start": 0.0, "new": 3.0, "end": 5.0}, {"start": 4.5, "new": 5.0, "end": 5.5})
    with torch.inference_mode():
        heard = default.encode_prime(audio[0], rate)
    first = {name: prefix for name, model in default.models.items()
             for m, prefix, _ in calls[:len(default.models)] if m is model}
    assert torch.equal(first["semantic"], heard["semantic"]) and heard["semantic"].shape[2] == 75
    assert torch.equal(first["coarse"], heard["acoustic"][:, 0:4]) and heard["acoustic"].shape[2] == 150
    assert torch.equal(first["fine"], heard["acoustic"][:, 4:8])  # the default writes acoustic[0:4] and [4:8]


# -- decode_stage with a prefix ------------------------------------------------------------------


def _coarse_model():
    layout = StageLayout("coarse", (StreamSlice("semantic", 0, 1, 16, 25.0),), StreamSlice("acoustic", 0, 2, 32, 50.0),
                         ConditioningInfo("pooled", dim=8), "prefix")
    model = build_transformer(TransformerConfig(d_model=32, layers=2, heads=2, prefix_length=2), BuildContext(layout=layout))
    gen = torch.Generator().manual_seed(0)
    request = StageRequest(2, (torch.randint(0, 16, (2, 1, 4), generator=gen),),
                           Conditioning("pooled", torch.randn(2, 8, generator=gen)))
    return model.eval(), request


def greedy(logits, generator):
    return logits.argmax(dim=-1)


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_a_prefix_continues_the_sequence_it_came_from(scale):
    """Greedy decoding is deterministic: given its own first frames as a prefix, it writes the rest."""
    model, request = _coarse_model()
    full = decode_stage(model, request, 7, greedy, guidance_scale=scale)
    rest = decode_stage(model, request, 4, greedy, guidance_scale=scale, prefix=full[:, :, :3])
    assert torch.equal(rest, full[:, :, 3:])
    uncached = decode_stage(model, request, 4, greedy, guidance_scale=scale, prefix=full[:, :, :3], use_cache=False)
    assert torch.equal(uncached, rest)


def test_a_bad_prefix_is_refused():
    model, request = _coarse_model()
    with pytest.raises(ValueError, match="prefix must be"):
        decode_stage(model, request, 2, greedy, prefix=torch.zeros(2, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="prefix tokens must be integers"):
        decode_stage(model, request, 2, greedy, prefix=torch.full((2, 2, 4), 99))


# -- the command ---------------------------------------------------------------------------------


def test_generate_command_with_prime(cli, tiny_spec, tmp_path, prime):
    audio, rate = prime
    prime_file = tmp_path / "prime.wav"
    soundfile.write(prime_file, audio[0].numpy(), rate)
    out, new = tmp_path / "full.wav", tmp_path / "new.wav"
    code, _, stderr = cli("generate", "a cello", "-p", tiny_spec, "-s", "1.0", "--prime", prime_file, "-o", out,
                          "--no-watermark")
    assert code == 0, stderr
    assert "the audio starts with the prime (0.5 s, as decoded from its codec tokens)" in stderr
    assert soundfile.info(out).frames == 16000
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["prime"]["file"] == str(prime_file) and sidecar["prime"]["seconds"] == 0.5
    assert sidecar["prime"]["in_audio"] and "decoded from its codec tokens" in sidecar["prime"]["note"]
    code, _, stderr = cli("generate", "a cello", "-p", tiny_spec, "-s", "1.0", "--prime", prime_file, "--no-watermark",
                          "--only-new",
                          "-o", new, "-q")
    assert code == 0 and soundfile.info(new).frames == 8000
    full_audio, _ = soundfile.read(out)
    new_audio, _ = soundfile.read(new)
    assert (full_audio[8000:] == new_audio).all()


@pytest.mark.parametrize(("args", "message"), [
    (["--prime", "{tmp}/missing.wav"], "missing.wav: prime audio file not found"),
    (["--prime", "{tmp}/notaudio.wav"], "notaudio.wav: cannot read audio"),
    (["--prime", "{tmp}/prime.wav", "-s", "0.4"], "the prime is 0.5 s long, not shorter than --seconds (0.4 s)"),
    (["--only-new"], "--only-new needs --prime"),
])
def test_generate_command_prime_errors(cli, tiny_spec, tmp_path, prime, args, message):
    audio, rate = prime
    inputs = tmp_path / "in"
    inputs.mkdir()
    soundfile.write(inputs / "prime.wav", audio[0].numpy(), rate)
    (inputs / "notaudio.wav").write_text("not audio")
    out = tmp_path / "out"
    args = [a.replace("{tmp}", str(inputs)) for a in args]
    code, _, stderr = cli("generate", "x", "-p", tiny_spec, "-o", out / "x.wav", *args)
    assert code == 2 and message in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not out.exists()
