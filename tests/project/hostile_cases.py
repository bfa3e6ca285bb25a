"""The hostile-input corpus: what an attacker or a careless user hands to every subcommand.

Each :class:`Case` is a command line plus the files it needs, written into a fresh folder by
``setup``. Every case must end the way a user can act on: exit 2, one line on stderr naming
what is wrong, no traceback, no "internal error", no file left behind, within the time limit.
The corpus is generated here rather than stored, so a 5 MB spec or a 10-minute recording costs
no space in the repository.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import wave
from collections.abc import Callable
from pathlib import Path

import attrs
import numpy as np

from tiny_specs import TINY_SPEC

ROOT = Path(__file__).resolve().parents[1]
WAV_24K = ROOT / "data" / "test_24k.wav"


@attrs.frozen
class Case:
    """``argv`` may hold ``{d}``, the case's folder; ``setup(folder)`` writes the inputs."""

    name: str
    argv: tuple[str, ...]
    setup: Callable[[Path], None] | None = None
    file_size_limit: int | None = None  # bytes a file may grow to: a full disk, as the OS reports it

    def command(self, folder: Path) -> list[str]:
        return [a.replace("{d}", str(folder)) for a in self.argv]


# --- files the cases read --------------------------------------------------------------------

def text(name: str, content: str | bytes) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        data = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
        (folder / name).write_bytes(data)
    return write


def fifo(name: str) -> Callable[[Path], None]:
    return lambda folder: os.mkfifo(folder / name)


def symlink(name: str, target: str) -> Callable[[Path], None]:
    return lambda folder: os.symlink(target.replace("{d}", str(folder)), folder / name)


def folder(name: str) -> Callable[[Path], None]:
    return lambda root: (root / name).mkdir()


def tiny_spec(name: str = "tiny.yaml", edit: Callable[[str], str] = lambda s: s) -> Callable[[Path], None]:
    return text(name, edit(TINY_SPEC))


def wav(name: str, seconds: float, rate: int = 8000, sample_width: int = 1) -> Callable[[Path], None]:
    """A real PCM file of ``seconds`` of quiet noise (8-bit at 8 kHz keeps long ones small)."""
    def write(root: Path) -> None:
        frames = int(seconds * rate)
        noise = np.random.default_rng(0).integers(120, 136, size=frames, dtype=np.uint8)
        with wave.open(str(root / name), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(sample_width)
            out.setframerate(rate)
            out.writeframes(noise.tobytes() if sample_width == 1 else (noise.astype(np.int16) * 64).tobytes())
    return write


def midi(name: str, division: int = 480, tempo: int = 500000, notes: int = 4) -> Callable[[Path], None]:
    """A type-0 MIDI file written byte by byte, so its header can be as wrong as a case needs."""
    def write(root: Path) -> None:
        events = b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big")
        for i in range(notes):
            events += b"\x00\x90" + bytes([60 + i, 100]) + b"\x83\x60\x80" + bytes([60 + i, 0])
        events += b"\x00\xff\x2f\x00"
        header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, division)
        (root / name).write_bytes(header + b"MTrk" + struct.pack(">I", len(events)) + events)
    return write


