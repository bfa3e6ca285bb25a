#!/usr/bin/env bash
# Sets up Cadenza on a fresh machine: the CPU build of torch first (so nothing that depends
# on torch pulls a multi-GB CUDA build), then cadenza itself, editable, with test tools.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --quiet --upgrade pip
"$PYTHON" -m pip install --quiet "torch==2.13.0"
"$PYTHON" -m pip install --quiet -e ".[dev]"
echo "cadenza $("$PYTHON" -m cadenza.core.cli --version | cut -d' ' -f2) is set up; try: cadenza --help"
