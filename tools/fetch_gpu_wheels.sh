#!/usr/bin/env bash
# Download, on a machine WITH network, every wheel that a bare GPU machine (Python 3.12, x86-64,
# PyTorch + torchaudio + numpy/scipy/numba/... already installed, no network) lacks to run this
# project and ESPnet, into one folder that travels with the working tree (git-ignored):
#
#   tools/fetch_gpu_wheels.sh [DIR]        # default DIR: wheels/ ; prints the folder's size
#
# bench/gpu_suite.sh installs them there with `pip install --no-index --no-deps --target`.
# The list is the set that was needed and worked on an H100 image on 2026-11-27 (the GPU notes),
# plus scoring (jiwer, rapidfuzz) and the pip-only speech synthesiser (espeakng_loader,
# pyroomacoustics) so the suite can make its corpus there. `--no-deps`: nothing else is pulled;
# bench/gpu_suite.sh's imports part imports everything and names whatever is still missing. Left out
# on purpose: espnet's configargparse, pyworld, pypinyin, asteroid_filterbanks, importlib-metadata and
# g2p_en's distance (declared, never imported on the ASR path); sentencepiece (the image has 0.2.2).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$root/wheels}
py=${PYTHON:-python3}
mkdir -p "$dir"

# binary or pure-python wheels for CPython 3.12 on manylinux x86-64
wheels=(
  espnet==202511 espnet_tts_frontend==0.0.4 espnet-g2p-en==2.1.0.post1 nltk==3.10.4
  inflect==7.6.0 typeguard==4.6.1 more-itertools==11.2.1 jaraco.functools==4.6.0 Unidecode==1.4.0
  jaconv==0.5.0 jamo==0.4.1 defusedxml==0.7.1 hydra-core==1.3.8 omegaconf==2.3.1
  torch-complex==0.4.4 humanfriendly==10.0 kaldiio==2.18.1 editdistance==0.8.1
  librosa==0.11.0 soxr==1.1.0 audioread==3.1.0 pooch==1.9.0 platformdirs==4.14.8 decorator==5.3.1
  soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 espeakng-loader==0.2.4 pyroomacoustics==0.10.1
  jiwer==4.0.0 rapidfuzz==3.14.6
)
# published as sdists only: built here into pure-python wheels
sdists=(antlr4-python3-runtime==4.9.3 ci_sdr==0.0.2 fast_bss_eval==0.1.3)

platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
  manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
# (grep: pip's notes on find-links folders that a machine's pip.conf may name)
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
quiet "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d "$dir" "${wheels[@]}"
shopt -s nullglob
for spec in "${sdists[@]}"; do
  name=${spec%%==*}
  have=("$dir"/"${name//-/_}"-*.whl)
  [ ${#have[@]} -gt 0 ] || quiet "$py" -m pip wheel -q --no-deps -w "$dir" "$spec"
done
# one version of each: two would stop the install there
all=("$dir"/*.whl)
dups=$(printf '%s\n' "${all[@]##*/}" | cut -d- -f1 | tr 'A-Z-' 'a-z_' | sort | uniq -d)
if [ -n "$dups" ]; then
  echo "fetch_gpu_wheels: more than one version of: $dups (in $dir); remove the old ones" >&2
  exit 1
fi
echo "fetch_gpu_wheels: ${#all[@]} wheels, $(du -sh "$dir" | cut -f1) in $dir"
