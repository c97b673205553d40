#!/usr/bin/env bash
# The demo command: a light virtual environment (no TensorFlow), then the agent on the bundled
# sample video with the shipped waste model, printing predictions as JSON lines. No broker needed.
#   bash tools/demo.sh                 # waste demo
#   bash tools/demo.sh --task road --source samples/road.mp4
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! "$PY" -m venv --help >/dev/null 2>&1 || ! "$PY" -c "import ensurepip" >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q && $SUDO apt-get install -y -q python3-venv
fi
# --system-site-packages: on a Pi, picamera2 comes from apt (python3-picamera2) and must be visible
if [ ! -x .venv/bin/python ]; then "$PY" -m venv --system-site-packages .venv; fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
if [ "$#" -eq 0 ]; then set -- --task waste --source samples/waste.mp4; fi
exec .venv/bin/edge-agent --sink stdout "$@"
