"""``cadenza prepare``: clips, shards, resume, workers, conditioning and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile
import torch

import cadenza.plugins.workflows.prepare.prepare as prep
from cadenza.core.audio.io import load_audio, prepare
from cadenza.plugins.workflows.data_sources import list_items, split_of
from cadenza.core.errors import InputError
from cadenza.plugins.workflows.prepare.token_cache import CacheWriter, TokenCache
from cadenza.core.spec.validate import check_tree
from cadenza.core.spec.yaml_source import load_yaml
from tiny_specs import TINY_SPEC

CLIP = 1.0  # seconds; tiny-codec makes 50 frames of it, mel-kmeans 25
MULAN = ("{name: mulan, params: {n_mels: 32, patch_mels: 8, patch_frames: 8, clip_seconds: 2.0, audio_dim: 32, "
         "audio_layers: 1, audio_heads: 2, text_dim: 32, text_layers: 1, text_heads: 2, dim: 16, "
         "num_quantizers: 4, codebook_size: 32, output: pooled}}")
BYTE_POOLED = "{name: byte-text, params: {dim: 16, output: pooled}}"
# Source files: (name, recording, rate written, seconds, stereo) -> clips of CLIP seconds
FILES = [("a.wav", "24k", 24000, 2.6, False),   # 2 whole clips + a 0.6 s tail (kept: >= half a clip)
         ("b.flac", "48k", 48000, 1.3, True),   # 1 whole clip, stereo; the 0.3 s tail is dropped
         ("sub/c.wav", "24k", 16000, 2.0, False),  # 2 clips, already at the codec's rate
         ("d.ogg", "24k", 22050, 0.7, False),   # shorter than a clip: one 0.7 s clip
         ("e.wav", "24k", 24000, 0.3, False)]   # under half a clip: skipped as too short
CLIPS = {"a.wav": [1.0, 1.0, 0.6], "b.flac": [1.0], "sub/c.wav": [1.0, 1.0], "d.ogg": [0.7]}


def spec(conditioner: str = BYTE_POOLED) -> dict:
    text = TINY_SPEC.replace(BYTE_POOLED, conditioner)
    assert conditioner == BYTE_POOLED or text != TINY_SPEC
    return load_yaml(text)


@pytest.fixture(scope="module")
def data(tmp_path_factory, real_audio) -> Path:
    """A folder of real excerpts at several rates and layouts, plus a corrupt and an empty file."""
    from cadenza.core.audio.io import resample

    folder = tmp_path_factory.mktemp("prepare") / "music"  # a fixed name: splits hash it
    offset = 0.0
    for name, recording, rate, seconds, stereo in FILES:
        audio, sr = real_audio(recording)
        audio = audio[0, :, int(offset * sr): int((offset + seconds + 0.5) * sr)]
        audio = resample(audio, sr, rate)[:, : round(seconds * rate)]
        audio = audio if stereo else audio[:1]
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(folder / name, audio.T.numpy(), rate)
        offset += seconds
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 4)
    (folder / "empty.flac").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def tiny(registry):
    return check_tree(spec(), registry)


def run(pipeline, registry, data, out, **kwargs) -> dict:
    options = {"clip_seconds": CLIP, "valid_fraction": 0.5, "shard_size": 2, "batch_size": 2, "workers": 0,
               "progress": False, **kwargs}
    return prep.prepare_cache(pipeline, registry, data, out, **options)


@pytest.fixture(scope="module")
def baseline(tiny, registry, data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cache") / "base"
    run(tiny, registry, data, out)
    return out


def same_cache(a: Path, b: Path) -> None:
    index_a, index_b = json.loads((a / "index.json").read_text()), json.loads((b / "index.json").read_text())
    assert index_a == index_b
    cache_a, cache_b = TokenCache(a), TokenCache(b)
    for i in range(len(cache_a)):
        ta, tb = cache_a.load(i), cache_b.load(i)
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_cut_rule():
    assert prep.cut(25, 10, 1.0) == [(0, 10), (10, 10), (20, 5)]  # tail of half a clip: kept
    assert prep.cut(24, 10, 1.0) == [(0, 10), (10, 10)]  # shorter tail: dropped
    assert prep.cut(700, 1000, 1.0) == [(0, 700)]  # a short file: one short clip
    assert prep.cut(400, 1000, 1.0) == []  # under half a clip: too short
    assert prep.cut(1000, 1000, 10.0) == [(0, 1000)]  # a 1 s file with 10 s clips: one clip
    assert prep.cut(900, 1000, 10.0) == []


def test_folder_cache_shapes_and_report(baseline, data):
    cache = TokenCache(baseline)
    header = cache.header
    assert header["streams"]["acoustic"] == {"sample_rate": 16000, "channels": 1, "frame_rate": 50.0,
                                             "num_codebooks": 4, "codebook_size": 64, "dtype": "int16"}
    assert header["streams"]["semantic"] == {"sample_rate": 16000, "frame_rate": 25.0, "vocab_size": 32,
                                             "dtype": "int16"}
    assert header["conditioning"] == {"kind": "pooled", "dim": 16, "length": 1, "vocab_size": 0, "has_audio": False}
    assert header["clip_seconds"] == CLIP and header["spec"]["tokenizer"]["name"] == "tiny-codec"
    assert header["components"]["semantic_tokenizer"]["name"] == "mel-kmeans"
    got: dict[str, list[float]] = {}
    for i, clip in enumerate(cache.clips):
        name = Path(clip["source"]).relative_to(data).as_posix()
        got.setdefault(name, []).append(round(clip["seconds"], 3))
        assert clip["start"] == pytest.approx(CLIP * (len(got[name]) - 1))
        tensors = cache.load(i)
        assert set(tensors) == {"acoustic", "semantic"}  # byte-text embeds no audio; no captions here
        frames = round(clip["seconds"] * 50)
        assert tensors["acoustic"].shape == (4, frames) and tensors["acoustic"].dtype == torch.int16
        assert tensors["semantic"].shape == (-(-frames // 2),) and tensors["semantic"].dtype == torch.int16
        assert clip["frames"] == frames and clip["caption"] is None
    assert got == CLIPS
    assert [c["shard"] for c in cache.clips] == [0, 0, 1, 1, 2, 2, 3]  # 7 clips, 2 per shard, in item order
    report = json.loads((baseline / "report.json").read_text())
    reasons = {Path(s["source"]).name: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"corrupt.wav", "empty.flac", "e.wav"} and report["files"] == 7
    assert "cannot read audio" in reasons["corrupt.wav"] and "empty" in reasons["empty.flac"]
    assert reasons["e.wav"].startswith("too short (0.30 s")


def test_a_file_that_fails_to_decode_is_skipped_and_remembered(tiny, registry, real_audio, tmp_path, monkeypatch):
    """Its header reads, its samples do not: its clips are dropped (an empty shard), it stays in
    the report on resume, and it is not decoded again."""
    import numpy as np

    folder = tmp_path / "music"
    folder.mkdir()
    audio, rate = real_audio("24k", seconds=1.0)
    samples = audio[0, 0].numpy().astype(np.float32)
    soundfile.write(folder / "a.wav", samples, rate)
    soundfile.write(folder / "b.wav", np.where(np.arange(len(samples)) == 100, np.nan, samples), rate, subtype="FLOAT")
    soundfile.write(folder / "c.wav", samples[::-1].copy(), rate)
    summary = run(tiny, registry, folder, tmp_path / "cache", shard_size=1)
    assert summary["clips"] == 2 and summary["shards"] == 3
    assert [(Path(s["source"]).name, s["reason"]) for s in summary["skipped"]] == [
        ("b.wav", "audio contains NaN or infinite samples")]
    assert [c["shard"] for c in TokenCache(tmp_path / "cache").clips] == [0, 2]
    decoded = counting(monkeypatch)
    again = run(tiny, registry, folder, tmp_path / "cache", shard_size=1)
    assert decoded == [] and again["skipped"] == summary["skipped"]
    assert json.loads((tmp_path / "cache" / "report.json").read_text())["skipped"] == summary["skipped"]


def test_codes_equal_a_direct_tokenizer_call(baseline, tiny):
    """Training sees exactly the tokens the spec's own tokenizer gives for the same clip."""
    tokenizer = prep.build_component(tiny.tokenizer, "cpu")
    semantic = prep.build_component(tiny.semantic_tokenizer, "cpu")
    cache = TokenCache(baseline)
    for i, clip in enumerate(cache.clips):
        audio, rate = load_audio(clip["source"])
        start = round(clip["start"] * rate)
        piece = audio[None, :, start: start + round(clip["seconds"] * rate)]
        with torch.inference_mode():
            codes = tokenizer.encode(prepare(piece, rate, 16000, 1))[0]
            ids = semantic.tokenize(prepare(piece, rate, 16000, 1))[0]
        tensors = cache.load(i)
        assert torch.equal(tensors["acoustic"].long(), codes) and torch.equal(tensors["semantic"].long(), ids)


