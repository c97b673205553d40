#!/usr/bin/env bash
# Check the project as a Raspberry Pi user gets it, without a Pi: an emulated Debian arm64 root
# (qemu-user) per suite, the install from docs/PI.md (the wheel, binary wheels only), then the
# demo, doctor, install-service --dry-run --root, a voice WAV and both sample videos, and every
# frame's prediction compared with this machine's; both voice models (the default log-mel one and
# the speech-embedding one) on that WAV and on a longer one, single-threaded and timed, here and
# in the root: CPU seconds per second of audio. Writes build/pi/<suite>/report.md (and
# build/pi/report.md for all suites). Not part of CI: it needs root, qemu-user and the network,
# and takes minutes (a new root ~5-7 min, the pip install under emulation a few more, the timed
# voice runs ~7 CPU minutes under emulation, most of it the speech-embedding model).
#
#   sudo tools/pi_check.sh                    # bookworm and trixie
#   sudo tools/pi_check.sh trixie             # one suite
#   QEMU_CPU=cortex-a76 sudo tools/pi_check.sh  # a Pi 5's core instead of a Pi 4's
#   PI_CHECK_FRESH=1 sudo tools/pi_check.sh   # rebuild the roots instead of reusing them
#   (roots: $PI_CHECK_ROOTS, default /var/tmp/edge-agent-pi_check/<suite>-arm64, ~0.6 GB each)
#
# Needs (Debian/Ubuntu host): apt install mmdebstrap arch-test qemu-user-static binfmt-support, and the
# binfmt_misc file system (mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc in a
# privileged container) with qemu-aarch64 registered (the package does that when it is mounted).
# The host side runs the checkout's code (PYTHONPATH) with the checkout's .venv (pip install -e .
# first), or the interpreter named by PYTHON=.../bin/python.
#
# Emulation facts this script depends on (issue 17):
# - qemu-user passes the host's x86 /proc/cpuinfo into the guest and LiteRT's CPU probe crashes
#   on it: an ARM cpuinfo (a Pi 4's four Cortex-A72) is bind-mounted over /proc/cpuinfo, and
#   /sys is mounted read-only (without it the probe prints "Error in cpuinfo: failed to parse
#   both lists of possible and present processors" and carries on).
# - QEMU_CPU=max (with SME) gives silently wrong int8 results: cortex-a72 (Pi 4) by default.
# - TLS to PyPI may be intercepted on the host's network: the host's CA bundle is copied into the
#   root and handed to pip (PIP_CERT).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
SUITES=("${@:-bookworm trixie}")
read -r -a SUITES <<<"${SUITES[*]}"
DIR=${PI_CHECK_DIR:-$REPO/build/pi}
# the roots live outside the checkout: a tree with /proc mounted in it sends a wheel build (which
# walks the source folder) into the whole machine
ROOTS=${PI_CHECK_ROOTS:-/var/tmp/edge-agent-pi_check}
MIRROR=${PI_CHECK_MIRROR:-http://deb.debian.org/debian}
export QEMU_CPU=${QEMU_CPU:-cortex-a72}
HOST_PY=${PYTHON:-$REPO/.venv/bin/python}
HOST_AGENT=$(dirname "$HOST_PY")/edge-agent
# docs/PI.md step 1 without python3-picamera2 (Raspberry Pi OS only; a plain Debian has none)
APT_PACKAGES=(python3-venv libportaudio2 mosquitto-clients)
VENV=/opt/edge-agent/venv
# every frame published, every class's score: the comparison needs all of them
ALL_FRAMES=(--threshold 0 --no-on-change --max-rate 0 --metrics-interval 0)
# the voice models compared and timed: the default (log-mel) and the speech-embedding one
VOICE_MODELS=(voice voice_embedding)
# the timed WAV is the voice WAV this many times over: long enough that the audio, not the start
# (imports, model loading: seconds under emulation), is most of the CPU time
LONG_REPEAT=8

die() { echo "pi_check: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap, mount, chroot)"
command -v mmdebstrap >/dev/null || die "no mmdebstrap: apt install mmdebstrap"
command -v arch-test >/dev/null || die "no arch-test (mmdebstrap needs it for a foreign architecture): apt install arch-test"
[ -x /usr/bin/qemu-aarch64-static ] || die "no qemu-aarch64-static: apt install qemu-user-static binfmt-support"
[ -e /proc/sys/fs/binfmt_misc/status ] || die "binfmt_misc is not mounted: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc"
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null \
  || die "qemu-aarch64 is not registered with binfmt_misc: update-binfmts --enable qemu-aarch64 (or reinstall qemu-user-static)"
[ -x "$HOST_AGENT" ] || die "no $HOST_AGENT: python3 -m venv .venv && .venv/bin/pip install -e '.[audio]'"
[ "$QEMU_CPU" != max ] || die "QEMU_CPU=max gives wrong int8 results under qemu-user 7.2; use cortex-a72 or cortex-a76"

mkdir -p "$DIR" "$ROOTS"
LOG=$DIR/pi_check.log
exec > >(tee -a "$LOG") 2>&1
echo "== pi_check $(date -u +%FT%TZ) suites: ${SUITES[*]} QEMU_CPU=$QEMU_CPU ($(qemu-aarch64-static --version | head -1))"

# --- this machine's side: the wheel, a voice WAV, the reference predictions -------------------
HOST=$DIR/host
rm -rf "$HOST" && mkdir -p "$HOST/wheel"
"$HOST_PY" -m pip wheel -q --no-deps -w "$HOST/wheel" "$REPO" >/dev/null
WHEEL=$(ls "$HOST/wheel"/edge_agent-*.whl)
echo "wheel: $(basename "$WHEEL") sha256 $(sha256sum "$WHEEL" | cut -c1-12)"
"$HOST_PY" - "$HOST/voice.wav" "$HOST/voice-long.wav" "$LONG_REPEAT" <<'EOF'
# "yes", "no", "stop", "go" from espeak-ng with a second of silence around each (16 kHz mono),
# and the same LONG_REPEAT times over for the timed runs
import sys
import numpy as np
sys.path.insert(0, ".")
from tools import gen_voice_data as gen
from edge_agent.preprocess.audio import SAMPLE_RATE_HZ
from edge_agent.sources.wav import write_wav
gap = np.zeros(SAMPLE_RATE_HZ, np.float32)
parts = [gap]
for word in ("yes", "no", "stop", "go"):
    parts += [0.5 * gen.synth(word, "en-us"), gap]
audio = np.concatenate(parts)
write_wav(__import__("pathlib").Path(sys.argv[1]), audio, SAMPLE_RATE_HZ)
write_wav(__import__("pathlib").Path(sys.argv[2]), np.tile(audio, int(sys.argv[3])), SAMPLE_RATE_HZ)
EOF
labels() { "$HOST_PY" -c "import json, sys; print(len(json.load(open(sys.argv[1]))['labels']))" "$1"; }
# every agent run is timed: bash's `time` writes "cpu_s USER SYS" (the process's CPU seconds) as
# the last line of its .err (pi_report.py reads it)
host_run() {  # name, agent args...
  local name=$1; shift
  (cd "$HOST" && export PYTHONPATH="$REPO" && TIMEFORMAT='cpu_s %3U %3S' \
    && { time "$HOST_AGENT" --sink stdout "$@" >"$HOST/$name.jsonl"; } 2>"$HOST/$name.err") \
    || { echo "host run $name failed:"; tail -5 "$HOST/$name.err"; exit 1; }
}
# the host runs the very models and videos the wheel carries (the checkout may change meanwhile)
"$HOST_PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$WHEEL" "$HOST/unpacked"
SHIPPED=$(echo "$HOST"/unpacked/edge_agent-*.data/data/share/edge-agent)
for task in waste road; do
  host_run "$task" --task "$task" --model "$SHIPPED/models/$task.tflite" --source "$SHIPPED/samples/$task.mp4" \
    "${ALL_FRAMES[@]}" --top-k "$(labels "$SHIPPED/models/$task.json")" --threads 1
done
for model in "${VOICE_MODELS[@]}"; do
  for wav in voice voice-long; do
    host_run "$model${wav#voice}" --task voice --model "$SHIPPED/models/$model.tflite" --source "$HOST/$wav.wav" \
      --metrics-interval 0 --threads 1
  done
done

# a broker on this machine for doctor's connect check (the chroot shares the network)
BROKER_PORT=$("$HOST_PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$BROKER_PORT" >"$HOST/mosquitto.conf"
mosquitto -c "$HOST/mosquitto.conf" >"$HOST/mosquitto.log" 2>&1 &
BROKER_PID=$!

MOUNTS=()
unmount_all() {  # in reverse order: /proc/cpuinfo before /proc
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null || true; done
  MOUNTS=()
}
cleanup() {
  unmount_all
  kill "$BROKER_PID" 2>/dev/null || true
}
trap cleanup EXIT
mount_in() {  # mount args... target (last)
  mount "$@"
  MOUNTS+=("${!#}")
}

# A Raspberry Pi 4's /proc/cpuinfo (four Cortex-A72, CPU part 0xd08)
cpuinfo() {
  for n in 0 1 2 3; do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$n"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
  done
  printf 'Hardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n'
}

in_root() {  # commands run in the root under qemu, from an empty folder, as on a fresh Pi
  chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin LANG=C.UTF-8 \
    QEMU_CPU="$QEMU_CPU" PIP_CERT=/etc/ssl/certs/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
    /bin/bash -c "cd /tmp/pi_check/empty && $1"
}

for suite in "${SUITES[@]}"; do
  OUT=$DIR/$suite
  ROOT=$ROOTS/$suite-arm64
  mkdir -p "$OUT"
  rm -f "$OUT"/*.jsonl "$OUT"/*.err "$OUT"/*.txt
  echo "== $suite"
  if [ -n "${PI_CHECK_FRESH:-}" ] || [ ! -e "$ROOT/.pi_check_ready" ]; then
    rm -rf "$ROOT"
    t0=$SECONDS
    mmdebstrap --arch=arm64 --variant=apt --include="ca-certificates,$(IFS=,; echo "${APT_PACKAGES[*]}")" \
      "$suite" "$ROOT" "$MIRROR" >"$OUT/mmdebstrap.log" 2>&1 \
      || { tail -20 "$OUT/mmdebstrap.log"; die "mmdebstrap $suite failed (log: $OUT/mmdebstrap.log)"; }
    touch "$ROOT/.pi_check_ready"
    echo "root built in $((SECONDS - t0)) s: $ROOT"
  else
    echo "reusing $ROOT"
  fi
  cpuinfo >"$OUT/cpuinfo"
  cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/host-ca.crt"
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
  rm -rf "$ROOT/tmp/pi_check" && mkdir -p "$ROOT/tmp/pi_check/empty"
  cp "$WHEEL" "$HOST/voice.wav" "$HOST/voice-long.wav" "$ROOT/tmp/pi_check/"
  printf '[mqtt]\nhost = "127.0.0.1"\nport = %s\n' "$BROKER_PORT" >"$ROOT/tmp/pi_check/doctor.toml"
  mount_in -t proc proc "$ROOT/proc"
  mount_in --bind "$OUT/cpuinfo" "$ROOT/proc/cpuinfo"
  mount_in --bind /dev "$ROOT/dev"
  # read-only sysfs: LiteRT's CPU probe reads the possible/present CPU lists there
  mount_in -t sysfs -o ro sysfs "$ROOT/sys"

  {
    echo "uname -m: $(in_root 'uname -m')"
    echo "os: $(in_root '. /etc/os-release; echo $PRETTY_NAME')"
    echo "python: $(in_root 'python3 --version')"
    echo "systemd: $(in_root 'if command -v systemctl >/dev/null; then systemctl --version | head -1; else echo "not in the root (--variant=apt)"; fi')"
  } | tee "$OUT/system.txt"

  # docs/PI.md step 1 (apt; already in the root, so a no-op unless the list changed) and step 2
  t0=$SECONDS
  in_root "apt-get install -y -q ${APT_PACKAGES[*]} >/dev/null && rm -rf $VENV && python3 -m venv --system-site-packages $VENV \
    && $VENV/bin/pip install -q --only-binary=:all: '/tmp/pi_check/$(basename "$WHEEL")[audio]'" >"$OUT/install.txt" 2>&1 \
    || { tail -20 "$OUT/install.txt"; die "$suite: install failed (log: $OUT/install.txt)"; }
  echo "install: $((SECONDS - t0)) s" | tee -a "$OUT/system.txt"
  in_root "$VENV/bin/pip list --format=freeze" >"$OUT/pip-freeze.txt"
  grep -iE '^(ai-edge-litert|numpy|opencv-python-headless|paho-mqtt|sounddevice|edge.agent)==' "$OUT/pip-freeze.txt" \
    | tee -a "$OUT/system.txt"

  SHARE=$VENV/share/edge-agent
  set +e
  in_root "$VENV/bin/edge-agent --version" >"$OUT/version.txt" 2>&1
  in_root "$VENV/bin/edge-agent --sink stdout --task waste --source $SHARE/samples/waste.mp4" \
    >"$OUT/demo.jsonl" 2>"$OUT/demo.err"; echo "demo exit $?" >>"$OUT/exit.txt"
  in_root "$VENV/bin/edge-agent doctor --config /tmp/pi_check/doctor.toml" >"$OUT/doctor.txt" 2>&1
  echo "doctor exit $?" >>"$OUT/exit.txt"
  in_root "rm -rf /tmp/pi_check/svc && $VENV/bin/edge-agent install-service --task waste --dry-run --root /tmp/pi_check/svc" \
    >"$OUT/install-service.txt" 2>&1; echo "install-service exit $?" >>"$OUT/exit.txt"
  for task in waste road; do
    in_root "$VENV/bin/edge-agent --sink stdout --task $task --source $SHARE/samples/$task.mp4 ${ALL_FRAMES[*]} \
      --top-k $(labels "$SHIPPED/models/$task.json") --threads 1" >"$OUT/$task.jsonl" 2>"$OUT/$task.err"; echo "$task exit $?" >>"$OUT/exit.txt"
  done
  # the voice models, timed as on the host; the default one by --task alone, as a user runs it
  for model in "${VOICE_MODELS[@]}"; do
    if [ "$model" = voice ]; then pick=""; else pick="--model $SHARE/models/$model.tflite"; fi
    for wav in voice voice-long; do
      name=$model${wav#voice}
      in_root "TIMEFORMAT='cpu_s %3U %3S'; time $VENV/bin/edge-agent --sink stdout --task voice $pick \
        --source /tmp/pi_check/$wav.wav --metrics-interval 0 --threads 1" \
        >"$OUT/$name.jsonl" 2>"$OUT/$name.err"; echo "$name exit $?" >>"$OUT/exit.txt"
    done
  done
  set -e
  unmount_all
  cat "$OUT/exit.txt"
  "$HOST_PY" tools/pi_report.py "$HOST" "$OUT" "$suite" "$QEMU_CPU" | tee "$OUT/report.md"
done
for suite in "${SUITES[@]}"; do cat "$DIR/$suite/report.md"; echo; done >"$DIR/report.md"
echo "== report: $DIR/report.md"
