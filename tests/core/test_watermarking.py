"""Every generated file is marked by default, the sidecar says how, and ``cadenza detect`` finds it.

The watermark itself (its robustness, its null distribution) is tested beside its plugin; this
pins the wiring: the cascade marks what it returns on every path, the spec and ``--no-watermark``
turn it off, the sidecar records name, key id and payload, and ``detect`` reads any file list
without a traceback.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from cadenza.core.engine.cascade import Cascade
from cadenza.core.engine.watermarking import pipeline_payload
from cadenza.core.errors import SpecError
from tiny_specs import TINY_SPEC


def generate(cli, spec, out, *extra):
    code, _, err = cli("generate", "a calm piano piece", "-p", spec, "-o", out, "--seconds", "2", "-q", *extra)
    assert code == 0, err
    return json.loads(out.with_suffix(".json").read_text())


def test_generated_files_are_marked_and_detect_finds_the_pipeline(cli, tiny_spec, tmp_path):
    sidecar = generate(cli, tiny_spec, tmp_path / "marked.wav")
    payload = f"0x{pipeline_payload('test-tiny'):08x}"
    assert sidecar["watermark"]["name"] == "spread-spectrum" and sidecar["watermark"]["payload"] == payload
    assert len(sidecar["watermark"]["key_id"]) == 8
    code, out, err = cli("detect", tmp_path / "marked.wav")
    assert code == 0 and err == ""
    assert out.startswith(f"{tmp_path / 'marked.wav'}: watermarked (spread-spectrum, p=") and payload in out


def test_no_watermark_and_a_spec_without_one_write_unmarked_files(cli, tiny_spec, write_spec, tmp_path):
    assert generate(cli, tiny_spec, tmp_path / "raw.wav", "--no-watermark")["watermark"] is None
    unmarked = write_spec(TINY_SPEC.replace("output: {seconds: 0.5}", "output: {seconds: 0.5, watermark: none}"),
                          "unmarked.yaml")
    assert generate(cli, unmarked, tmp_path / "spec.wav")["watermark"] is None
    code, out, _ = cli("detect", tmp_path / "raw.wav", tmp_path / "spec.wav", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["marked"] for r in rows] == [False, False]


def test_the_python_api_marks_too(registry, tiny_spec):
    cascade = Cascade.from_spec(tiny_spec, registry)
    assert cascade.generate(["drums"], seconds=1.0).watermark["name"] == "spread-spectrum"
    assert cascade.generate(["drums"], seconds=1.0, watermark=False).watermark is None


def test_an_unknown_watermark_is_a_spec_problem(registry, write_spec):
    from cadenza.core.spec.validate import load_pipeline

    bad = write_spec(TINY_SPEC.replace("output: {seconds: 0.5}", "output: {seconds: 0.5, watermark: invisible-ink}"))
    with pytest.raises(SpecError, match=r"spec.yaml:\d+: unknown watermark 'invisible-ink'"):
        load_pipeline(bad, registry)


def test_detect_reports_each_file_and_fails_only_for_unreadable_ones(cli, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    soundfile.write(folder / "short.wav", np.zeros(1600, dtype="float32"), 16000)  # 0.1 s
    soundfile.write(folder / "silence.wav", np.zeros((32000, 1), dtype="float32"), 16000)
    noise = np.random.default_rng(0).normal(0, 0.1, (24000, 8)).astype("float32")
    soundfile.write(folder / "eight.wav", noise, 24000)
    (folder / "notes.txt").write_text("not audio")
    code, out, err = cli("detect", folder)
    assert code == 2 and "Traceback" not in out + err
    assert [line.split(": ")[0] for line in out.splitlines()] == [str(folder / n) for n in
                                                                   ("eight.wav", "short.wav", "silence.wav")]
    assert all("not watermarked" in line for line in out.splitlines())
    assert err.strip().splitlines() == [f"{folder / 'notes.txt'}: cannot read: cannot read audio "
                                        f"(Error opening {str(folder / 'notes.txt')!r}: Format not recognised.)"]
