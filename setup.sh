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
echo "cadenza $("$PYTHON" -m cadenza.core.cli --version | cut -d' ' -f2) is set up; try: cadenza --help"
