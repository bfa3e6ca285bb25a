"""Rendering ``cadenza corpus`` songs to audio with the FluidSynth command line.

FluidSynth and a General MIDI SoundFont are found at run time: the binary on ``PATH`` (or
``CADENZA_FLUIDSYNTH``), the SoundFont from ``CADENZA_SOUNDFONT`` or else the Debian/Ubuntu
locations (``/usr/share/sounds/sf2/``, ``/usr/share/soundfonts/``). When either is missing
the error is one line naming the apt packages (``fluidsynth timgm6mb-soundfont``).

Each song is written as a MIDI file and rendered offline (``fluidsynth -ni -F out.wav -r RATE
-g GAIN SOUNDFONT song.mid``, reverb and chorus on, as FluidSynth's defaults) to 32-bit float
stereo, then trimmed (with a 10 ms fade-out) or zero-padded to exactly the requested length
and averaged to mono (``channels=1``, the default) or kept stereo (``channels=2``). The gain
is fixed, never normalised per clip, so the dynamics attribute stays audible as level.
FluidSynth's rendering is deterministic: the same MIDI file and SoundFont give the same samples.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cadenza.core.errors import CadenzaError

APT_PACKAGES = "fluidsynth timgm6mb-soundfont"
INSTALL_HINT = f"install them with `sudo apt-get install -y {APT_PACKAGES}`"
SOUNDFONT_DIRS = ("/usr/share/sounds/sf2", "/usr/share/soundfonts", "/usr/share/sounds/sf3")
# Preferred SoundFonts, best first (FluidR3 sounds better; TimGM6mb is small and what setup.sh installs).
PREFERRED_SOUNDFONTS = (
    "FluidR3_GM.sf2", "MuseScore_General.sf2", "TimGM6mb.sf2", "default-GM.sf2", "default.sf2",
    "MuseScore_General.sf3", "FluidR3_GM.sf3", "default-GM.sf3",
)
# Loading only the samples a song uses halves the start-up with big SoundFonts (same output);
# SDL's dummy driver spares FluidSynth probing sound cards it will not use.
GAIN = 0.6  # FluidSynth master gain: loud clips average about -20 dBFS RMS and peak below -1.5 dBFS
FADE_SECONDS = 0.01


class RenderToolError(CadenzaError):
    """FluidSynth or a SoundFont is missing, or FluidSynth failed on a file."""


def find_fluidsynth(environ: dict[str, str] | None = None) -> str:
    """Path of the ``fluidsynth`` program: ``CADENZA_FLUIDSYNTH``, else ``fluidsynth`` on ``PATH``."""
    env = os.environ if environ is None else environ
    explicit = env.get("CADENZA_FLUIDSYNTH")
    if explicit:
        if not (Path(explicit).is_file() and os.access(explicit, os.X_OK)):
            raise RenderToolError(f"CADENZA_FLUIDSYNTH={explicit} is not an executable file")
        return explicit
    found = shutil.which("fluidsynth", path=env.get("PATH", os.defpath))
    if found is None:
        raise RenderToolError(f"the `fluidsynth` program is not installed (not on PATH); {INSTALL_HINT}")
    return found


def find_soundfont(environ: dict[str, str] | None = None, dirs: tuple[str, ...] | None = None) -> Path:
    """A General MIDI SoundFont: ``CADENZA_SOUNDFONT``, else the best one in :data:`SOUNDFONT_DIRS`."""
    env = os.environ if environ is None else environ
    explicit = env.get("CADENZA_SOUNDFONT")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise RenderToolError(f"CADENZA_SOUNDFONT={explicit} is not a file; point it at a General MIDI "
                                  f".sf2, or unset it and {INSTALL_HINT}")
        return path.resolve()
    dirs = SOUNDFONT_DIRS if dirs is None else dirs
    for name in PREFERRED_SOUNDFONTS:
        for folder in dirs:
            path = Path(folder) / name
            if path.is_file():
                return path.resolve()
    for folder in dirs:
        if Path(folder).is_dir():
            found = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".sf2", ".sf3") and p.is_file())
            if found:
                return found[0].resolve()
    raise RenderToolError(f"no General MIDI SoundFont found in {', '.join(dirs)} (or CADENZA_SOUNDFONT); "
                          f"{INSTALL_HINT}")


@dataclass(frozen=True)
class Renderer:
    """Renders songs with one FluidSynth binary and SoundFont; picklable for worker processes."""

    fluidsynth: str
    soundfont: str
    sample_rate: int = 24000
    channels: int = 1
    gain: float = GAIN

    @classmethod
    def find(cls, sample_rate: int = 24000, channels: int = 1, soundfont: str | None = None,
             environ: dict[str, str] | None = None) -> Renderer:
        """Locate the tools (the check happens here, before any work is planned)."""
        binary = find_fluidsynth(environ)
        if soundfont is not None:
            font = Path(soundfont).expanduser()
            if not font.is_file():
                raise RenderToolError(f"--soundfont {soundfont}: no such file")
            font = font.resolve()
        else:
            font = find_soundfont(environ)
        return cls(binary, str(font), int(sample_rate), int(channels))

    def describe(self) -> dict[str, Any]:
        """What decides the sound, recorded with a corpus so a resumed run can check it."""
        font = Path(self.soundfont)
        try:
            version = subprocess.run([self.fluidsynth, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
            version = next((line.split()[-1] for line in version.splitlines() if "version" in line.lower()), "unknown")
        except (OSError, subprocess.SubprocessError):
            version = "unknown"
        return {"soundfont": font.name, "soundfont_bytes": font.stat().st_size, "fluidsynth": version,
                "gain": self.gain}

    def render_midi(self, midi: bytes, seconds: float) -> np.ndarray:
        """MIDI file bytes -> float32 ``[frames, channels]``, exactly ``round(seconds * rate)`` frames."""
        with tempfile.TemporaryDirectory(prefix="cadenza-corpus-") as tmp:
            mid, wav = Path(tmp) / "song.mid", Path(tmp) / "song.wav"
            mid.write_bytes(midi)
            command = [self.fluidsynth, "-ni", "-q", "-g", str(self.gain), "-r", str(self.sample_rate),
                       "-o", "synth.dynamic-sample-loading=1", "-T", "wav", "-O", "float", "-F", str(wav),
                       self.soundfont, str(mid)]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=120 + 10 * seconds, check=False,
                                      stdin=subprocess.DEVNULL,
                                      env={**os.environ, "SDL_AUDIODRIVER": "dummy"})
            except subprocess.TimeoutExpired:
                raise RenderToolError(f"fluidsynth did not finish in time: {' '.join(command)}") from None
            if done.returncode != 0 or not wav.is_file():
                tail = (done.stderr or done.stdout).strip().splitlines()
                raise RenderToolError(f"fluidsynth failed (exit {done.returncode}): {tail[-1] if tail else 'no output'}"
                                      f" [{' '.join(command)}]")
            import soundfile

            audio, rate = soundfile.read(str(wav), dtype="float32", always_2d=True)
        if rate != self.sample_rate:  # pragma: no cover - fluidsynth honours -r
            raise RenderToolError(f"fluidsynth wrote {rate} Hz audio, asked for {self.sample_rate} Hz")
        return fit(audio, seconds, self.sample_rate, self.channels)


def fit(audio: np.ndarray, seconds: float, rate: int, channels: int) -> np.ndarray:
    """Trim (fading out the last 10 ms) or zero-pad ``[frames, C]`` to the length; mono or stereo."""
    frames = round(seconds * rate)
    if audio.shape[0] >= frames:
        audio = audio[:frames].copy()
        fade = min(frames, int(FADE_SECONDS * rate))
        if fade:
            audio[frames - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
    else:
        audio = np.concatenate([audio, np.zeros((frames - audio.shape[0], audio.shape[1]), np.float32)])
    if channels == 1:
        audio = audio.mean(axis=1, keepdims=True)
    elif audio.shape[1] == 1:
        audio = np.repeat(audio, channels, axis=1)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)
