"""Golden outputs of the bundled default: the same prompt and seed give the same WAV bytes.

These hashes were recorded before the code was reorganised into its current folders; a change
that moves code around must leave them as they are. A change that means to alter what the
default produces (new weights, a new decode rule) updates them deliberately, saying why.
Each case goes through ``cadenza generate`` the way a user runs it, including the long-form
windows, the beat grid, piece memory, a MIDI melody and a continued recording.
"""

from __future__ import annotations

import hashlib

import mido
import pytest
import soundfile

from conftest import DATA

pytestmark = pytest.mark.slow

# name -> (arguments after the prompt, sha256 of the WAV written)
GOLDEN = {
    "cello": (["a slow, dark cello drone", "--seconds", "3", "--seed", "0"],
                 "8d14ba30a640dc1b2e7815c33a303c40f66f1c70c94fe12ea5f4fb8da32bb928"),
    "arpeggio-bpm": (["an upbeat synth arpeggio", "--seconds", "6", "--seed", "3", "--bpm", "120"],
                 "d8846fe64f41a48d232d708dd56a36c1a4412214c2b66258004695aa9e97db85"),
    "piano-hold": (["a calm piano piece", "--seconds", "6", "--seed", "1", "--hold", "4"],
                 "83dcd9e1e2a216473e290d6a2e3e89c5423312d0c5c58ea59755bf62384c5671"),
    "flute-melody": (["a soft flute", "--seconds", "3", "--seed", "2", "--melody", "{tune}"],
                 "03fc7d1c284dd3a4db5d5679b5dc702f78d8bcf7a8fc8af77393df38e29d621d"),
    "prime": (["a lively guitar", "--seconds", "4", "--seed", "0", "--prime", "{prime}"],
                 "75fb990998545dca4457eb4a255370ba54b57c82ea2176e81bded34822576f27"),
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
def test_default_generates_the_recorded_bytes(name, cli, tmp_path):
    args, expected = GOLDEN[name]
    tune = tmp_path / "tune.mid"
    write_tune(tune)
    prime = tmp_path / "prime.wav"
    recording, rate = soundfile.read(DATA / "test_24k.wav", frames=2 * 24000, dtype="float32")
    soundfile.write(prime, recording, rate)
    args = [a.format(tune=tune, prime=prime) for a in args]
    out = tmp_path / f"{name}.wav"
    code, _, err = cli("generate", *args, "-o", out, "--quiet")
    assert code == 0, err
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert digest == expected, f"{name}: {digest}"
