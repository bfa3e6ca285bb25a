"""`cadenza fit-kmeans` end to end on real clips, its one-line errors, and its frame sampler."""

import itertools
import json
import os
import types

import attrs
import pytest
import soundfile
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from cadenza.core.engine.cascade import Cascade
from cadenza.plugins.workflows.fit_kmeans.command import Reservoir
from cadenza.core.hookspecs import hookimpl
from cadenza.core.types import SemanticInfo
from cadenza.core.spec.validate import load_pipeline
from cadenza.registry import discover, set_registry

SPEC = """\
semantic_tokenizer:
  name: {name}
  weights: {weights}
  params: {{{params}}}
tokenizer: {{name: tiny-codec, params: {{num_codebooks: 2, codebook_size: 32, channels: 8, latent_dim: 16}}}}
stages:
  - {{name: sem, role: semantic, model: transformer, params: {{d_model: 32, layers: 1, heads: 2}}, writes: semantic}}
  - {{name: ac, role: coarse, model: transformer, params: {{d_model: 32, layers: 1, heads: 2}}, reads: [semantic], writes: acoustic}}
"""
HUBERT = "vocab_size: 16, hidden_size: 32, num_layers: 2, num_heads: 2, intermediate_size: 64"


def spec_text(name="hubert", weights="random", params=HUBERT) -> str:
    return SPEC.format(name=name, weights=weights, params=params)


@pytest.fixture(scope="module")
def clips(tmp_path_factory, real_audio):
    """Three short real clips (24 kHz mono, 48 kHz stereo, FLAC in a subfolder), a corrupt WAV
    and a text file that is not audio at all."""
    folder = tmp_path_factory.mktemp("clips")
    mono, mono_rate = real_audio("24k")
    stereo, stereo_rate = real_audio("48k")
    (folder / "nested").mkdir()
    soundfile.write(folder / "a.wav", mono[0, 0, : mono_rate].numpy(), mono_rate)
    soundfile.write(folder / "b.wav", stereo[0, :, 2 * stereo_rate: 3 * stereo_rate].T.numpy(), stereo_rate)
    soundfile.write(folder / "nested" / "c.flac", mono[0, 0, 5 * mono_rate: 6 * mono_rate].numpy(), mono_rate)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    (folder / "notes.txt").write_text("not audio")
    return folder


def test_fit_kmeans_end_to_end(cli, clips, write_spec, real_audio, tmp_path):
    spec = write_spec(spec_text())
    out = tmp_path / "km" / "centroids.safetensors"
    code, stdout, stderr = cli("fit-kmeans", "-p", spec, "--data", clips, "--out", out, "--epochs", "3")
    assert code == 0, stderr
    summary = stdout.splitlines()[0]
    assert "3 files read, 1 skipped" in summary and "broken.wav" in summary and "notes.txt" not in summary
    assert f"kmeans: {out.resolve()}" in stdout and "vocab_size: 16" in stdout
    centroids = load_file(str(out))["centroids"]
    assert centroids.shape == (16, 32) and torch.isfinite(centroids).all()
    with safe_open(str(out), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["tokenizer"] == "hubert" and meta["layer"] == "2" and meta["feature_dim"] == "32"
    assert int(meta["frames"]) == int(meta["frames_seen"]) and 140 <= int(meta["frames"]) <= 150  # 3 s at 50 Hz
    assert [p.name for p in out.parent.iterdir()] == ["centroids.safetensors"]  # no temp files left

    fitted = write_spec(spec_text(params=HUBERT + f", kmeans: {out}"), "fitted.yaml")
    registry = discover(environ={})
    assert load_pipeline(fitted, registry).semantic_tokenizer.info.vocab_size == 16
    tokenizer = Cascade.from_spec(fitted, registry=registry).semantic_tokenizer
    assert torch.equal(tokenizer.centroids, centroids)
    audio, rate = real_audio("24k", seconds=1.0)
    ids = tokenizer.tokenize(audio, rate)
    assert ids.shape == (1, 49) and int(ids.max()) < 16 and len(ids.unique()) > 2


def test_same_seed_same_centroids_and_max_frames(cli, clips, write_spec, tmp_path):
    spec = write_spec(spec_text())
    paths = [tmp_path / f"{n}.safetensors" for n in "abc"]
    for path, seed in zip(paths, (1, 1, 2)):
        args = ["--clusters", "4", "--max-frames", "60", "--seed", seed, "--epochs", "2"]
        assert cli("fit-kmeans", "-p", spec, "--data", clips, "-o", path, *args)[0] == 0
    a, b, c = (load_file(str(p))["centroids"] for p in paths)
    assert a.shape == (4, 32) and torch.equal(a, b) and not torch.equal(a, c)
    with safe_open(str(paths[0]), framework="pt") as handle:
        assert handle.metadata()["frames"] == "60" and int(handle.metadata()["frames_seen"]) > 60


def test_mel_kmeans_gets_a_weights_folder(cli, clips, write_spec, tmp_path):
    spec = write_spec(spec_text(name="mel-kmeans", params="vocab_size: 8, n_mels: 16"))
    out = tmp_path / "mel.safetensors"
    code, stdout, stderr = cli("fit-kmeans", "-p", spec, "--data", clips, "-o", out, "--clusters", "12")
    assert code == 0, stderr
    folder = tmp_path / "mel"
    assert f"weights: {folder.resolve()}" in stdout
    fitted = write_spec(spec_text(name="mel-kmeans", weights=folder, params="n_mels: 16"), "fitted.yaml")
    resolved = load_pipeline(fitted, discover(environ={})).semantic_tokenizer
    assert resolved.info.vocab_size == 12  # from the saved config, not the spec's default


@pytest.mark.parametrize(("setup", "message"), [
    ("empty", "no audio files found"),
    ("corrupt", "no usable audio: 0 files read, 1 skipped as unreadable, empty or too short (x.wav)"),
    ("no-semantic", "the spec has no semantic_tokenizer to fit"),
    ("clusters", "--clusters must be >= 1"),
])
def test_one_line_errors(cli, write_spec, tmp_path, clips, setup, message):
    data = tmp_path / "data"
    data.mkdir()
    spec = write_spec(spec_text())
    args = []
    if setup == "corrupt":
        (data / "x.wav").write_bytes(b"garbage")
    elif setup == "no-semantic":
        data = clips
        spec = write_spec("tokenizer: tiny-codec\nstages:\n  - {role: coarse, model: transformer, writes: acoustic}\n")
    elif setup == "clusters":
        args = ["--clusters", "0"]
    out = tmp_path / "out.safetensors"
    code, _, stderr = cli("fit-kmeans", "-p", spec, "--data", data, "-o", out, *args)
    assert code != 0 and message in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1 and not out.exists()


@attrs.frozen
class NoFeaturesConfig:
    def describe(self, weights):
        return SemanticInfo(16000, 50.0, 8)


def test_tokenizer_without_features(cli, clips, write_spec, tmp_path):
    plugin = types.SimpleNamespace(register_semantic_tokenizers=hookimpl(lambda register: register(
        "opaque", lambda config, context: types.SimpleNamespace(tokenize=lambda audio: audio), config=NoFeaturesConfig)))
    registry = discover(environ={})
    registry.add_plugin(plugin, "opaque-plugin")
    set_registry(registry)
    spec = write_spec(spec_text(name="opaque", params=""))
    code, _, stderr = cli("fit-kmeans", "-p", spec, "--data", clips, "-o", tmp_path / "o.safetensors")
    assert code == 2 and "'opaque' has no features(audio, sample_rate) method" in stderr
    assert len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("name", "hub_id"), [("hubert", "facebook/hubert-base-ls960"),
                                              ("w2v-bert", "facebook/w2v-bert-2.0")])
