"""Golden outputs of the bundled default: the same prompt and seed give the same WAV bytes.

Each case goes through ``cadenza generate`` the way a user runs it, including the long-form
windows, the beat grid, piece memory, a MIDI melody and a continued recording. A change that
moves code around must leave these hashes as they are; a change that means to alter what the
default produces (new weights, a new decode rule) updates them deliberately, saying why.

Float results depend on the CPU: MKL and ATen pick kernels by instruction set (AVX2, AVX-512,
AMX), and a last-bit difference changes a sampled token. So each case runs in a fresh process
with reproducible numerics (MKL's conditional numerical reproducibility, ATen's portable
kernels, one thread), which give the same bytes on any x86-64 machine. The hashes were
first recorded that way from the code before its reorganisation (f324ada), which matched them;
they were re-recorded once, deliberately, when the third default shipped (MiniLM caption
conditioning, a grouped 4 x 2 codec and retrained stages: new weights, new bytes; its coarse
stage guided at 2, not 3, so that a MIDI melody is followed).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import mido
import pytest
import soundfile

from conftest import DATA

pytestmark = pytest.mark.slow

REPRODUCIBLE = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1"}

# name -> (arguments after the prompt, sha256 of the WAV written)
GOLDEN = {
    "cello": (["a slow, dark cello drone", "--seconds", "3", "--seed", "0"],
              "b3972bddf50d5cd28e5e683dd7a99348e9a351addd3a1ad6cc22050b4d667818"),
    "arpeggio-bpm": (["an upbeat synth arpeggio", "--seconds", "6", "--seed", "3", "--bpm", "120"],
                     "c73a746d6a153fdd4245adf1c3953226eba165fc38ea6d6fc090d91f4b5b2676"),
    "piano-hold": (["a calm piano piece", "--seconds", "6", "--seed", "1", "--hold", "4"],
                   "efdab8e61382c713fa395557f7f5313235fc87549dd9a78ed80b7a886754d104"),
    "flute-melody": (["a soft flute", "--seconds", "3", "--seed", "2", "--melody", "{tune}"],
                     "d0c662ab2d710b60f53d8f64baf3716b571e350b0144de248dabbae0a29ad698"),
    "prime": (["a lively guitar", "--seconds", "4", "--seed", "0", "--prime", "{prime}"],
              "e351fe97db58d317f70eea007862a9a040c4db94712cce0751928438f7a90cbd"),
}


def write_tune(path) -> None:
    """A short melody at 120 BPM (one quarter note per half second) as a one-track MIDI file."""
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000, time=0)])
    for pitch in (67, 72, 71, 69, 64, 65, 62, 60):
        track.append(mido.Message("note_on", note=pitch, velocity=100, time=0))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=480))
    song = mido.MidiFile(ticks_per_beat=480)
    song.tracks.append(track)
    song.save(str(path))


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_default_generates_the_recorded_bytes(name, tmp_path):
    args, expected = GOLDEN[name]
    tune = tmp_path / "tune.mid"
    write_tune(tune)
    prime = tmp_path / "prime.wav"
    recording, rate = soundfile.read(DATA / "test_24k.wav", frames=2 * 24000, dtype="float32")
    soundfile.write(prime, recording, rate)
    args = [a.format(tune=tune, prime=prime) for a in args]
    out = tmp_path / f"{name}.wav"
    command = [sys.executable, "-m", "cadenza.core.cli.main", "generate", *args, "-o", str(out), "--quiet",
               "--no-watermark", "--loudness", "none"]  # these pin what the cascade generates; the mark
    # and the loudness stage (tests/core/test_loudness.py) have tests of their own
    done = subprocess.run(command, env={**os.environ, **REPRODUCIBLE}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert digest == expected, f"{name}: {digest}"
