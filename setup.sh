#!/usr/bin/env bash
# Sets up Cadenza with every built-in plugin's library on a fresh machine (CPU is enough).
# torch, torchvision and torchaudio are installed first, as one matched release: laion-clap
# needs torchvision and encodec/DAC need torchaudio, and no torchvision or torchaudio build
# works beside a CPU-only torch (see DEVELOPERS.md). Then cadenza itself, editable, with all
# plugin extras and the test tools, and the real recordings the tests run on.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --quiet --upgrade pip
"$PYTHON" -m pip install --quiet "torch==2.11.0" "torchvision==0.26.0" "torchaudio==2.11.0"
"$PYTHON" -m pip install --quiet -e ".[all,dev]"
"$PYTHON" tests/fetch_test_audio.py
# `cadenza corpus` renders its training corpus with FluidSynth and a General MIDI SoundFont (apt);
# benchmarks/watermark_robustness.py runs its codec attacks (MP3, Opus, AAC) through ffmpeg (apt);
# tests/project/test_docs_render.py opens the docs site in headless Chromium (apt), driven by playwright.
have_soundfont() {
  [ -n "${CADENZA_SOUNDFONT:-}" ] && return 0
  for font in /usr/share/sounds/sf2/*.sf[23] /usr/share/soundfonts/*.sf[23]; do [ -e "$font" ] && return 0; done
  return 1
}
if ! command -v fluidsynth >/dev/null 2>&1 || ! have_soundfont || ! command -v ffmpeg >/dev/null 2>&1 \
    || ! command -v chromium >/dev/null 2>&1; then
  APT_ARGS="install -y -qq --no-install-recommends fluidsynth timgm6mb-soundfont ffmpeg chromium"
  if [ "$(id -u)" = 0 ]; then SUDO=""
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"
  else SUDO="none"; fi
  if [ "$SUDO" = none ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup.sh: not installing FluidSynth, ffmpeg and Chromium (needs root and apt-get); \`cadenza corpus\` and its tests need FluidSynth, the watermark benchmark's codec attacks ffmpeg, the docs render test Chromium (or CADENZA_SKIP_BROWSER=1):" \
      "sudo apt-get $APT_ARGS" >&2
  else  # a fresh machine may have no package lists yet: update once and retry
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get $APT_ARGS >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get $APT_ARGS >/dev/null; }
  fi
fi
echo "cadenza $("$PYTHON" -m cadenza.core.cli.main --version | cut -d' ' -f2) is set up; try: cadenza --help"
