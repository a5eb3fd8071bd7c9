#!/usr/bin/env bash
# Cross-lingual transfer on Common Voice: the stages of recipes/crossling on a real release.
#   0 prepare the release's TSVs + MP3 clips into Kaldi data dirs (local/data_prep.py)
#   1-8 as recipes/crossling/run.sh: validate, fbank + CMVN, source vocabularies, multilingual
#       pretraining, source decodes, add-language (every target x method), target decodes, report
# Usage: ./run.sh --cv_root /path/to/cv-corpus-XX [--stage N] [--stop_stage N]
#                 [--sources "ru cy it eu pt"] [--targets "ro cs br ar uk"] [--methods "head full adapter"]
#                 [--pretrain_args ...] [--adapt_args ...] [--src_adapter_args ...] [--meta_args ...]
#                 (every other option goes to recipes/crossling unchanged: --adapt_seeds "1 2 3",
#                 --train_utts 50, --expdir, --model_config...; the methods: head full adapter
#                 metaadapter simadapter simadapter+)
set -euo pipefail

stage=0
stop_stage=100
cv_root=""
jobs=2
sources="ru cy it eu pt"   # the reference's source languages (the adapter paper's)
targets="ro cs br ar uk"
methods="head full adapter"
model_config=conf/model/tiny.yaml
pretrain_args=""
adapt_args=""
src_adapter_args=""
meta_args=""
source_token_type=unigram

other_options=()  # the options this script does not define: recipes/crossling's (parse_options.sh)
. "$(dirname "$0")/../common/parse_options.sh"

here=$(cd "$(dirname "$0")" && pwd)
if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "[$(date +%H:%M:%S)] stage 0: prepare Common Voice ($cv_root) into cv/data"
  [ -n "$cv_root" ] && [ -d "$cv_root" ] || { echo "$0: --cv_root DIR (a Common Voice release) is required" >&2; exit 2; }
  # shellcheck disable=SC2086
  python "$here/local/data_prep.py" "$cv_root" cv/data --langs $sources $targets --splits train dev test \
    --jobs "$jobs"
fi

[ "$stop_stage" -ge 1 ] || exit 0
[ "$stage" -ge 1 ] || stage=1
"$here/../crossling/run.sh" --corpus cv --stage "$stage" --stop_stage "$stop_stage" \
  --sources "$sources" --targets "$targets" --methods "$methods" --model_config "$model_config" \
  --source_token_type "$source_token_type" --pretrain_args "$pretrain_args" --adapt_args "$adapt_args" \
  --src_adapter_args "$src_adapter_args" --meta_args "$meta_args" "${other_options[@]}"
