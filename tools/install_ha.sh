#!/usr/bin/env bash
# A real Home Assistant for tests/test_home_assistant.py, in its own venv (never the agent's):
#   bash tools/install_ha.sh        # into .cache/ha-venv, or $EDGE_AGENT_HA_VENV
# Idempotent: a venv that already holds exactly these pins is left as it is (a second run takes a
# second). Everything comes from the package registry, pinned; HA then runs with --skip-pip (no
# network). The extra pins are the requirements of the integrations the test loads (mqtt,
# file_upload, recorder): HA would pip-install them at its first start, which --skip-pip forbids.
set -euo pipefail
cd "$(dirname "$0")/.."

HA_VERSION=2024.1.6
REQUIREMENTS="homeassistant==$HA_VERSION paho-mqtt==1.6.1 SQLAlchemy==2.0.23 fnv-hash-fast==0.5.0 \
psutil-home-assistant==0.0.1 janus==1.0.0"
VENV="${EDGE_AGENT_HA_VENV:-.cache/ha-venv}"
STAMP="$VENV/.edge-agent-requirements"

if [ -x "$VENV/bin/hass" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$REQUIREMENTS" ]; then
  exit 0
fi

# Home Assistant 2024.1 runs on Python 3.11 or 3.12.
PY=""
for candidate in "${HA_PYTHON:-}" python3.12 python3.11 python3; do
  [ -n "$candidate" ] || continue
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 12) else 1)' 2>/dev/null; then
    PY="$candidate"; break
  fi
done
if [ -z "$PY" ]; then
  echo "install_ha.sh: Home Assistant $HA_VERSION needs Python 3.11 or 3.12 (set HA_PYTHON)" >&2
  exit 1
fi

rm -rf "$VENV"
"$PY" -m venv "$VENV"
LOG="$VENV/pip-install.log"
# shellcheck disable=SC2086
if ! "$VENV/bin/python" -m pip install -q --no-compile --disable-pip-version-check $REQUIREMENTS >"$LOG" 2>&1; then
  # pip's notes about local mirror folders that do not hold a package are noise here
  grep -v -e "^WARNING: Location '" -e "DEPRECATION: " "$LOG" >&2 || true
  echo "install_ha.sh: installing Home Assistant $HA_VERSION into $VENV failed (log: $LOG)" >&2
  exit 1
fi
"$VENV/bin/hass" --version >/dev/null
echo "$REQUIREMENTS" > "$STAMP"
