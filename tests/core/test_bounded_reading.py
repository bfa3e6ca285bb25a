"""What a spec, prompts file or recording can cost to read is bounded before it is paid.

The hostile-input corpus (tests/project/test_hostile_inputs.py) drives these through the
command line; here the limits themselves are pinned: each refuses at its bound, with the line.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import soundfile

from cadenza.core.audio.io import load_audio
from cadenza.core.errors import InputError, SpecError
from cadenza.core.files.user_text import read_user_text
from cadenza.core.spec.yaml_source import YamlLimits, load_yaml, load_yaml_file


def test_values_are_counted_with_aliases_expanded_without_expanding_them():
    doubling = "k0: &k0 [1, 1]\n" + "".join(f"k{i}: &k{i} [*k{i - 1}, *k{i - 1}]\n" for i in range(1, 40))
    start = time.monotonic()
    with pytest.raises(SpecError, match="more than 100,000 values once aliases are expanded"):
        load_yaml(doubling, "bomb.yaml")  # 2^40 values if expanded
    assert time.monotonic() - start < 1.0
    small = YamlLimits(max_values=9)
    assert load_yaml("a: &a [1, 2]\nb: *a\n", limits=small) == {"a": [1, 2], "b": [1, 2]}  # 9 values: the map, 2 keys, 2 lists of 2
    with pytest.raises(SpecError, match="s.yaml:1: .*more than 9 values"):
        load_yaml("a: &a [1, 2]\nb: *a\nc: 3\n", "s.yaml", limits=small)


def test_depth_is_limited_while_composing_and_through_aliases():
    with pytest.raises(SpecError, match="s.yaml:3: invalid YAML: nested deeper than 3 levels"):
        load_yaml("a:\n  b:\n    c:\n      d: 1\n", "s.yaml", limits=YamlLimits(max_depth=3))
    assert load_yaml("a:\n  b: 1\n", limits=YamlLimits(max_depth=3)) == {"a": {"b": 1}}
    with pytest.raises(SpecError, match="contains it"):
        load_yaml("x: &a [1, *a]\n")


def test_keys_are_plain_values():
    with pytest.raises(SpecError, match="s.yaml:2: invalid YAML: a key must be a plain value, not a list"):
        load_yaml("name: k\n? [1, 2]\n: x\n", "s.yaml")


def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "spec.yaml")
    with pytest.raises(SpecError, match=r"spec.yaml:1: the spec is a FIFO \(named pipe\), not a file"):
        load_yaml_file(tmp_path / "spec.yaml")


def test_size_and_encoding_are_checked_with_the_byte_offset(tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"x" * 1025)
    with pytest.raises(InputError, match="larger than"):
        read_user_text(big, "prompts file", max_bytes=1024)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"prompt": "a"}\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"latin.jsonl:2: the prompts file is not UTF-8 text \(byte 31: 0xe9\)"):
        read_user_text(latin, "prompts file", max_bytes=1024)
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbfname: x\n")
    assert read_user_text(bom, "spec", 1024) == "name: x\n"


def test_audio_is_decoded_only_as_far_as_asked(tmp_path):
    path = tmp_path / "long.wav"
    soundfile.write(path, np.zeros(8000 * 60, dtype="float32"), 8000)  # one minute
    audio, rate = load_audio(path, max_seconds=2.5)
    assert rate == 8000 and audio.shape == (1, 20000)
    assert load_audio(path)[0].shape == (1, 480000)
    os.mkfifo(tmp_path / "pipe.wav")
    with pytest.raises(InputError, match="the melody file is a FIFO"):
        load_audio(tmp_path / "pipe.wav", what="melody file")
