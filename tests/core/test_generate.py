"""`cadenza generate` and Cascade.generate: audio + sidecar, reproducible, and safe on bad input."""

from __future__ import annotations

import json
import types

import pytest
import soundfile

from cadenza.core.engine.cascade import Cascade
from cadenza.core.errors import InputError
from cadenza.core.hookspecs import hookimpl
from cadenza.registry import discover


@pytest.fixture(scope="module")
def cascade(tmp_path_factory):
    from tiny_specs import TINY_SPEC

    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return Cascade.from_spec(path, registry=discover(environ={}))


def test_cascade_runs_every_stage_and_decodes(cascade):
    result = cascade.generate(["a slow piano", "fast drums"], seconds=0.5, seed=3)
    assert result.audio.shape == (2, 1, 8000) and result.sample_rate == 16000
    assert result.audio.abs().max() <= 1.0
    assert result.tokens["semantic"].shape == (2, 1, 13)  # 25 Hz, rounded up to cover 0.5 s
    assert result.tokens["acoustic"].shape == (2, 4, 25)  # 50 Hz, 4 codebooks
    assert int(result.tokens["acoustic"].max()) < 64 and int(result.tokens["semantic"].max()) < 32
    assert set(result.stage_seconds) == {"semantic", "coarse", "fine", "decode"}


def test_same_seed_same_tokens_different_seed_different(cascade):
    a = cascade.generate("a slow piano", seconds=0.5, seed=1)
    b = cascade.generate("a slow piano", seconds=0.5, seed=1)
    c = cascade.generate("a slow piano", seconds=0.5, seed=2)
    assert all((a.tokens[k] == b.tokens[k]).all() for k in a.tokens)
    assert (a.audio == b.audio).all()
    assert not (a.tokens["acoustic"] == c.tokens["acoustic"]).all()


def test_the_prompt_reaches_the_stages(cascade):
    a = cascade.generate("a slow piano", seconds=0.5, seed=1)
    b = cascade.generate("an angry distorted guitar riff", seconds=0.5, seed=1)
    assert not (a.tokens["semantic"] == b.tokens["semantic"]).all()


@pytest.mark.parametrize(("prompts", "seconds", "message"), [
    ("", 1.0, "prompt 1 is empty"), (["ok", "  "], 1.0, "prompt 2 is empty"), ([], 1.0, "no prompt"),
    ("ok", -1.0, "positive number of seconds"), ("ok", float("nan"), "positive number of seconds"),
])
def test_bad_inputs_raise_one_line_errors(cascade, prompts, seconds, message):
    with pytest.raises(InputError, match=message):
        cascade.generate(prompts, seconds=seconds)


def test_observer_hooks_see_every_stage(tiny_spec):
    seen = []
    observer = types.SimpleNamespace(
        before_stage=hookimpl(lambda stage, request: seen.append(("before", stage.name, request.batch_size))),
        after_stage=hookimpl(lambda stage, tokens, seconds: seen.append(("after", stage.name, tuple(tokens.shape)))),
    )
    registry = discover(environ={})
    registry.add_plugin(observer, "observer")
    Cascade.from_spec(tiny_spec, registry=registry).generate("x", seconds=0.2)
    assert seen == [("before", "semantic", 1), ("after", "semantic", (1, 1, 5)),
                    ("before", "coarse", 1), ("after", "coarse", (1, 2, 10)),
                    ("before", "fine", 1), ("after", "fine", (1, 2, 10))]


def test_stage_errors_reach_observers(tiny_spec):
    errors = []
    registry = discover(environ={})
    registry.add_plugin(types.SimpleNamespace(on_stage_error=hookimpl(lambda stage, error: errors.append((stage.name, error)))), "obs")
    cascade = Cascade.from_spec(tiny_spec, registry=registry)

    def explode(*args, **kwargs):
        raise RuntimeError("stage blew up")

    cascade.models["coarse"].prefill = explode
    with pytest.raises(RuntimeError, match="stage blew up"):
        cascade.generate("x", seconds=0.2)
    assert [name for name, _ in errors] == ["coarse"]


def test_generate_command_writes_audio_and_sidecar(cli, tiny_spec, tmp_path):
    out = tmp_path / "songs" / "cello.wav"
    code, stdout, stderr = cli("generate", "a slow, dark cello drone", "--pipeline", tiny_spec,
                               "--seconds", "0.5", "--seed", "7", "-o", out)
    assert code == 0, stderr
    assert "random, untrained weights" in stderr and "expect noise, not music" in stderr
    audio, rate = soundfile.read(out)
    assert rate == 16000 and audio.shape == (8000,)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["prompt"] == "a slow, dark cello drone" and sidecar["seed"] == 7 and sidecar["seconds"] == 0.5
    assert sidecar["spec"]["stages"][1]["writes"] == "acoustic[0:2]"
    by_slot = {c["slot"]: c for c in sidecar["components"]}
    assert by_slot["tokenizer"]["name"] == "tiny-codec" and by_slot["tokenizer"]["distribution"] == "cadenza"
    assert by_slot["stages.coarse.model"]["version"] and by_slot["stages.coarse.sampler"]["name"] == "top-k"
    assert sorted(p.name for p in out.parent.iterdir()) == ["cello.json", "cello.wav"]  # no temp files left


