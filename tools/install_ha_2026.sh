#!/usr/bin/env bash
# Today's Home Assistant for tests/test_home_assistant.py, next to 2024.1.6 (tools/install_ha.sh):
#   bash tools/install_ha_2026.sh        # into .cache/ha2026, or $EDGE_AGENT_HA2026_DIR
# Home Assistant 2026.11 needs Python >= 3.14.2, which no Debian release has yet; Debian testing
# ("forky") has it. So this builds a forky root with mmdebstrap (native, no emulation; the testing
# Release file may be past its Valid-Until, hence the apt option), makes HA's venv inside it
# (/opt/ha-venv) and writes bin/hass: a wrapper that enters the root in a private mount namespace
# (/proc, /dev and HA's config folder bind-mounted at the same paths; the network is the host's, so
# the test's mosquitto on 127.0.0.1 is reachable) and runs HA there.
# Idempotent: a finished install (its stamp holds exactly these pins) is left as it is. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

HA_VERSION=2026.11.0
# The extra pins are what HA's own integration manifests name for what the test loads (--skip-pip
# forbids installing them at start): the frontend (http), paho-mqtt (mqtt) and aiohasupervisor
# (without it MQTT's config flow fails to import and HA never connects).
REQUIREMENTS="homeassistant==$HA_VERSION home-assistant-frontend==20261028.4 paho-mqtt==2.1.0 aiohasupervisor==0.8.1"
SUITE=forky
MIRROR="${EDGE_AGENT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DIR="${EDGE_AGENT_HA2026_DIR:-.cache/ha2026}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
ROOT="$DIR/root"
STAMP="$DIR/.edge-agent-requirements"
WANT="$SUITE $REQUIREMENTS"

if [ -x "$DIR/bin/hass" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install_ha_2026.sh: needs root (mmdebstrap, chroot and mount namespaces)" >&2
  exit 1
fi
if ! command -v mmdebstrap >/dev/null 2>&1; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap
fi
rm -f "$STAMP"

# 1. the root: Python and venv only (about 100 MB), kept across runs (the venv below is remade)
if [ ! -x "$ROOT/usr/bin/python3" ]; then
  rm -rf "$ROOT" "$ROOT.new"
  mmdebstrap --mode=root --variant=minbase --include=python3,python3-venv,ca-certificates \
    --aptopt='Acquire::Check-Valid-Until "false"' "$SUITE" "$ROOT.new" "$MIRROR" >"$DIR/mmdebstrap.log" 2>&1 || {
      tail -20 "$DIR/mmdebstrap.log" >&2
      echo "install_ha_2026.sh: building the Debian $SUITE root failed (log: $DIR/mmdebstrap.log)" >&2
      exit 1
    }
  mv "$ROOT.new" "$ROOT"
fi
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true  # pip inside resolves PyPI
# pip inside trusts what the host's pip trusts (a site's TLS-inspecting proxy has its CA there)
HOST_CA="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
cp "$HOST_CA" "$ROOT/etc/ssl/host-ca.crt"

# 2. the wrapper (also what installs below: the same way in)
mkdir -p "$DIR/bin"
cat > "$DIR/bin/hass" <<'EOF'
#!/bin/sh
# Runs a command of HA's venv inside the Debian forky root next to this folder (tools/install_ha_2026.sh):
#   hass [hass arguments]          the venv's hass; `-c DIR` is bind-mounted at the same path inside
#   EDGE_AGENT_IN_ROOT=pip hass ...  another program of the venv (the install uses it)
set -eu
here="$(cd "$(dirname "$0")/.." && pwd)"
export EDGE_AGENT_ROOT="$here/root"
config=""
prev=""
for a in "$@"; do
  if [ "$prev" = "-c" ] || [ "$prev" = "--config" ]; then config="$a"; fi
  prev="$a"
done
export EDGE_AGENT_CONFIG_DIR="$config" EDGE_AGENT_PROGRAM="/opt/ha-venv/bin/${EDGE_AGENT_IN_ROOT:-hass}"
# a private mount namespace: the bind mounts vanish with the process; every step execs, so a
# signal sent to this wrapper's pid reaches Home Assistant itself
exec unshare --mount --propagation private /bin/sh -c '
  set -e
  r="$EDGE_AGENT_ROOT"
  mount --bind /proc "$r/proc"
  mount --rbind /dev "$r/dev"
  if [ -n "$EDGE_AGENT_CONFIG_DIR" ]; then
    mkdir -p "$r$EDGE_AGENT_CONFIG_DIR"
    mount --bind "$EDGE_AGENT_CONFIG_DIR" "$r$EDGE_AGENT_CONFIG_DIR"
  fi
  exec chroot "$r" /usr/bin/env -u EDGE_AGENT_ROOT -u EDGE_AGENT_CONFIG_DIR -u EDGE_AGENT_PROGRAM \
    PATH=/opt/ha-venv/bin:/usr/local/bin:/usr/bin:/bin "$EDGE_AGENT_PROGRAM" "$@"
' sh "$@"
EOF
chmod +x "$DIR/bin/hass"

# 3. HA's venv inside the root, made by the root's Python 3.14
rm -rf "$ROOT/opt/ha-venv"
chroot "$ROOT" /usr/bin/python3 -m venv /opt/ha-venv
LOG="$DIR/pip-install.log"
# shellcheck disable=SC2086
if ! env -i HOME=/root PIP_CERT=/etc/ssl/host-ca.crt EDGE_AGENT_IN_ROOT=pip "$DIR/bin/hass" install -q --no-compile --disable-pip-version-check \
    $REQUIREMENTS >"$LOG" 2>&1; then
  tail -30 "$LOG" >&2
  echo "install_ha_2026.sh: installing Home Assistant $HA_VERSION into the $SUITE root failed (log: $LOG)" >&2
  exit 1
fi
env -i HOME=/root "$DIR/bin/hass" --version >/dev/null
echo "$WANT" > "$STAMP"