def test_splits_are_per_file_and_deterministic(baseline, data):
    cache = TokenCache(baseline)
    items = {str(item.path): item for item in list_items(data)}
    for clip in cache.clips:
        assert clip["split"] == split_of(items[clip["source"]], 0.5)
    assert {c["split"] for c in cache.clips} == {"train", "valid"}  # both sides at 0.5 on these files
    assert sorted(cache.split("train") + cache.split("valid")) == list(range(len(cache)))


def test_workers_give_the_same_cache(baseline, tiny, registry, data, tmp_path):
    run(tiny, registry, data, tmp_path / "two", workers=2)
    same_cache(baseline, tmp_path / "two")


class Stop(Exception):
    pass


def counting(monkeypatch) -> list[str]:
    decoded: list[str] = []

    def load(path):
        decoded.append(Path(path).name)
        return load_audio(path)

    monkeypatch.setattr(prep, "load_audio", load)
    return decoded


def test_resume_skips_finished_shards(baseline, tiny, registry, data, tmp_path, monkeypatch):
    out = tmp_path / "cache"
    original = CacheWriter.write_shard

    def write_then_stop(self, shard, clips):
        original(self, shard, clips)
        raise Stop  # interrupted right after the first shard

    with monkeypatch.context() as patch:
        patch.setattr(CacheWriter, "write_shard", write_then_stop)
        with pytest.raises(Stop):
            run(tiny, registry, data, out)
    assert sorted(p.name for p in out.glob("shard-*")) == ["shard-00000.json", "shard-00000.safetensors"]
    assert not (out / "index.json").exists()
    decoded = counting(monkeypatch)
    summary = run(tiny, registry, data, out)
    # shard 0 is a.wav's first two clips; its third clip is in shard 1, so a.wav is read again
    assert decoded == ["a.wav", "b.flac", "d.ogg", "c.wav"] and summary["shards_resumed"] == 1
    same_cache(baseline, out)
    # A lost shard in the middle: only the files of its clips are decoded.
    for file in out.glob("shard-00002.*"):
        file.unlink()
    decoded.clear()
    summary = run(tiny, registry, data, out)
    assert decoded == ["d.ogg", "c.wav"] and summary["shards_resumed"] == 3
    same_cache(baseline, out)
    decoded.clear()
    assert run(tiny, registry, data, out)["clips"] == 7 and decoded == []  # all done: nothing decoded