def test_plot_writes_a_spectrogram_beside_each_clip(cli, tiny_spec, tmp_path):
    from PIL import Image

    out = tmp_path / "drone.wav"
    assert cli("generate", "a drone", "-p", tiny_spec, "-s", "0.5", "-o", out, "--plot", "-q")[0] == 0
    assert json.loads(out.with_suffix(".json").read_text())["plot"] == "drone.png"
    with Image.open(out.with_suffix(".png")) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] > 100
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "one", "name": "one"}\n{"prompt": "two", "name": "two"}\n')
    assert cli("generate", "--prompts", prompts, "--out", tmp_path / "batch", "-p", tiny_spec, "-s", "0.5",
               "--plot", "-q")[0] == 0
    assert sorted(p.name for p in (tmp_path / "batch").glob("*.png")) == ["one.png", "two.png"]


def test_same_seed_gives_the_same_file(cli, tiny_spec, tmp_path):
    for name, seed in [("a.wav", 5), ("b.wav", 5), ("c.wav", 6)]:
        assert cli("generate", "drone", "-p", tiny_spec, "-s", "0.5", "--seed", seed, "-o", tmp_path / name, "-q")[0] == 0
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    assert (tmp_path / "a.wav").read_bytes() != (tmp_path / "c.wav").read_bytes()


@pytest.mark.parametrize(("args", "message"), [
    (["", "-s", "1"], "prompt 1 is empty"),
    (["x", "-s", "-2"], "positive number of seconds"),
    (["x", "--seed", "-1"], "--seed must be an integer from 0 to 2^63-1"),
    (["x", "-p", "no-such-preset"], "no such spec file or pipeline preset (presets: default, musicgen-large, musicgen-medium, musicgen-melody, musicgen-small, tiny-musicgen, tiny-random)"),
    (["x", "-o", "{tmp}/out.mp3"], "unsupported audio format '.mp3'"),
])
def test_generate_command_bad_input(cli, tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out.wav")]
    code, stdout, stderr = cli("generate", *args)
    assert code != 0
    assert message in stderr and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_unreadable_weights_file_is_one_line(cli, tiny_spec, tmp_path):
    weights = tmp_path / "broken-codec"
    weights.mkdir()
    (weights / "config.json").write_text('{"component": "tiny-codec", "config": {"num_codebooks": 4, "codebook_size": 64}}')
    (weights / "model.safetensors").write_bytes(b"\x00garbage")
    spec = tiny_spec.read_text().replace("tokenizer: {name: tiny-codec,", f"tokenizer: {{name: tiny-codec, weights: {weights},")
    tiny_spec.write_text(spec)
    out = tmp_path / "x.wav"
    code, _, stderr = cli("generate", "x", "-p", tiny_spec, "-o", out, "-q")
    assert code != 0 and "model.safetensors" in stderr and len(stderr.strip().splitlines()) == 1
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_invalid_spec_lists_problems_without_traceback(cli, write_spec, tmp_path):
    bad = write_spec("tokenizer: tiny-codec\nstages:\n  - role: coarse\n    model: transformr\n    writes: acoustic\n")
    code, _, stderr = cli("generate", "x", "-p", bad, "-o", tmp_path / "y.wav")
    assert code == 2 and stderr.strip() == f"{bad}:4: unknown stage model 'transformr'; available: musicgen, musicgen-melody, transformer"


def test_random_pipeline_says_it_is_random(cli, tmp_path):
    code, _, stderr = cli("generate", "a slow, dark cello drone", "-p", "tiny-random", "-s", "0.3", "-o", tmp_path / "d.wav")
    assert code == 0 and "pipeline 'tiny-random' runs with random, untrained weights" in stderr


@pytest.mark.slow
def test_default_pipeline_is_trained_and_says_nothing_about_noise(cli, tmp_path):
    code, _, stderr = cli("generate", "a slow, dark cello drone", "-s", "1", "-o", tmp_path / "d.wav")
    assert code == 0 and "random" not in stderr and (tmp_path / "d.wav").exists()


def test_save_writes_the_clip_and_the_sidecar_the_command_line_writes(cascade, tmp_path, cli, tiny_spec):
    result = cascade.generate(["a slow piano", "fast drums"], seconds=0.5, seed=[4, 5])
    path = result.save(tmp_path / "piano.wav", plot=True)
    second = result.save(tmp_path / "drums.flac", row=1)
    audio, rate = soundfile.read(path, always_2d=True)
    assert rate == result.sample_rate and audio.shape[0] == result.audio.shape[-1]
    assert soundfile.read(second)[0].shape[0] == result.audio.shape[-1]
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["prompt"] == "a slow piano" and sidecar["seed"] == 4 and sidecar["plot"] == "piano.png"
    assert json.loads(second.with_suffix(".json").read_text())["batch"] == {"size": 2, "row": 1}
    assert path.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sidecar["spec"]["name"] == "test-tiny" and sidecar["components"] and sidecar["levels"]["gain_db"] != 0
    assert cli("generate", "a slow piano", "-p", tiny_spec, "-o", tmp_path / "cli.wav", "-q")[0] == 0
    assert set(json.loads((tmp_path / "cli.json").read_text())) == set(sidecar) - {"batch", "plot"}
    for bad, message in (({"row": 2}, "row must be an index from 0 to 1"), ({"path": tmp_path / "x.mp3"}, "unsupported")):
        with pytest.raises(InputError, match=message):
            result.save(**{"path": tmp_path / "x.wav", **bad})
