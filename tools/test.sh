#!/usr/bin/env bash
# The test command: installs everything the tests need on a fresh Debian / Raspberry Pi OS machine
# (system packages too), then runs ruff, mypy and pytest. `.ci/run` calls exactly this.
#   bash tools/test.sh            # everything
#   bash tools/test.sh -k hub     # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: mosquitto (the real broker in tests), openssl (test CAs), espeak-ng + sox (speech),
# pulseaudio + libportaudio2 (the real microphone path), gcc (the libedgetpu stand-in), systemd
# (systemd-analyze for the unit files; it runs `man` to check Documentation=, hence man-db), python3-venv,
# chromium (the live page is opened by a real headless browser), mmdebstrap (the Debian testing root
# of Home Assistant 2026, below).
PKGS="python3 python3-venv python3-dev mosquitto mosquitto-clients openssl espeak-ng sox pulseaudio \
pulseaudio-utils libasound2-plugins libportaudio2 gcc libc6-dev systemd man-db chromium mmdebstrap"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi

# The tests' own environment, whatever ran before: never the demo's .venv (that one sees the system's
# site-packages, which a Pi needs for picamera2 and which would leak older pytest or numpy into the run).
# Test tools are pinned (tools/test-constraints.txt) so that a new release cannot change the suite.
PY="${PYTHON:-python3}"
VENV=.venv-test
if [ ! -x "$VENV/bin/python" ]; then "$PY" -m venv "$VENV"; fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -c tools/test-constraints.txt -e ".[test,convert,audio,bench]"
# tf_keras matching TensorFlow, without its dependencies (it asks for the full `tensorflow` package, and
# tensorflow-cpu is the same code): the Keras 2 LSTM that converts to one fused int8 op (train-series --arch lstm)
TF_VERSION="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("tensorflow-cpu"))' 2>/dev/null || true)"
if [ -n "$TF_VERSION" ] && ! "$VENV/bin/python" -c "import tf_keras" >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip install -q --no-deps "tf_keras==$TF_VERSION"
fi
# tflite-runtime 2.14 on the side (never on the agent's path): the test shows why we refuse it under numpy 2
if [ ! -d "$VENV/tflite-runtime/tflite_runtime" ]; then
  "$VENV/bin/python" -m pip install -q --no-deps --target "$VENV/tflite-runtime" "tflite-runtime==2.14.0"
fi

# Two real Home Assistants for tests/test_home_assistant.py (marker homeassistant; a few minutes the
# first time, a second after): 2024.1.6 in its own venv, and 2026.11.0 (Python 3.14) in a Debian
# testing root made with mmdebstrap. Here they must be there: if one cannot be installed the rest of
# the suite still runs and its tests fail, saying so (they skip only when run outside this script).
export EDGE_AGENT_HA_VENV="${EDGE_AGENT_HA_VENV:-$PWD/.cache/ha-venv}" EDGE_AGENT_HA_REQUIRED=1
export EDGE_AGENT_HA2026_DIR="${EDGE_AGENT_HA2026_DIR:-$PWD/.cache/ha2026}"
bash tools/install_ha.sh || echo "tools/test.sh: Home Assistant 2024.1.6 could not be installed: its homeassistant tests will fail" >&2
bash tools/install_ha_2026.sh || echo "tools/test.sh: Home Assistant 2026.11.0 could not be installed: its homeassistant tests will fail" >&2

"$VENV/bin/ruff" check edge_agent tests tools
"$VENV/bin/mypy"
exec "$VENV/bin/python" -m pytest "$@"
