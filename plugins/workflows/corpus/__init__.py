"""``cadenza corpus``: its parser here (imported by ``cadenza --help``, argparse only); its
handler in :mod:`cadenza.plugins.workflows.corpus.command`, imported when the command runs."""

from __future__ import annotations

import argparse

from cadenza.core.cli.command import Command


def define(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    cor = sub.add_parser("corpus", help="render a procedurally composed, labelled music corpus with FluidSynth",
                         description="Compose N clips from random attributes (instrument, tempo, key and mode, register, "
                         "dynamics, drums), caption them, render them with FluidSynth and a General MIDI SoundFont, and "
                         "write OUT/manifest.jsonl plus train/valid/test manifests. The test split holds out some "
                         "instrument x mode x tempo combinations and caption templates. Resumable; same seed, same corpus.")
    cor.add_argument("--n", type=int, required=True, help="number of clips")
    cor.add_argument("--seconds", "-s", type=float, required=True, help="length of every clip")
    cor.add_argument("--out", "-o", required=True, help="folder to write (audio/, midi/, manifests, corpus.json)")
    cor.add_argument("--seed", type=int, default=0, help="same seed, same corpus (default: 0)")
    cor.add_argument("--workers", type=int, default=None, help="rendering processes (default: one per CPU)")
    cor.add_argument("--sample-rate", type=int, default=24000, help="audio sample rate in Hz (default: 24000)")
    cor.add_argument("--channels", type=int, choices=[1, 2], default=1, help="1 = mono (default), 2 = stereo")
    cor.add_argument("--soundfont", default=None, help="General MIDI .sf2 to use (default: $CADENZA_SOUNDFONT, "
                     "else the best one in /usr/share/sounds/sf2 or /usr/share/soundfonts)")
    cor.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return cor


COMMAND = Command("corpus", "cadenza.plugins.workflows.corpus.command:run", define)
