#!/usr/bin/env bash
# Rebuild the recorded noise bank (rain, wind, crowd, laughter, applause, ambience) used by
# `asr-transfer synth` from Debian game-data packages, without root:
#   apt-get download PKG  ->  dpkg-deb -x  ->  pick the files  ->  16 kHz mono FLAC (PCM_16)
#
# Usage: recipes/common/make_noise_bank.sh OUT_DIR
#   PYTHON   python with numpy, scipy, soundfile (default: .venv/bin/python if present, else python3)
#   DEB_DIR  where to download the .deb files (default: OUT_DIR/.debs, removed afterwards unless set);
#            .deb files already there are reused
# Then: asr-transfer synth --noise-dir OUT_DIR ...   (or export ASR_TRANSFER_NOISE_DIR=OUT_DIR)
#
# Needs apt's package lists (run `apt-get update` once, as root, if apt-get download cannot find
# the packages). megaglest-data is a ~240 MB download; the bank itself is ~10 MB.
set -euo pipefail

out=${1:?usage: $0 OUT_DIR}
here=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-$([ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || echo python3)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
keep_debs=${DEB_DIR:+yes}
debs=${DEB_DIR:-$out/.debs}
mkdir -p "$debs"
debs=$(cd "$debs" && pwd)

packages=(megaglest-data etw-data btanks-data monsterz-data circuslinux-data ardentryst)
cd "$debs"
for pkg in "${packages[@]}"; do
  ls "$pkg"_*.deb >/dev/null 2>&1 || apt-get download "$pkg"
done
root="$debs/root"
rm -rf "$root" && mkdir -p "$root"
for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$root"; done

mg=$root/usr/share/games/megaglest/tilesets
# bank file (category/name) <- extracted file
files=(
  "rain/mg_autumn_rain=$mg/autumn/sounds/rain.ogg"
  "rain/mg_birch_rain=$mg/birch_forest/sounds/rain.ogg"
  "rain/mg_dark_rain=$mg/dark_forest/sounds/rain.ogg"
  "rain/mg_desert2_rain=$mg/desert2/sounds/rain.wav"
  "wind/mg_winter_wind=$mg/winter/sounds/wind.ogg"
  "wind/mg_winterforest_wind=$mg/winter_forest/sounds/wind.ogg"
  "wind/ardentryst_cavewind=$root/usr/share/games/ardentryst/Sounds/cavewind.ogg"
  "laugh/btanks_laugh01=$root/usr/share/games/btanks/data/sounds/laugh01.ogg"
  "laugh/btanks_laugh02=$root/usr/share/games/btanks/data/sounds/laugh02.ogg"
  "laugh/monsterz_laugh=$root/usr/share/games/monsterz/sound/laugh.wav"
  "applause/circuslinux_applause=$root/usr/share/games/circuslinux/data/sounds/applause.wav"
)
for k in $(seq -w 1 17); do files+=("crowd/etw_crowd$k=$root/usr/share/games/etw/crowd/crowd$k.wav"); done
for t in birch_forest dark_forest desert2; do
  for p in day night; do files+=("ambient/mg_${t}_$p=$mg/$t/sounds/$p.ogg"); done
done

"$python" - "$out" "${files[@]}" <<'PY'
import sys
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

out = Path(sys.argv[1])
for spec in sys.argv[2:]:
    name, src = spec.split("=", 1)
    audio, rate = sf.read(src, dtype="float64", always_2d=True)
    mono = audio.mean(axis=1)
    g = gcd(16000, rate)
    mono = resample_poly(mono, 16000 // g, rate // g)
    peak = np.max(np.abs(mono)) or 1.0
    dest = out / f"{name}.flac"
    dest.parent.mkdir(parents=True, exist_ok=True)
    sf.write(dest, mono * min(1.0, 0.99 / peak), 16000, format="FLAC", subtype="PCM_16")
    print(f"{dest.relative_to(out)}: {len(mono) / 16000:.1f} s (from {rate} Hz)")
PY

cat > "$out/NOTICE.md" <<'MD'
# Recorded noise bank (16 kHz mono FLAC)

Real recordings, extracted from Debian packages of free games and resampled to
16 kHz mono by recipes/common/make_noise_bank.sh. Use them for the noisy target
domains of the benchmark corpus. Keep this notice next to any copy.

| folder | files from Debian package | licence |
|---|---|---|
| rain/ (mg_*) | megaglest-data (tileset ambient sounds) | CC-BY-SA-3.0 |
| wind/ (mg_*) | megaglest-data | CC-BY-SA-3.0 |
| wind/ardentryst_cavewind | ardentryst | GPL |
| crowd/ (etw_*) | etw-data | GPL |
| laugh/ (btanks_*, monsterz_*) | btanks-data, monsterz-data | GPL |
| applause/ | circuslinux-data | GPL |
| ambient/ (mg_*) | megaglest-data | CC-BY-SA-3.0 |
MD

rm -rf "$root"
[ -n "$keep_debs" ] || rm -rf "$debs"
echo "noise bank written to $out"