def combine(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def run(root: Path) -> None:
        for step in steps:
            step(root)
    return run


def nested(depth: int, flow: bool) -> str:
    if flow:
        return "name: deep\nx: " + "[" * depth + "]" * depth + "\n"
    return "name: deep\n" + "".join(" " * i + f"k{i}:\n" for i in range(depth)) + " " * depth + "v: 1\n"


def billion_laughs(levels: int = 9, fan: int = 9) -> str:
    lines = ["a0: &a0 [lol]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]")
    return "name: bomb\n" + "\n".join(lines) + "\n"


def alias_doubling(levels: int = 24) -> str:
    lines = ["k0: &k0 {x: 1, y: 1}"]
    for i in range(1, levels + 1):
        lines.append(f"k{i}: &k{i} {{x: *k{i - 1}, y: *k{i - 1}}}")
    return "name: bomb\n" + "\n".join(lines) + "\n"


def many_keys(count: int) -> str:
    return "name: wide\n" + "".join(f"unknown_{i}: {i}\n" for i in range(count))


def replace(old: str, new: str) -> Callable[[str], str]:
    def edit(spec: str) -> str:
        assert old in spec, old
        return spec.replace(old, new, 1)
    return edit


def prompts(*lines: object, raw: bytes | None = None) -> Callable[[Path], None]:
    body = raw if raw is not None else "".join(
        (line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()
    return text("prompts.jsonl", body)


# --- the corpus ------------------------------------------------------------------------------

GEN = ("generate", "--pipeline", "{d}/tiny.yaml", "--quiet")

BAD_SPEC_TEXTS: dict[str, str | bytes] = {
    "billion-laughs": billion_laughs(),
    "alias-doubling-2^24": alias_doubling(),
    "recursive-alias": "name: loop\nx: &a [1, *a]\n",
    "recursive-alias-map": "name: loop\nx: &a {y: *a}\n",
    "merge-key-bomb": "name: m\n" + "".join(f"b{i}: &b{i} {{<<: *b{i - 1}, k{i}: 1}}\n" if i else "b0: &b0 {k: 1}\n"
                                           for i in range(200)),
    "nested-flow-5000": nested(5000, flow=True),
    "nested-flow-100k": nested(100_000, flow=True),
    "nested-block-3000": nested(3000, flow=False),
    "list-as-key": "name: k\n? [1, 2]\n: x\n",
    "map-as-key": "name: k\n? {a: 1}\n: x\n",
    "flow-map-key": "name: k\nstages: {[a]: 1}\n",
    "nul-bytes": b"name: x\x00\x00\ntokenizer: tiny-codec\n",
    "latin-1": "name: caf\xe9\n".encode("latin-1"),
    "utf-16": "name: x\n".encode("utf-16"),
    "random-bytes": bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)),
    "empty": b"",
    "only-comment": b"# nothing here\n",
    "top-level-list": b"- 1\n- 2\n",
    "top-level-scalar": b"42\n",
    "top-level-null": b"~\n",
    "bad-syntax": b"name: [unclosed\n",
    "tab-indent": b"name: x\n\tstages: []\n",
    "python-tag": b"name: !!python/object/apply:os.system ['touch pwned']\n",
    "custom-tag": b"name: !secret x\n",
    "custom-tag-map": b"stages: !!python/name:os.system {}\n",
    "binary-tag": b"name: !!binary aGVsbG8=\n",
    "huge-int-scalar": ("name: x\noutput: {seconds: " + "9" * 5000 + "}\n").encode(),
    "duplicate-key": b"name: a\nname: b\n",
    "wide-50k-keys": many_keys(50_000),
    "size-5MB": "name: big\ncomment: " + "x" * (5 * 1024 * 1024) + "\n",
    "long-line-key": "name: x\n" + "k" * 200_000 + ": 1\n",
    "plugin-name-100k": "name: x\ntokenizer: " + "t" * 100_000 + "\nstages: []\n",
}

SPEC_EDITS: dict[str, Callable[[str], str]] = {
    "guidance-nan": replace("guidance_scale: 2.0", "guidance_scale: .nan"),
    "guidance-inf": replace("guidance_scale: 2.0", "guidance_scale: .inf"),
    "guidance-neg-inf": replace("guidance_scale: 2.0", "guidance_scale: -.inf"),
    "guidance-1e30": replace("guidance_scale: 2.0", "guidance_scale: 1.0e+30"),
    "guidance-negative": replace("guidance_scale: 2.0", "guidance_scale: -3"),
    "guidance-string": replace("guidance_scale: 2.0", "guidance_scale: loud"),
    "dropout-nan": replace("heads: 2}", "heads: 2, dropout: .nan}"),
    "dropout-2": replace("heads: 2}", "heads: 2, dropout: 2}"),
    "rope-base-nan": replace("heads: 2}", "heads: 2, rope_base: .nan}"),
    "rope-base-zero": replace("heads: 2}", "heads: 2, rope_base: 0}"),
    "d-model-2^70": replace("d_model: 32", "d_model: 1180591620717411303424"),
    "d-model-1e6": replace("d_model: 32", "d_model: 1000000"),
    "d-model-zero": replace("d_model: 32", "d_model: 0"),
    "d-model-float": replace("d_model: 32", "d_model: 32.5"),
    "d-model-bool": replace("d_model: 32", "d_model: true"),
    "layers-1e9": replace("layers: 1", "layers: 1000000000"),
    "layers-negative": replace("layers: 1", "layers: -1"),
    "heads-not-dividing": replace("heads: 2", "heads: 3"),
    "vocab-1e9": replace("vocab_size: 32", "vocab_size: 1000000000"),
    "codebook-size-2^40": replace("codebook_size: 64", "codebook_size: 1099511627776"),
    "codebooks-1e6": replace("num_codebooks: 4", "num_codebooks: 1000000"),
    "top-k-zero": replace("{k: 8}", "{k: 0}"),
    "top-k-nan": replace("{k: 8}", "{k: .nan}"),
    "frame-rate-nan": replace("frame_rate: 25", "frame_rate: .nan"),
    "frame-rate-zero": replace("frame_rate: 25", "frame_rate: 0"),
    "seconds-nan": replace("seconds: 0.5", "seconds: .nan"),
    "seconds-inf": replace("seconds: 0.5", "seconds: .inf"),
    "seconds-1e9": replace("seconds: 0.5", "seconds: 1.0e+9"),
    "seconds-1e-9": replace("seconds: 0.5", "seconds: 1.0e-9"),
    "seconds-negative": replace("seconds: 0.5", "seconds: -1"),
    "window-nan": replace("seconds: 0.5", "seconds: 0.5, window: .nan"),
    "overlap-inf": replace("seconds: 0.5", "seconds: 0.5, overlap: .inf"),
    "overlap-over-window": replace("seconds: 0.5", "seconds: 0.5, window: 1, overlap: 2"),
    "hold-nan": replace("seconds: 0.5", "seconds: 0.5, hold: .nan"),
    "beat-inf": replace("seconds: 0.5", "seconds: 0.5, beat: .inf"),
    "unknown-plugin": replace("model: transformer", "model: transfromer"),
    "unknown-param": replace("heads: 2}", "heads: 2, head: 2}"),
    "weights-missing": replace("sampler: greedy", "sampler: greedy\n    weights: {d}/nope.safetensors"),
    "weights-name-too-long": replace("sampler: greedy", "sampler: greedy\n    weights: {d}/" + "w" * 300 + ".pt"),
    "weights-path-too-long": replace("sampler: greedy",
                                     "sampler: greedy\n    weights: {d}/" + "/".join(["d" * 200] * 30) + "/w.pt"),
    "weights-fifo": replace("sampler: greedy", "sampler: greedy\n    weights: {d}/pipe.safetensors"),
    "weights-dev-zero": replace("sampler: greedy", "sampler: greedy\n    weights: /dev/zero"),
    "weights-garbage": replace("sampler: greedy", "sampler: greedy\n    weights: {d}/garbage.safetensors"),
    "weights-pickle": replace("sampler: greedy", "sampler: greedy\n    weights: {d}/evil.pt"),
}


def _spec_with_paths(edit: Callable[[str], str]) -> Callable[[Path], None]:
    def write(root: Path) -> None:
        (root / "tiny.yaml").write_text(edit(TINY_SPEC).replace("{d}", str(root)))
        os.mkfifo(root / "pipe.safetensors")
        (root / "garbage.safetensors").write_bytes(b"\xff" * 64)
        (root / "evil.pt").write_bytes(evil_pickle(root / "pwned"))
    return write


class _Evil:
    """Unpickling this runs ``open(path, "w")``: a weights loader must refuse it."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def evil_pickle(target: Path) -> bytes:
    import pickle

    return pickle.dumps({"state_dict": _Evil(target)})


def spec_cases() -> list[Case]:
    cases = []
    for name, body in BAD_SPEC_TEXTS.items():
        cases.append(Case(f"validate/{name}", ("validate", "{d}/spec.yaml"), text("spec.yaml", body)))
        cases.append(Case(f"generate/{name}", ("generate", "-p", "{d}/spec.yaml", "x", "-q"), text("spec.yaml", body)))
    for name, edit in SPEC_EDITS.items():
        cases.append(Case(f"validate/spec-{name}", ("validate", "{d}/tiny.yaml"), _spec_with_paths(edit)))
        cases.append(Case(f"generate/spec-{name}", GEN + ("a cello",), _spec_with_paths(edit)))
    specials = {
        "fifo": ("{d}/spec.yaml", fifo("spec.yaml")),
        "dev-zero": ("/dev/zero", None),
        "dev-urandom": ("/dev/urandom", None),
        "folder": ("{d}/spec.yaml", folder("spec.yaml")),
        "symlink-loop": ("{d}/spec.yaml", symlink("spec.yaml", "{d}/spec.yaml")),
        "dangling-symlink": ("{d}/spec.yaml", symlink("spec.yaml", "{d}/gone.yaml")),
        "missing": ("{d}/nope.yaml", None),
        "name-too-long": ("{d}/" + "s" * 300 + ".yaml", None),
        "path-too-long": ("{d}/" + "/".join(["d" * 250] * 20) + "/s.yaml", None),
    }
    for name, (path, setup) in specials.items():
        cases.append(Case(f"validate/spec-{name}", ("validate", path), setup))
        cases.append(Case(f"generate/spec-{name}", ("generate", "-p", path, "x", "-q"), setup))
    for command in (("train", "--stage", "semantic", "--cache", "{d}", "--out", "{d}/run"),
                    ("prepare", "--data", "{d}", "--out", "{d}/cache"),
                    ("export", "--run", "semantic={d}/run", "--out", "{d}/export"),
                    ("fit-kmeans", "--data", "{d}/audio", "--out", "{d}/k.safetensors"),
                    ("evaluate", "--prompts", "{d}/p.jsonl", "--out", "{d}/eval")):
        for name in ("billion-laughs", "nested-flow-5000", "list-as-key", "nul-bytes"):
            cases.append(Case(f"{command[0]}/{name}", (command[0], "--pipeline", "{d}/spec.yaml") + command[1:],
                              combine(text("spec.yaml", BAD_SPEC_TEXTS[name]), text("p.jsonl", '{"prompt": "a", "mode": "major"}\n'),
                                      folder("audio"), wav("audio/a.wav", 1))))
        cases.append(Case(f"{command[0]}/spec-fifo", (command[0], "--pipeline", "{d}/spec.yaml") + command[1:],
                          combine(fifo("spec.yaml"), text("p.jsonl", '{"prompt": "a", "mode": "major"}\n'), folder("audio"),
                                  wav("audio/a.wav", 1))))
    return cases


def generate_cases() -> list[Case]:
    spec = tiny_spec()
    out = ("-o", "{d}/out.wav")
    argument_values = {
        "seconds-1e9": ("--seconds", "1e9"),
        "seconds-1e-9": ("--seconds", "1e-9"),
        "seconds-nan": ("--seconds", "nan"),
        "seconds-inf": ("--seconds", "inf"),
        "seconds-negative": ("--seconds", "-1"),
        "seconds-zero": ("--seconds", "0"),
        "seconds-word": ("--seconds", "long"),
        "seed-2^63": ("--seed", str(2 ** 63)),
        "seed-2^100": ("--seed", str(2 ** 100)),
        "seed-negative": ("--seed", "-1"),
        "seed-float": ("--seed", "1.5"),
        "window-nan": ("--window", "nan"),
        "window-1e-9": ("--window", "1e-9"),
        "overlap-inf": ("--overlap", "inf"),
        "hold-nan": ("--hold", "nan"),
        "hold-inf": ("--hold", "inf"),
        "beat-nan": ("--beat", "nan"),
        "bpm-zero": ("--bpm", "0"),
        "bpm-1e9": ("--bpm", "1e9"),
        "bpm-nan": ("--bpm", "nan"),
        "rerank-zero": ("--rerank", "0"),
        "rerank-1e9": ("--rerank", "1000000000", "--rerank-metric", "loudness"),
        "rerank-metric-unknown": ("--rerank", "2", "--rerank-metric", "nope"),
        "batch-size-zero": ("--batch-size", "0"),
        "device-cuda": ("--device", "cuda"),
        "device-cuda-7": ("--device", "cuda:7"),
        "device-foo-bar": ("--device", "foo:bar"),
        "device-cpu-negative": ("--device", "cpu:-1"),
        "device-mps": ("--device", "mps"),
        "device-meta": ("--device", "meta"),
        "output-format": ("-o", "{d}/out.mp9"),
        "output-no-suffix": ("-o", "{d}/out"),
        "output-folder": ("-o", "{d}"),
        "output-name-too-long": ("-o", "{d}/" + "o" * 300 + ".wav"),
        "output-path-too-long": ("-o", "{d}/" + "/".join(["d" * 250] * 20) + "/o.wav"),
        "output-under-a-file": ("-o", "{d}/tiny.yaml/out.wav"),
        "output-proc": ("-o", "/proc/cadenza-out.wav"),
        "output-sys": ("-o", "/sys/cadenza-out.wav"),
        "pipeline-unknown-preset": ("--pipeline", "no-such-preset"),
        "unknown-flag": ("--sconds", "3"),
        "melody-source-alone": ("--melody-source", "midi"),
        "only-new-alone": ("--only-new",),
        "out-without-prompts": ("--out", "{d}/batch"),
    }
    cases = [Case(f"generate/{name}", GEN + ("a cello",) + out + values, spec)
             for name, values in argument_values.items()]
    prompt_texts = {
        "prompt-empty": "",
        "prompt-blank": "   \t ",
        "prompt-lone-surrogate": "piano \udc80\udcff",
        "prompt-lone-high-surrogate": "piano \ud800",
        "prompt-200k": "piano " * 40_000,
        "prompt-control-chars": "\x1b[2J\x07\x08",
    }
    cases += [Case(f"generate/{name}", GEN + (prompt,) + out, spec) for name, prompt in prompt_texts.items()]
    cases.append(Case("generate/no-prompt", GEN + out, spec))
    audio_inputs = {
        "missing": None,
        "fifo": fifo("in.wav"),
        "folder": folder("in.wav"),
        "text": text("in.wav", "not audio\n"),
        "empty": text("in.wav", b""),
        "truncated-wav": lambda d: (d / "in.wav").write_bytes(WAV_24K.read_bytes()[:30]),
        "zero-frames": wav("in.wav", 0),
        "two-hours": wav("in.wav", 7200, rate=1000),
        "dev-zero": symlink("in.wav", "/dev/zero"),
    }
    for name, setup in audio_inputs.items():
        both = combine(spec, setup) if setup else spec
        cases.append(Case(f"generate/prime-{name}", GEN + ("a cello", "--prime", "{d}/in.wav") + out, both))
    melody_inputs = {
        **{k: v for k, v in audio_inputs.items() if k != "two-hours"},
        "midi-division-zero": midi("in.mid", division=0),
        "midi-smpte-zero": midi("in.mid", division=0x8000),
        "midi-tempo-zero": midi("in.mid", tempo=0),
        "midi-no-notes": midi("in.mid", notes=0),
        "midi-truncated": lambda d: (midi("full.mid")(d), (d / "in.mid").write_bytes((d / "full.mid").read_bytes()[:20]),
                                     (d / "full.mid").unlink()),
        "midi-garbage": text("in.mid", b"MThd" + b"\xff" * 40),
    }
    for name, setup in melody_inputs.items():
        target = "{d}/in.mid" if name.startswith("midi") else "{d}/in.wav"
        both = combine(spec, setup) if setup else spec
        cases.append(Case(f"generate/melody-{name}", ("generate", "--quiet", "a cello", "--melody", target) + out, both))
    cases.append(Case("generate/disk-full-wav", GEN + ("a cello", "-o", "{d}/out.wav"), spec, file_size_limit=2000))
    cases.append(Case("generate/disk-full-plot", GEN + ("a cello", "-o", "{d}/out.wav", "--plot"), spec,
                      file_size_limit=30_000))
    return cases


def batch_cases() -> list[Case]:
    spec = tiny_spec()
    run = GEN + ("--prompts", "{d}/prompts.jsonl", "--out", "{d}/batch")
    lines = {
        "seconds-1e9": [{"prompt": "a", "seconds": 1e9}],
        "seconds-1e-9": [{"prompt": "a", "seconds": 1e-9}],
        "seconds-infinity": ['{"prompt": "a", "seconds": Infinity}'],
        "seconds-nan": ['{"prompt": "a", "seconds": NaN}'],
        "seconds-1e999": ['{"prompt": "a", "seconds": 1e999}'],
        "seconds-string": [{"prompt": "a", "seconds": "ten"}],
        "seed-2^63": [{"prompt": "a", "seed": 2 ** 63}],
        "seed-2^200": [{"prompt": "a", "seed": 2 ** 200}],
        "seed-negative": [{"prompt": "a", "seed": -5}],
        "seed-float": [{"prompt": "a", "seed": 1.5}],
        "seed-bool": [{"prompt": "a", "seed": True}],
        "bpm-nan": ['{"prompt": "a", "bpm": NaN}'],
        "bpm-zero": [{"prompt": "a", "bpm": 0}],
        "prompt-missing": [{"seed": 1}],
        "prompt-number": [{"prompt": 5}],
        "prompt-empty": [{"prompt": ""}],
        "prompt-lone-surrogate": ['{"prompt": "a \\udc80"}'],
        "not-an-object": ["[1, 2, 3]"],
        "bad-json": ['{"prompt": "a",'],
        "deep-json": ["[" * 100_000 + "]" * 100_000],
        "huge-int-json": ['{"prompt": "a", "seed": ' + "9" * 5000 + "}"],
        "unknown-key": [{"prompt": "a", "sconds": 3}],
        "name-traversal": [{"prompt": "a", "name": "../../escaped"}],
        "name-absolute": [{"prompt": "a", "name": "/tmp/escaped"}],
        "name-too-long": [{"prompt": "a", "name": "n" * 300}],
        "name-empty": [{"prompt": "a", "name": ""}],
        "name-nul": ['{"prompt": "a", "name": "a\\u0000b"}'],
        "prime-fifo": [{"prompt": "a", "prime": "pipe.wav"}],
        "prime-missing": [{"prompt": "a", "prime": "gone.wav"}],
        "prime-dev-zero": [{"prompt": "a", "prime": "/dev/zero"}],
        "melody-fifo": [{"prompt": "a", "melody": "pipe.wav"}],
        "blank-lines-only": ["", "   "],
    }
    cases = [Case(f"batch/{name}", run, combine(spec, prompts(*body), fifo("pipe.wav"))) for name, body in lines.items()]
    files = {
        "prompts-fifo": fifo("prompts.jsonl"),
        "prompts-folder": folder("prompts.jsonl"),
        "prompts-missing": None,
        "prompts-latin-1": text("prompts.jsonl", '{"prompt": "caf\xe9"}\n'.encode("latin-1")),
        "prompts-nul": text("prompts.jsonl", b'{"prompt": "a"}\x00\n'),
        "prompts-random-bytes": text("prompts.jsonl", bytes(np.random.default_rng(2).integers(0, 256, 4096,
                                                                                                dtype=np.uint8))),
        "prompts-dev-zero": symlink("prompts.jsonl", "/dev/zero"),
        "prompts-dev-urandom": symlink("prompts.jsonl", "/dev/urandom"),
        "prompts-60MB": text("prompts.jsonl", b'{"prompt": "' + b"a" * (60 * 1024 * 1024) + b'"}\n'),
    }
    for name, setup in files.items():
        cases.append(Case(f"batch/{name}", run, combine(spec, setup) if setup else spec))
    cases.append(Case("batch/out-is-a-file", GEN + ("--prompts", "{d}/prompts.jsonl", "--out", "{d}/tiny.yaml"),
                      combine(spec, prompts({"prompt": "a"}))))
    cases.append(Case("batch/out-name-too-long", GEN + ("--prompts", "{d}/prompts.jsonl", "--out", "{d}/" + "o" * 300),
                      combine(spec, prompts({"prompt": "a"}))))
    cases.append(Case("batch/disk-full", run, combine(spec, prompts({"prompt": "a"})), file_size_limit=2000))
    return cases


def workflow_cases() -> list[Case]:
    spec = tiny_spec()
    manifest = "{d}/manifest.jsonl"
    cases = [
        Case("prepare/manifest-latin-1", ("prepare", "-p", "{d}/tiny.yaml", "--data", manifest, "--out", "{d}/cache"),
             combine(spec, text("manifest.jsonl", '{"audio": "caf\xe9.wav"}\n'.encode("latin-1")))),
        Case("prepare/manifest-fifo", ("prepare", "-p", "{d}/tiny.yaml", "--data", manifest, "--out", "{d}/cache"),
             combine(spec, fifo("manifest.jsonl"))),
        Case("prepare/manifest-dev-zero", ("prepare", "-p", "{d}/tiny.yaml", "--data", manifest, "--out", "{d}/cache"),
             combine(spec, symlink("manifest.jsonl", "/dev/zero"))),
        Case("prepare/manifest-bad-json", ("prepare", "-p", "{d}/tiny.yaml", "--data", manifest, "--out", "{d}/cache"),
             combine(spec, text("manifest.jsonl", b'{"audio": \n'))),
        Case("prepare/manifest-deep-json", ("prepare", "-p", "{d}/tiny.yaml", "--data", manifest, "--out", "{d}/cache"),
             combine(spec, text("manifest.jsonl", b"[" * 100_000 + b"]" * 100_000 + b"\n"))),
        Case("prepare/manifest-missing-audio", ("prepare", "-p", "{d}/tiny.yaml", "--data", manifest, "--out",
                                                "{d}/cache"),
             combine(spec, text("manifest.jsonl", b'{"audio": "gone.wav"}\n'))),
        Case("prepare/data-missing", ("prepare", "-p", "{d}/tiny.yaml", "--data", "{d}/none", "--out", "{d}/cache"),
             spec),
        Case("prepare/data-empty-folder", ("prepare", "-p", "{d}/tiny.yaml", "--data", "{d}/audio", "--out",
                                           "{d}/cache"), combine(spec, folder("audio"))),
        Case("prepare/clip-seconds-nan", ("prepare", "-p", "{d}/tiny.yaml", "--data", "{d}/audio", "--out",
                                          "{d}/cache", "--clip-seconds", "nan"),
             combine(spec, folder("audio"), lambda d: wav("audio/a.wav", 1)(d))),
        Case("prepare/valid-fraction-2", ("prepare", "-p", "{d}/tiny.yaml", "--data", "{d}/audio", "--out",
                                          "{d}/cache", "--valid-fraction", "2"),
             combine(spec, folder("audio"), lambda d: wav("audio/a.wav", 1)(d))),
        Case("train/stage-unknown", ("train", "-p", "{d}/tiny.yaml", "--stage", "nope", "--data", "{d}", "--out",
                                     "{d}/run"), spec),
        Case("train/lr-nan", ("train", "-p", "{d}/tiny.yaml", "--stage", "semantic", "--data", "{d}", "--out",
                              "{d}/run", "--lr", "nan"), spec),
        Case("train/steps-negative", ("train", "-p", "{d}/tiny.yaml", "--stage", "semantic", "--data", "{d}",
                                      "--out", "{d}/run", "--steps", "-5"), spec),
        Case("train/ema-decay-2", ("train", "-p", "{d}/tiny.yaml", "--stage", "semantic", "--data", "{d}", "--out",
                                   "{d}/run", "--ema-decay", "2"), spec),
        Case("train/seconds-inf", ("train", "-p", "{d}/tiny.yaml", "--stage", "semantic", "--data", "{d}", "--out",
                                   "{d}/run", "--seconds", "inf"), spec),
        Case("train/resume-pickle", ("train", "-p", "{d}/tiny.yaml", "--stage", "semantic", "--cache", "{d}/cache",
                                     "--out", "{d}/run", "--resume"), spec),
        Case("corpus/n-negative", ("corpus", "--n", "-1", "--seconds", "1", "--out", "{d}/c")),
        Case("corpus/seconds-nan", ("corpus", "--n", "1", "--seconds", "nan", "--out", "{d}/c")),
        Case("corpus/seconds-1e9", ("corpus", "--n", "1", "--seconds", "1e9", "--out", "{d}/c")),
        Case("corpus/out-is-a-file", ("corpus", "--n", "1", "--seconds", "1", "--out", "{d}/f"), text("f", "x")),
        Case("corpus/soundfont-missing", ("corpus", "--n", "1", "--seconds", "1", "--out", "{d}/c", "--soundfont",
                                          "{d}/none.sf2")),
        Case("evaluate/prompts-fifo", ("evaluate", "-p", "{d}/tiny.yaml", "--prompts", "{d}/p.jsonl", "--out",
                                       "{d}/e"), combine(spec, fifo("p.jsonl"))),
        Case("evaluate/prompts-latin-1", ("evaluate", "-p", "{d}/tiny.yaml", "--prompts", "{d}/p.jsonl", "--out",
                                          "{d}/e"), combine(spec, text("p.jsonl", '{"prompt": "\xe9"}\n'.encode("latin-1")))),
        Case("evaluate/seconds-nan", ("evaluate", "-p", "{d}/tiny.yaml", "--prompts", "{d}/p.jsonl", "--out",
                                      "{d}/e", "--seconds", "nan"), combine(spec, text("p.jsonl", '{"prompt": "a", "mode": "major"}\n'))),
        Case("bench/matrix-billion-laughs", ("bench", "{d}/m.yaml", "--out", "{d}/b"),
             text("m.yaml", billion_laughs())),
        Case("bench/matrix-fifo", ("bench", "{d}/m.yaml", "--out", "{d}/b"), fifo("m.yaml")),
        Case("bench/matrix-nested", ("bench", "{d}/m.yaml", "--out", "{d}/b"), text("m.yaml", nested(5000, True))),
        Case("bench/matrix-dev-zero", ("bench", "/dev/zero", "--out", "{d}/b")),
        Case("bench/matrix-list-key", ("bench", "{d}/m.yaml", "--out", "{d}/b"),
             text("m.yaml", BAD_SPEC_TEXTS["list-as-key"])),
        Case("export/run-missing", ("export", "-p", "{d}/tiny.yaml", "--run", "semantic={d}/none", "--out",
                                    "{d}/x"), spec),
        Case("export/run-no-equals", ("export", "-p", "{d}/tiny.yaml", "--run", "semantic", "--out", "{d}/x"), spec),
        Case("fit-kmeans/clusters-zero", ("fit-kmeans", "-p", "{d}/tiny.yaml", "--data", "{d}/audio", "--out",
                                          "{d}/k.safetensors", "--clusters", "0"),
             combine(spec, folder("audio"), lambda d: wav("audio/a.wav", 1)(d))),
        Case("fit-kmeans/data-fifo-file", ("fit-kmeans", "-p", "{d}/tiny.yaml", "--data", "{d}/audio", "--out",
                                           "{d}/k.safetensors"),
             combine(spec, folder("audio"), lambda d: os.mkfifo(d / "audio" / "a.wav"))),
        Case("new-plugin/name-traversal", ("new-plugin", "../escape", "--kind", "sampler", "--out", "{d}")),
        Case("new-plugin/name-too-long", ("new-plugin", "n" * 300, "--kind", "sampler", "--out", "{d}")),
        Case("new-plugin/name-empty", ("new-plugin", "", "--kind", "sampler", "--out", "{d}")),
        Case("new-plugin/name-keyword", ("new-plugin", "class", "--kind", "sampler", "--out", "{d}")),
        Case("new-plugin/out-is-a-file", ("new-plugin", "mine", "--kind", "sampler", "--out", "{d}/f"), text("f", "x")),
        Case("new-plugin/kind-unknown", ("new-plugin", "mine", "--kind", "vocoder", "--out", "{d}")),
        Case("new-plugin/kind-repeated", ("new-plugin", "mine", "--kind", "sampler", "--kind", "sampler",
                                          "--out", "{d}")),
        # demo: each is refused before the page is served (a case that served would outlive the time limit)
        Case("demo/port-zero", ("demo", "-p", "{d}/tiny.yaml", "--port", "0"), spec),
        Case("demo/port-not-a-number", ("demo", "-p", "{d}/tiny.yaml", "--port", "http"), spec),
        Case("demo/max-seconds-zero", ("demo", "-p", "{d}/tiny.yaml", "--max-seconds", "0"), spec),
        Case("demo/max-seconds-nan", ("demo", "-p", "{d}/tiny.yaml", "--max-seconds", "nan"), spec),
        Case("demo/pipeline-missing", ("demo", "-p", "{d}/none.yaml")),
        Case("demo/pipeline-fifo", ("demo", "-p", "{d}/m.yaml"), fifo("m.yaml")),
        Case("demo/pipeline-billion-laughs", ("demo", "-p", "{d}/m.yaml"), text("m.yaml", billion_laughs())),
        Case("demo/pipeline-unknown-component", ("demo", "-p", "{d}/tiny.yaml"),
             tiny_spec(edit=replace("model: transformer", "model: transfromer"))),
        Case("download/spec-billion-laughs", ("download", "{d}/m.yaml"), text("m.yaml", billion_laughs())),
        Case("download/spec-fifo", ("download", "{d}/m.yaml"), fifo("m.yaml")),
        Case("download/spec-missing", ("download", "{d}/none.yaml")),
        Case("download/unknown-component", ("download", "{d}/tiny.yaml"),
             tiny_spec(edit=replace("model: transformer", "model: transfromer"))),
        Case("download/revision-offline", ("download", "{d}/tiny.yaml", "--revision", "v9"),
             tiny_spec(edit=replace("model: transformer", "model: musicgen\n    weights: someone/nothing-here"))),
        Case("detect/fifo", ("detect", "{d}/pipe.wav"), fifo("pipe.wav")),
        Case("detect/dev-zero", ("detect", "/dev/zero")),
        Case("detect/missing", ("detect", "{d}/gone.wav")),
        Case("detect/empty-folder", ("detect", "{d}/empty"), folder("empty")),
        Case("detect/not-audio", ("detect", "{d}/notes.txt"), text("notes.txt", "hello")),
        Case("detect/truncated-wav", ("detect", "{d}/t.wav"),
             lambda d: (d / "t.wav").write_bytes(WAV_24K.read_bytes()[:30])),
        Case("detect/max-seconds-nan", ("detect", "{d}/a.wav", "--max-seconds", "nan"), wav("a.wav", 1)),
        Case("detect/unknown-watermark", ("detect", "{d}/a.wav", "--watermark", "invisible-ink"), wav("a.wav", 1)),
        Case("components/kind-unknown", ("components", "--kind", "nope")),
        Case("cli/unknown-command", ("frobnicate",)),
        Case("cli/no-command", ()),
    ]
    return cases


def all_cases() -> list[Case]:
    cases = spec_cases() + generate_cases() + batch_cases() + workflow_cases()
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    return cases


if __name__ == "__main__":  # list the corpus
    for case in all_cases():
        print(case.name, file=sys.stdout)
