#!/usr/bin/env bash
# Set up a fresh machine for visdet: a virtual environment in .venv with visdet
# installed in editable mode, every optimizer backend and the test tools.
# Safe to re-run: an existing .venv is reused and only what changed is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# torch/torchvision are capped in setup.py at the newest release we test (2.14.1 / 0.29.1).
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[all]"
