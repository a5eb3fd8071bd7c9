#!/usr/bin/env bash
# Install, where we can (root, or passwordless sudo, with apt), the system tools with which the test suite checks the
# README's claims: SCTK's sclite (score totals), Chromium (the HTML report renders), and the speech
# engines of recipes/common/install_synth_tools.sh (the standard corpus).
# Without root or apt, say what is missing: those tests then skip with the reason (an error in CI).
# Quick once installed: apt is not called when every package is there. ASR_TRANSFER_NO_APT=1: never.
# Usage: tools/install_system_tools.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# the engines' package list is install_synth_tools.sh's own (one place to maintain it)
synth_pkgs=$(sed -n '/^main_pkgs=(/,/)/p' "$root/recipes/common/install_synth_tools.sh" | tr -d '()' \
  | sed 's/main_pkgs=//' | tr '\n' ' ')
voices=$(sed -n 's/^mbrola_voices=(\(.*\))/\1/p' "$root/recipes/common/install_synth_tools.sh")
pkgs="sctk chromium $synth_pkgs mbrola $(for v in $voices; do printf 'mbrola-%s ' "$v"; done)"

missing=()
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

why="" sudo=""
if [ -n "${ASR_TRANSFER_NO_APT:-}" ]; then why="ASR_TRANSFER_NO_APT is set"
elif ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then why="no apt on this system"
elif [ "$(id -u)" -ne 0 ]; then
  # CI runners often are a user with passwordless sudo; never prompt for a password
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; else why="not root"; fi
fi
if [ -n "$why" ]; then
  echo "install_system_tools: $why: not installing ${missing[*]};" >&2
  echo "  the sclite, Chromium and standard-corpus tests will skip (run this script as root to add them)" >&2
  exit 0
fi

start=$(date +%s)
echo "install_system_tools: installing ${missing[*]} (first run: a few minutes)" >&2
export DEBIAN_FRONTEND=noninteractive
need_main=0
for p in "${missing[@]}"; do case $p in sctk|chromium) need_main=1 ;; esac; done
if [ $need_main -eq 1 ]; then
  # refresh the system's package lists only when they are older than a day
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mtime -1 2>/dev/null)" ]; then
    $sudo apt-get update -qq
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends sctk chromium >/dev/null
fi
$sudo "$root/recipes/common/install_synth_tools.sh" >/dev/null
echo "install_system_tools: done in $(( $(date +%s) - start )) s" >&2
