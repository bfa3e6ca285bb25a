"""Long-form generation: windows that continue each other's tail at token level, flat memory."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import pytest
import soundfile
import torch

from cadenza.core.engine import decode as decode_module
from cadenza.core.engine.cascade import Cascade
from cadenza.core.engine.decode import decode_stage
from cadenza.core.errors import InputError
from cadenza.core.engine.longform import Window, check_window, decode_chunked, plan_windows, window_frames
from cadenza.registry import discover

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cascade(tmp_path_factory):
    from tiny_specs import TINY_SPEC

    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return Cascade.from_spec(path, registry=discover(environ={}))


# -- the schedule ---------------------------------------------------------------------------------


def spans(windows):
    return [(w.start, w.new, w.end) for w in windows]


def test_windows_start_overlap_seconds_before_what_exists():
    assert spans(plan_windows(25, 10, 5)) == [(0, 0, 10), (5, 10, 15), (10, 15, 20), (15, 20, 25)]
    assert spans(plan_windows(8, 10, 5)) == [(0, 0, 8)]  # fits in one window: one pass
    assert spans(plan_windows(8, 10, 5, prime=3)) == [(0, 3, 8)]  # the whole prime is the context
    assert spans(plan_windows(18, 10, 4, prime=3)) == [(0, 3, 10), (6, 10, 16), (12, 16, 18)]
    # a long prime: the first window hears up to PRIME_CONTEXT (10 s) of it, so the stages keep its level
    assert spans(plan_windows(20, 10, 2, prime=12)) == [(2, 12, 20)]
    assert spans(plan_windows(20, 10, 0)) == [(0, 0, 10), (10, 10, 20)]


def test_window_frames_align_streams_at_different_rates():
    window = Window(1, start=0.6, new=1.0, end=1.6)
    assert window_frames(window, have=25, frame_rate=25.0) == (15, 15)  # semantic: frames 15..25 are context
    assert window_frames(window, have=50, frame_rate=50.0) == (30, 30)  # acoustic: frames 30..50, both from 0.6 s


@pytest.mark.parametrize(("window", "overlap", "message"), [
    (0, None, "window must be a positive number"), (float("nan"), None, "window must be a positive number"),
    (4, -1, "overlap must be a number of seconds >= 0"), (4, 4, r"overlap \(4 s\) must be shorter than the window"),
])
def test_bad_window_or_overlap(window, overlap, message):
    with pytest.raises(InputError, match=message):
        check_window(window, overlap)


def test_defaults_are_ten_seconds_or_the_specs_length_and_half_overlap(cascade):
    assert check_window(None, None) == (10.0, 5.0)
    assert cascade.default_window == 10.0


def windowed_cascade(tmp_path, output: str) -> Cascade:
    from tiny_specs import TINY_SPEC

    path = tmp_path / "windowed.yaml"
    path.write_text(TINY_SPEC.replace("output: {seconds: 0.5}", f"output: {output}"))
    return Cascade.from_spec(path, registry=discover(environ={}))


def test_the_specs_window_and_overlap_are_the_defaults(tmp_path):
    cascade = windowed_cascade(tmp_path, "{seconds: 0.5, window: 1.0, overlap: 0.25}")
    assert cascade.default_window == 1.0
    result = cascade.generate("a slow piano", seconds=2.5, seed=1)
    assert result.window == 1.0 and result.overlap == 0.25 and len(result.windows) == 3
    assert cascade.generate("a slow piano", seconds=0.8, seed=1).windows == ()  # shorter than the window: one pass
    given = cascade.generate("a slow piano", seconds=2.5, seed=1, window=2.0)  # another window: half of it overlaps
    assert given.window == 2.0 and given.overlap == 1.0
    assert cascade.generate("a slow piano", seconds=2.5, seed=1, overlap=0.5).overlap == 0.5
    from cadenza.core.spec.schema import spec_to_dict

    assert spec_to_dict(cascade.pipeline.spec)["output"] == {"seconds": 0.5, "peak_dbfs": None, "loudness": -14.0, "window": 1.0,
                                                             "overlap": 0.25}


def test_the_specs_window_without_overlap_overlaps_by_half(tmp_path):
    result = windowed_cascade(tmp_path, "{seconds: 0.5, window: 1.0}").generate("x", seconds=1.6, seed=0)
    assert result.window == 1.0 and result.overlap == 0.5


@pytest.mark.parametrize(("output", "message"), [
    ("{window: 0}", "window must be a positive number of seconds or null, got 0"),
    ("{window: 2, overlap: -1}", "overlap must be a number of seconds >= 0 or null, got -1"),
    ("{window: 2, overlap: 2}", "overlap (2 s) must be shorter than the window (2 s)"),
    ("{overlap: 1}", "overlap needs a window: set output.window too"),
])
def test_bad_window_in_a_spec_is_one_line_naming_file_and_line(tmp_path, output, message):
    from cadenza.core.errors import SpecError

    with pytest.raises(SpecError) as caught:
        windowed_cascade(tmp_path, output)
    assert str(caught.value).endswith(f"windowed.yaml:30: {message}")


def test_generate_command_uses_the_specs_window(cli, tiny_spec, tmp_path):
    spec = tmp_path / "windowed.yaml"
    spec.write_text(Path(tiny_spec).read_text().replace("output: {seconds: 0.5}",
                                                         "output: {seconds: 0.5, window: 1.0, overlap: 0.5}"))
    out = tmp_path / "w.wav"
    code, _, stderr = cli("generate", "a drone", "-p", spec, "-s", "2", "-o", out)
    assert code == 0, stderr
    assert "long-form generation in 3 windows of 1 s overlapping by 0.5 s" in stderr
    code, _, stderr = cli("generate", "x", "-p", spec, "--overlap", "1", "-o", tmp_path / "x.wav")
    assert code == 2 and "--overlap (1 s) must be shorter than the window (1 s)" in stderr
    assert not (tmp_path / "x.wav").exists()


# -- generation -----------------------------------------------------------------------------------


def record(monkeypatch, cascade):
    """Every decode_stage call as (stage name, prefix, new tokens)."""
    names = {id(model): name for name, model in cascade.models.items()}
    calls = []

    def spy(model, request, num_frames, sampler, **kwargs):
        tokens = decode_stage(model, request, num_frames, sampler, **kwargs)
        calls.append((names[id(model)], kwargs.get("prefix"), tokens))
        return tokens

    monkeypatch.setattr(decode_module, "decode_stage", spy)
    return calls


def test_long_form_gives_the_requested_length_in_windows(cascade):
    result = cascade.generate(["a slow piano", "drums"], seconds=2.5, seed=[1, 2], window=1.0, overlap=0.4)
    assert result.audio.shape == (2, 1, 40000)
    assert result.tokens["acoustic"].shape == (2, 4, 125) and result.tokens["semantic"].shape == (2, 1, 63)
    assert len(result.windows) == 4 and result.window == 1.0 and result.overlap == 0.4
    assert result.windows[1] == {"start": 0.6, "new": 1.0, "end": 1.6}


def test_each_window_continues_the_tail_of_the_last_at_every_stage(cascade, monkeypatch):
    calls = record(monkeypatch, cascade)
    result = cascade.generate("a slow piano", seconds=2.2, seed=5, window=1.0, overlap=0.4)
    stages = ["semantic", "coarse", "fine"]
    assert [name for name, _, _ in calls] == stages * 3
    for stage in stages:
        runs = [(prefix, new) for name, prefix, new in calls if name == stage]
        assert runs[0][0] is None  # the first window starts from nothing
        for (prev_prefix, prev_new), (prefix, _) in itertools.pairwise(runs):
            previous = prev_new if prev_prefix is None else torch.cat([prev_prefix, prev_new], dim=2)
            rate = 25 if stage == "semantic" else 50
            assert prefix.shape[2] == round(0.4 * rate)
            assert torch.equal(prefix, previous[:, :, -prefix.shape[2]:])  # the overlap is reused, not redone
    # and the kept tokens are each window's new part, in order
    coarse = torch.cat([new for name, _, new in calls if name == "coarse"], dim=2)
    assert torch.equal(coarse, result.tokens["acoustic"][:, 0:2])


def test_the_first_window_is_a_plain_generation_of_its_length(cascade):
    long = cascade.generate("a slow piano", seconds=2.0, seed=3, window=1.0, overlap=0.5)
    short = cascade.generate("a slow piano", seconds=1.0, seed=3)
    assert torch.equal(long.tokens["acoustic"][:, :, :50], short.tokens["acoustic"])
    assert torch.equal(long.tokens["semantic"][:, :, :25], short.tokens["semantic"])


def test_long_form_continues_a_prime(cascade):
    prime = cascade.generate("x", seconds=0.6, seed=8).audio[0]
    result = cascade.generate("y", seconds=2.0, seed=1, window=1.0, overlap=0.5, prime=prime, prime_rate=16000,
                              only_new=True)
    with torch.inference_mode():
        codes = cascade.tokenizer.encode(prime[None])
    assert torch.equal(result.tokens["acoustic"][:, :, :30], codes)
    assert result.audio.shape == (1, 1, round(1.4 * 16000)) and result.windows[0]["new"] == 0.6


def test_memory_is_per_window_not_per_length(cascade, monkeypatch):
    """Every KV cache and every codec decode call is as big for 6 windows as for 3."""
    monkeypatch.setattr("cadenza.core.engine.cascade.DECODE_MARGIN", 0.2)  # decode chunks: 0.8 s + 0.2 s each side
    sizes = {"cache": [], "decode": []}
    originals = {name: model.prefill for name, model in cascade.models.items()}
    decode = cascade.tokenizer.decode

    def measure(seconds):
        sizes["cache"].clear(), sizes["decode"].clear()
        cascade.generate("a slow piano", seconds=seconds, seed=0, window=0.8, overlap=0.4)
        return max(sizes["cache"]), max(sizes["decode"])

    try:
        for name, prefill in originals.items():
            def counted(request, max_new_tokens, _prefill=prefill):
                state = _prefill(request, max_new_tokens)
                sizes["cache"].append(sum(t.numel() * t.element_size() for kv in state.cache for t in kv))
                return state
            cascade.models[name].prefill = counted
        cascade.tokenizer.decode = lambda codes: (sizes["decode"].append(codes.shape[2]), decode(codes))[1]
        three, six = measure(1.6), measure(2.8)  # 3 and 6 windows
    finally:
        for name, prefill in originals.items():
            del cascade.models[name].prefill
        del cascade.tokenizer.decode
    assert three[0] == six[0]  # the largest KV cache: one window's
    assert three[1] <= 60 and six[1] <= 60  # codes are decoded in chunks of 40 frames + up to 10 on each side


def test_chunked_decode_matches_one_decode(cascade):
    codes = torch.randint(0, 64, (2, 4, 230), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        whole = cascade.tokenizer.decode(codes)
        chunks = decode_chunked(cascade.tokenizer, codes, 50.0, 16000, chunk_frames=40, margin_frames=10)
    assert chunks.shape == whole.shape
    torch.testing.assert_close(chunks, whole, atol=1e-5, rtol=0)


def test_generate_command_long_form(cli, tiny_spec, tmp_path):
    out = tmp_path / "long.wav"
    code, _, stderr = cli("generate", "a drone", "-p", tiny_spec, "-s", "2.5", "--window", "1", "--overlap", "0.25",
                          "-o", out)
    assert code == 0, stderr
    assert "long-form generation in 3 windows of 1 s overlapping by 0.25 s" in stderr
    assert soundfile.info(out).frames == 40000
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["long_form"]["window"] == 1.0 and len(sidecar["long_form"]["windows"]) == 3


@pytest.mark.parametrize(("args", "message"), [
    (["--window", "0"], "--window must be a positive number of seconds"),
    (["--window", "2", "--overlap", "2"], "--overlap (2 s) must be shorter than the window (2 s)"),
    (["--overlap", "12"], "--overlap (12 s) must be shorter than the window (10 s)"),
])
def test_generate_command_bad_window(cli, tiny_spec, tmp_path, args, message):
    code, _, stderr = cli("generate", "x", "-p", tiny_spec, "-o", tmp_path / "x.wav", *args)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == [tiny_spec]


def test_memory_benchmark_runs(capsys, tmp_path):
    """The benchmark's measuring child (in this process: the numbers are meaningless, the code path is not)."""
    spec = importlib.util.spec_from_file_location("longform_memory", ROOT / "benchmarks" / "longform_memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--child", "--seconds", "1.5", "--window", "1", "--threads", "1"])
    run = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert run["windows"] == 2 and run["largest_kv_cache_mb"] > 0 and run["peak_rss_mb"] > 0
    text = bench.markdown({"command": "python benchmarks/longform_memory.py", "pipeline": "tiny-random", "threads": 1,
                           "machine": {"cpu_count": 2, "machine": "x86_64", "processor": "", "torch": "2",
                                       "python": "3.11", "load_average": [0, 0, 0]}, "runs": [run], "notes": []})
    assert text.startswith("# Long-form generation memory") and "| 1.5 | long-form (1 s windows" in text
