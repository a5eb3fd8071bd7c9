#!/usr/bin/env bash
# SUTA on the shifted domains (docs/benchmarks.md): the source model's decoding without test-time
# adaptation, then with SUTA for each steps x lr point, into OUT/<name>/decode_<set>.
# Usage: bench/tta_grid.sh EXP DATA_ROOT OUT SPLIT "STEPS..." "LRS..."   (SPLIT: dev or test)
set -euo pipefail
exp=$1 data=$2 out=$3 split=$4 steps=$5 lrs=$6
sets=""
for d in mic room drizzle breeze phone rain; do sets="$sets $data/en_${split}_$d"; done
dec() { asr-transfer decode --exp "$exp" --data $sets --config conf/decode/ctc_greedy.yaml --device cpu "$@"; }
dec --out-root "$out/none"
for s in $steps; do
  for lr in $lrs; do
    dec --config conf/decode/ctc_greedy_suta.yaml --tta_steps "$s" --tta_lr "$lr" --out-root "$out/suta_s${s}_lr${lr}"
  done
done
