#!/usr/bin/env bash
# Template recipe: stage 0 prepares data dirs from your corpus; the rest mirrors recipes/mini.
set -euo pipefail
stage=0
stop_stage=100
src=/path/to/corpus       # folders of <utt>.wav + <utt>.txt per split
lang=en
system=tiny
model_config=conf/model/tiny.yaml
train_config=conf/train/mini.yaml
decode_config=conf/decode/beam_fast.yaml
train_args=""
. "$(dirname "$0")/../common/parse_options.sh"
if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  for split in train dev test; do
    python local/data_prep.py "$src/$split" "data/${lang}_${split}" --lang "$lang"
  done
fi
if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then asr-transfer validate-data data/*; fi
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  asr-transfer features "data/${lang}_train" "data/${lang}_dev" --out dump
  asr-transfer features "data/${lang}_train" --out dump --cmvn dump/cmvn.npz
fi
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  asr-transfer tokenizer "data/${lang}_train" --lang "$lang" --kind char --out "exp/tokenizer/$lang"
fi
if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  # shellcheck disable=SC2086
  asr-transfer train --config "$model_config" --config "$train_config" --exp "exp/$system" \
    --data.train "[{dump: dump/${lang}_train, lang: $lang}]" --data.dev "[{dump: dump/${lang}_dev, lang: $lang}]" \
    --data.tokenizers "{$lang: exp/tokenizer/$lang}" --data.cmvn dump/cmvn.npz $train_args
fi
if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  asr-transfer decode --exp "exp/$system" --data "data/${lang}_test" --config "$decode_config"
fi
if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then asr-transfer report "exp/$system" --out exp/report; fi