def test_offline_default_weights_via_cli(cli, clips, write_spec, tmp_path, monkeypatch, name, hub_id):
    import huggingface_hub.constants

    monkeypatch.setenv("CADENZA_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    spec = write_spec(f"semantic_tokenizer: {name}\n" + spec_text().split("\n", 4)[4])
    code, _, stderr = cli("fit-kmeans", "-p", spec, "--data", clips, "-o", tmp_path / "o.safetensors")
    assert code == 2 and hub_id in stderr and "offline" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_reservoir_is_a_bounded_seeded_uniform_sample():
    def sample(seed, blocks=(7, 50, 1, 300, 42)):
        reservoir = Reservoir(64, seed)
        start = 0
        for size in blocks:
            reservoir.add(torch.arange(start, start + size).float()[:, None])
            start += size
        return reservoir

    a, b = sample(0), sample(0)
    assert a.seen == 400 and a.rows.shape == (64, 1) and torch.equal(a.rows, b.rows)
    assert len(a.rows.unique()) == 64 and not torch.equal(a.rows, sample(1).rows)
    means = torch.stack([sample(seed).rows.mean() for seed in range(40)])
    assert abs(float(means.mean()) - 199.5) < 15  # uniform over 0..399, not biased to early or late rows
    small = Reservoir(100, 0)
    small.add(torch.ones(10, 3))
    assert small.rows.shape == (10, 3) and small.seen == 10


def test_manifest_as_data(cli, clips, write_spec, tmp_path):
    """A .jsonl manifest (paths relative to it) selects files, e.g. a corpus's train split."""
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps({"audio": os.path.relpath(p, tmp_path)}) + "\n"
                                for p in (clips / "a.wav", clips / "nested" / "c.flac")))
    out = tmp_path / "c.safetensors"
    code, stdout, stderr = cli("fit-kmeans", "-p", write_spec(spec_text()), "--data", manifest, "-o", out,
                               "--clusters", "4", "--epochs", "2")
    assert code == 0, stderr
    assert "2 files read, 0 skipped" in stdout
    with safe_open(str(out), framework="pt") as handle:
        assert 95 <= int(handle.metadata()["frames"]) <= 100  # 2 s at 50 Hz


def test_codec_needs_fittable_codebooks(cli, clips, write_spec, tmp_path):
    code, _, stderr = cli("fit-kmeans", "-p", write_spec(spec_text()), "--component", "tokenizer",
                          "--data", clips, "-o", tmp_path / "o.safetensors")
    assert code == 2 and "tokenizer 'tiny-codec' has no features, with_codebooks methods" in stderr
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / "o.safetensors").exists()


def test_fit_residual_each_codebook_reduces_the_error():
    from cadenza.plugins.workflows.fit_kmeans.command import fit_residual
    from cadenza.core.quantize.kmeans import assign

    points = torch.randn(2000, 6, generator=torch.Generator().manual_seed(0)) * torch.tensor([4, 3, 2, 1, 1, 1.0])
    books = fit_residual(points, 3, 16, batch_size=512, epochs=4, seed=0)
    assert books.shape == (3, 16, 6) and torch.equal(books, fit_residual(points, 3, 16, batch_size=512, epochs=4,
                                                                          seed=0))
    residual, errors = points.clone(), [points.pow(2).sum(-1).mean()]
    for book in books:
        residual -= book[assign(residual, book)]
        errors.append(residual.pow(2).sum(-1).mean())
    assert all(later < 0.8 * earlier for earlier, later in itertools.pairwise(errors)), errors
