#!/usr/bin/env bash
# Fetch the sentence sources of `asr-transfer synth --preset standard`, without root:
#   LibreOffice UI translations (MPL-2.0): libreoffice-l10n-XX .debs -> dpkg-deb -x -> gettext .mo
#   catalogs; their msgid is the English original, so the catalogs form a parallel corpus.
#   fortunes (Debian main, English): more English sentences.
#
# Usage: recipes/common/get_texts.sh [CACHE_DIR]
#   CACHE_DIR defaults to $ASR_TRANSFER_TEXT_DIR, else ~/.cache/asr-transfer/texts.
#   Result: CACHE_DIR/libreoffice/<lang>/*.mo and CACHE_DIR/fortunes/* (plain fortune files).
# Idempotent: .debs already downloaded are reused; about 60 MB of downloads, 15 MB kept.
# Needs apt's package lists (run `apt-get update` once as root if apt-get download cannot find them).
set -euo pipefail

cache=${1:-${ASR_TRANSFER_TEXT_DIR:-$HOME/.cache/asr-transfer/texts}}
mkdir -p "$cache/debs" "$cache/libreoffice" "$cache/fortunes"
cache=$(cd "$cache" && pwd)

# our language code = Debian's l10n suffix (pt: Brazilian Portuguese, the larger catalog)
declare -A l10n=([de]=de [fr]=fr [es]=es [it]=it [pl]=pl [ru]=ru [nl]=nl [pt]=pt-br
                 [ro]=ro [cs]=cs [ar]=ar [uk]=uk [br]=br)
cd "$cache/debs"
for lang in "${!l10n[@]}"; do
  pkg=libreoffice-l10n-${l10n[$lang]}
  [ -n "$(ls "$cache/libreoffice/$lang/"*.mo 2>/dev/null)" ] && continue
  ls "${pkg}"_*.deb >/dev/null 2>&1 || apt-get download -q "$pkg" >/dev/null
  tmp=$(mktemp -d)
  dpkg-deb -x "${pkg}"_*.deb "$tmp"
  mkdir -p "$cache/libreoffice/$lang"
  find "$tmp" -path '*/resource/*/LC_MESSAGES/*.mo' -exec cp {} "$cache/libreoffice/$lang/" \;
  rm -rf "$tmp"
done

if [ -z "$(ls "$cache/fortunes" 2>/dev/null)" ]; then
  ls fortunes-min_*.deb >/dev/null 2>&1 || apt-get download -q fortunes-min >/dev/null
  ls fortunes_*.deb >/dev/null 2>&1 || apt-get download -q fortunes >/dev/null
  tmp=$(mktemp -d)
  for deb in fortunes-min_*.deb fortunes_*.deb; do dpkg-deb -x "$deb" "$tmp"; done
  # plain-text fortune files only (no .dat indexes, no offensive/ sub-folder)
  find "$tmp/usr/share/games/fortunes" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' \
    -exec cp {} "$cache/fortunes/" \;
  rm -rf "$tmp"
fi
echo "texts in $cache: $(ls "$cache/libreoffice" | tr '\n' ' ')+ $(ls "$cache/fortunes" | wc -l) fortune files"
