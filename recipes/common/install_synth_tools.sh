#!/usr/bin/env bash
# Install the Debian speech engines that `asr-transfer synth --preset standard` uses:
#   main:            espeak-ng (+ its MBROLA voice definitions), flite, festival and voices
#   contrib/non-free: mbrola and the MBROLA diphone voices (NON-FREE: use them only with mbrola,
#                     never commit them or audio made with them; see each voice's /usr/share/doc notice)
#
# Usage (as root, on Debian bookworm or later):  recipes/common/install_synth_tools.sh
#   APT_STATE   where the contrib/non-free package lists live (default /var/lib/asr-transfer/apt)
#
# The system's apt sources are not changed: contrib and non-free are read through a sources file of
# our own, passed to apt with -o Dir::Etc::SourceParts / Dir::State::Lists, next to a link to the
# system's own sources so that dependencies in main resolve. Idempotent: re-running only installs what
# is missing (apt-get install skips installed packages), and the package lists are refreshed only if
# older than a day. Takes about 1-2 minutes with a fast mirror.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "$0: needs root (apt-get install); run it with sudo" >&2
  exit 1
fi

main_pkgs=(
  espeak-ng flite festival festival-czech festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
  festvox-czech-dita festvox-czech-krb festvox-czech-machac festvox-czech-ph festvox-ru
)
# targets ro1 cz1 cz2 ar1 ar2 bz1 (Breton); English us1-3 en1; sources de fr es it pl nl pt
mbrola_voices=(ro1 cz1 cz2 ar1 ar2 bz1 us1 us2 us3 en1 de1 de2 fr1 fr4 es1 es2 it3 it4 pl1 nl2 pt1 br1 br3)

export DEBIAN_FRONTEND=noninteractive
state=${APT_STATE:-/var/lib/asr-transfer/apt}
mkdir -p "$state/sources.list.d" "$state/lists/partial"

# our sources: the system's deb822 file(s) for main, plus the same archive with contrib non-free
sys_sources=(/etc/apt/sources.list.d/*.sources)
archive=$(awk '/^URIs:/ {print $2; exit}' "${sys_sources[0]}")
suite=$(awk '/^Suites:/ {print $2; exit}' "${sys_sources[0]}")
for f in "${sys_sources[@]}"; do ln -sf "$f" "$state/sources.list.d/$(basename "$f")"; done
[ -f /etc/apt/sources.list ] && ln -sf /etc/apt/sources.list "$state/sources.list.d/system.list"
cat >"$state/sources.list.d/asr-transfer-contrib-non-free.sources" <<EOF
Types: deb
URIs: ${archive:-http://deb.debian.org/debian}
Suites: ${suite:-bookworm}
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
apt_opts=(
  -o "Dir::Etc::SourceParts=$state/sources.list.d"
  -o "Dir::Etc::SourceList=/dev/null"
  -o "Dir::State::Lists=$state/lists"
)

if [ -z "$(find "$state/lists" -maxdepth 1 -name '*_Packages*' -mtime -1 2>/dev/null)" ]; then
  apt-get "${apt_opts[@]}" update -qq
fi
apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends \
  "${main_pkgs[@]}" mbrola "${mbrola_voices[@]/#/mbrola-}" >/dev/null

echo "installed: espeak-ng $(espeak-ng --version | awk '{print $4; exit}'), flite $(flite --version 2>&1 | grep -o 'flite-[0-9.]*' | head -1),"
echo "           festival voices: $(ls /usr/share/festival/voices/*/ | grep -v : | tr '\n' ' ')"
echo "           mbrola voices: $(ls /usr/share/mbrola | tr '\n' ' ')"