def test_resume_removes_the_temp_files_of_a_killed_write(baseline, tiny, registry, data, tmp_path, monkeypatch):
    """A kill inside an atomic write (benchmarks/kill_resume.py found one) leaves its hidden temp file;
    the resume removes it and leaves the user's own files alone."""
    out = tmp_path / "cache"
    original = CacheWriter.write_shard

    def write_then_stop(self, shard, clips):
        original(self, shard, clips)
        raise Stop

    with monkeypatch.context() as patch:
        patch.setattr(CacheWriter, "write_shard", write_then_stop)
        with pytest.raises(Stop):
            run(tiny, registry, data, out)
    # what atomic_path leaves when killed before its rename (names as tempfile.mkstemp makes them)
    leftovers = [".shard-00001.safetensors.k2j4x9.safetensors.tmp", ".shard-00001.json.a8d3jq.json.tmp",
                 ".skipped-00001.json.p0w1e2.json.tmp", ".index.json.7bn2m1.json.tmp"]
    for name in leftovers:
        (out / name).write_bytes(b"half a file")
    (out / ".notes.tmp").write_text("not prepare's")
    assert run(tiny, registry, data, out)["shards_resumed"] == 1
    assert not [name for name in leftovers if (out / name).exists()] and (out / ".notes.tmp").exists()
    same_cache(baseline, out)


def test_other_settings_do_not_resume(baseline, tiny, registry, data, tmp_path):
    out = tmp_path / "cache"
    run(tiny, registry, data, out)
    with pytest.raises(InputError, match="another spec, data or settings"):
        run(tiny, registry, data, out, clip_seconds=2.0)


def test_bad_settings_and_no_audio(tiny, registry, data, tmp_path):
    with pytest.raises(InputError, match="--clip-seconds"):
        run(tiny, registry, data, tmp_path / "x", clip_seconds=0)
    with pytest.raises(InputError, match="--shard-size"):
        run(tiny, registry, data, tmp_path / "x", shard_size=0)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.wav").write_bytes(b"junk")
    with pytest.raises(InputError, match="no usable audio"):
        run(tiny, registry, bad, tmp_path / "y")
    assert not (tmp_path / "y").exists()


def manifest(data: Path, tmp_path: Path) -> Path:
    rows = [{"audio": str(data / "a.wav"), "caption": "a calm solo piano", "mood": "calm"},
            {"audio": "b.flac", "caption": "pounding drums"},
            {"audio": str(data / "sub" / "c.wav")},
            {"audio": str(data / "corrupt.wav"), "caption": "never read"}]
    (tmp_path / "b.flac").write_bytes((data / "b.flac").read_bytes())  # a path relative to the manifest
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_mulan_audio_and_caption_conditioning(registry, data, tmp_path):
    pipeline = check_tree(spec(MULAN), registry)
    summary = run(pipeline, registry, manifest(data, tmp_path), tmp_path / "cache", batch_size=4)
    assert summary["clips"] == 6 and [Path(s["source"]).name for s in summary["skipped"]] == ["corrupt.wav"]
    cache = TokenCache(tmp_path / "cache")
    assert cache.header["conditioning"]["has_audio"] and "cond_audio" in cache.header["tensors"]
    mulan = prep.build_component(pipeline.conditioner, "cpu")
    for i, clip in enumerate(cache.clips):
        tensors = cache.load(i)
        assert tensors["cond_audio"].shape == (16,) and tensors["cond_audio"].dtype == torch.float32
        audio, rate = load_audio(clip["source"])
        start = round(clip["start"] * rate)
        direct = mulan.embed_audio(audio[None, :, start: start + round(clip["seconds"] * rate)], rate).values[0]
        assert torch.allclose(tensors["cond_audio"], direct, atol=1e-5)
        if clip["caption"] is None:
            assert "cond_text" not in tensors and Path(clip["source"]).name == "c.wav"
        else:
            assert tensors["cond_text"].shape == (16,)
            assert torch.allclose(tensors["cond_text"], mulan.embed_text([clip["caption"]]).values[0], atol=1e-5)
    assert cache.clips[0]["extras"] == {"mood": "calm"} and cache.clips[0]["caption"] == "a calm solo piano"


def test_sequence_captions_are_trimmed_with_a_mask(registry, data, tmp_path):
    pipeline = check_tree(spec("{name: byte-text, params: {dim: 16, output: sequence}}"), registry)
    run(pipeline, registry, manifest(data, tmp_path), tmp_path / "cache", shard_size=8, batch_size=8)
    cache = TokenCache(tmp_path / "cache")
    for i, clip in enumerate(cache.clips):
        tensors = cache.load(i)
        if clip["caption"] is None:
            assert "cond_text" not in tensors and "cond_text_mask" not in tensors
            continue
        length = len(clip["caption"].encode())
        assert tensors["cond_text"].shape == (length, 16) and tensors["cond_text_mask"].shape == (length,)
        assert tensors["cond_text_mask"].all()


def test_cli_end_to_end(cli, write_spec, data, tmp_path):
    spec_file = write_spec(TINY_SPEC, "tiny.yaml")
    out = tmp_path / "cache"
    code, stdout, stderr = cli("prepare", "--pipeline", spec_file, "--data", data, "--out", out, "--clip-seconds", "1",
                               "--shard-size", "3", "--workers", "0")
    assert code == 0, stderr
    assert stdout.count("\n") == 1 and stdout.startswith("prepare: 7 clips (train ") and "3 shards" in stdout
    assert "skipped 3 of 7 files" in stderr and "corrupt.wav" in stderr and "Traceback" not in stderr
    assert len(TokenCache(out)) == 7
    code, stdout, stderr = cli("prepare", "-p", spec_file, "--data", tmp_path / "missing", "--out", tmp_path / "o")
    assert code != 0 and stdout == "" and stderr.count("\n") == 1 and "missing" in stderr
    assert "Traceback" not in stderr
