#!/usr/bin/env bash
# Cross-lingual transfer (Hou et al., IEEE/ACM TASLP 2021): a multilingual source model, then every target
# language by every method (head | full | adapter | metaadapter | simadapter | simadapter+), on the
# synthetic corpus.
#   0 synthesise corpus (or --corpus DIR of an existing one)   1 validate data dirs
#   2 fbank + CMVN of the source languages                      3 SentencePiece per source language
#   4 pretrain the multilingual model (language-balanced); then, when a method needs them, the
#     source adapters (exp/src_adapters: simadapter, simadapter+) and the MetaAdapter (exp/meta:
#     metaadapter, simadapter+), both on the frozen multilingual body
#   5 decode the sources' test sets
#   6 add-language: every target x every method                 7 decode every target's test set
#   8 report: the paper-shaped table (exp/report/RESULTS.md, report.html)
# Every stage is idempotent: finished work is skipped, training resumes after a kill.
# Usage: ./run.sh [--stage N] [--stop_stage N] [--preset mini|xling|standard] [--corpus DIR]
#                 [--sources "de fr es it pl"] [--targets "ro cs uk ar"] [--methods "head full adapter"]
# (--sources and --targets default to the preset's: standard adds the sources ru nl pt and the target br)
#                 [--pretrain_args "--train.epochs 5"] [--adapt_args "--train.epochs 10 --adapt.bottleneck 8"]
#                 [--src_adapter_args "--train.epochs 2"] [--meta_args "--adapt.algorithm reptile"]
# A method's own settings (its learning rate chosen on dev data, SimAdapter's guide weight...) go
# in <adapt_config without .yaml>/<method>.yaml, read after adapt_config when it exists.
# --preset xling (between mini and standard: 150 training and 200 test utterances per target)
# defaults to conf/train/xling_pretrain_xling.yaml and conf/train/xling_adapt_150.yaml.
# simadapter fuses <expdir>/<target>_adapter and simadapter+ <expdir>/<target>_metaadapter: list those methods
# before them in --methods (the default order of the paper's table does). simadapter_alone and
# simadapter+_alone are the fusion ablations (the fusion over exp/<target>_adapter, _metaadapter alone:
# what the sources add).
#                 [--source_token_type char|unigram|bpe] (targets: --adapt_args "--tokenizer.kind char")
#                 [--model_config conf/model/small.yaml --pretrain_config conf/train/xling_pretrain_small.yaml
#                  --expdir exp_small]  a larger base (3.3 M parameters in the body, trained to its dev
#                  criterion) and everything on it under exp_small/, beside the tiny base's exp/ (the
#                  tokenizers stay in exp/tokenizer); docs/benchmarks.md, "Issue 17: a larger base"
#                 [--adapt_config conf/train/xling_adapt_small.yaml]  on that base: add-language's defaults
#                  with every method on Head's and Full-FT's schedule ("Issue 17: equal-budget tuning")
#                 [--adapt_seeds "1 2 3"]  every method on every target once per training seed (seed 1 into
#                  <expdir>/<target>_<method>, seed N into <target>_<method>_seedN; SimAdapter(+) fuses the
#                  adapter of its own seed); the report pools a cell's seeds (their mean WER, intervals that
#                  resample the seeds too) and adds a table of each method's run chosen on dev among its seeds
#                 [--train_utts 50]  a learning-curve point: each target's training set cut to 50 utterances
#                  (asr-transfer subset, seeded: <data>/<target>_train50_<domain>), runs into
#                  <expdir>/<target>_<method>_u50[_seedN], their report into <expdir>/report_u50
#                 [--adapt_jobs N]  stages 6 and 7: N add-language chains at a time (one per target and seed,
#                  its methods in the order given, so SimAdapter(+) finds its adapter) and N decodes, each with
#                  nproc / N threads; logs in <expdir>/log/
#                 [--lang_adapters true]  language-adaptive pretraining: the base trains with one adapter per
#                  source language (conf/train/xling_lang_adapters.yaml) and is its own source adapters
#                  (no exp/src_adapters); MetaAdapter meta-trains on it ("Issue 17: language-adaptive pretraining")
set -euo pipefail

stage=0
stop_stage=100
preset=mini
seed=1
jobs=2
noise_dir=""       # default: ASR_TRANSFER_NOISE_DIR or the repository's data/noise
corpus=corpus
sources=""         # default by preset: its source languages but English (mini, xling: de fr es it pl;
targets=""         # standard: + ru nl pt); its targets (mini, xling: ro cs uk ar; standard: + br)
methods="head full adapter"
model_config=conf/model/tiny.yaml
pretrain_config=""   # default by preset: conf/train/xling_pretrain.yaml, xling_pretrain_xling.yaml
src_adapter_config=conf/train/xling_source_adapters.yaml
meta_config=conf/train/xling_meta.yaml
adapt_config=""      # default by preset: conf/train/xling_adapt.yaml, xling_adapt_150.yaml; none: add-language's own
decode_config=conf/decode/ctc_greedy.yaml
source_token_type=unigram  # char | unigram | bpe
nbpe_source=150    # the paper; SentencePiece stops at what the text supports
pretrain_args=""
src_adapter_args=""
meta_args=""
adapt_args=""
domain=clean
expdir=exp          # the experiments but the tokenizers (exp/tokenizer): a second base beside the first
adapt_seeds=1       # add-language training seeds (train.seed); the report pools them
train_utts=""       # a number: the targets' training sets cut to that many utterances (a learning curve)
lang_adapters=false  # true: pretrain with an adapter per source language (the base holds the source adapters)
adapt_jobs=1        # stages 6-7: chains (target x seed, its methods in order) and decodes run at once
lang_adapter_config=conf/train/xling_lang_adapters.yaml

. "$(dirname "$0")/../common/parse_options.sh"
. "$(dirname "$0")/../common/jobs.sh"  # run_job, finish_jobs (--adapt_jobs)

case $train_utts in
  '') ;;
  *[!0-9]*|0) echo "$0: --train_utts $train_utts: a positive number of utterances" >&2; exit 2 ;;
esac
case $preset in
  xling) pretrain_config=${pretrain_config:-conf/train/xling_pretrain_xling.yaml}
         adapt_config=${adapt_config:-conf/train/xling_adapt_150.yaml} ;;
  *) pretrain_config=${pretrain_config:-conf/train/xling_pretrain.yaml}
     adapt_config=${adapt_config:-conf/train/xling_adapt.yaml} ;;
esac
case $preset in  # the preset's languages (asr_transfer/synth/presets.py); English is the CMatch recipes'
  standard) sources=${sources:-"de fr es it pl ru nl pt"}; targets=${targets:-"ro cs uk ar br"} ;;
  *) sources=${sources:-"de fr es it pl"}; targets=${targets:-"ro cs uk ar"} ;;
esac

log() { echo "[$(date +%H:%M:%S)] stage $*"; }
# the run dir suffix of training seed S: none for seed 1 (the single-seed layout), _seedS otherwise
seed_suffix() { [ "$1" = 1 ] || echo "_seed$1"; }
data=$corpus/data
u=${train_utts:+_u$train_utts}  # the run dir suffix of a learning-curve point
exp=$expdir/multi  # the multilingual base
src_adapters=$expdir/src_adapters  # SimAdapter's sources: trained on the frozen base, or the base itself
la_conf=()
if [ "$lang_adapters" = true ]; then src_adapters=$exp; la_conf=(--config "$lang_adapter_config"); fi

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "0: synthesise the $preset corpus into $corpus"
  if [ -f "$corpus/corpus.json" ]; then
    echo "  $corpus/corpus.json exists, skipped"
  else
    asr-transfer synth --preset "$preset" --out "$corpus" --seed "$seed" --jobs "$jobs" \
      ${noise_dir:+--noise-dir "$noise_dir"}
  fi
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "1: validate data dirs"
  dirs=()
  for l in $sources $targets; do for s in train dev test; do dirs+=("$data/${l}_${s}_$domain"); done; done
  asr-transfer validate-data "${dirs[@]}"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "2: fbank of the source languages, global CMVN over all their training data"
  train_dirs=(); dev_dirs=()
  for l in $sources; do train_dirs+=("$data/${l}_train_$domain"); dev_dirs+=("$data/${l}_dev_$domain"); done
  asr-transfer features "${train_dirs[@]}" --out dump --cmvn dump/cmvn.npz
  asr-transfer features "${dev_dirs[@]}" --out dump
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "3: one $source_token_type vocabulary per source language"
  for l in $sources; do
    asr-transfer tokenizer "$data/${l}_train_$domain" --lang "$l" --kind "$source_token_type" \
      --vocab-size "$nbpe_source" \
      --out "exp/tokenizer/$l"
  done
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "4: pretrain the multilingual model $exp"
  if [ -f "$exp/model.pt" ]; then
    echo "  $exp/model.pt exists, skipped"
  else
    tr=""; dv=""; tk=""
    for l in $sources; do
      tr+="{dump: dump/${l}_train_$domain, lang: $l},"
      dv+="{dump: dump/${l}_dev_$domain, lang: $l},"
      tk+="$l: exp/tokenizer/$l,"
    done
    # shellcheck disable=SC2086
    asr-transfer train --config "$model_config" --config "$pretrain_config" "${la_conf[@]}" --exp "$exp" \
      --data.train "[${tr%,}]" --data.dev "[${dv%,}]" --data.tokenizers "{${tk%,}}" \
      --data.cmvn dump/cmvn.npz --train.device cpu $pretrain_args
  fi
  needs() { for m in $methods; do for x in "$@"; do [ "$m" = "$x" ] && return 0; done; done; return 1; }
  # the base's model, data and features without its method: the next runs bring their own adapt: section
  python -c "import sys; from asr_transfer.config import load_config, save_config; \
c = load_config([sys.argv[1]]); c.pop('adapt', None); save_config(c, sys.argv[2])" "$exp/config.yaml" "$expdir/base_config.yaml"
  if needs simadapter simadapter+ && [ "$src_adapters" != "$exp" ]; then
    log "4: source adapters on the frozen $exp -> $src_adapters"
    if [ -f "$src_adapters/model.pt" ]; then
      echo "  $src_adapters/model.pt exists, skipped"
    else
      # shellcheck disable=SC2086
      asr-transfer train --config "$expdir/base_config.yaml" --config "$src_adapter_config" --exp "$src_adapters" \
        --train.init "$exp/model.pt" --adapt.langs "[${sources// /,}]" --train.device cpu $src_adapter_args
    fi
  fi
  if needs metaadapter simadapter+; then
    log "4: meta-train the MetaAdapter over the sources on the frozen $exp -> $expdir/meta"
    if [ -f "$expdir/meta/model.pt" ]; then
      echo "  $expdir/meta/model.pt exists, skipped"
    else
      # shellcheck disable=SC2086
      asr-transfer train --config "$expdir/base_config.yaml" --config "$meta_config" --exp "$expdir/meta" \
        --train.init "$exp/model.pt" --train.device cpu $meta_args
    fi
  fi
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "5: decode the test set of every source language"
  for l in $sources; do
    asr-transfer decode --exp "$exp" --data "$data/${l}_test_$domain" --config "$decode_config" --lang "$l"
  done
fi

# add target L by every method in --methods, in order, with training seed S
add_language_chain() {
  local l=$1 s=$2 x m method from own conf
  x=$(seed_suffix "$s")
  for m in $methods; do
    case $m in  # what each method starts from besides the multilingual model (the same seed's adapter)
      metaadapter) from=(--adapt.meta "$expdir/meta") ;;
      simadapter) from=(--adapt.sources "$src_adapters" --adapt.target_adapter "$expdir/${l}_adapter$u$x") ;;
      simadapter+) from=(--adapt.sources "$src_adapters" --adapt.target_adapter "$expdir/${l}_metaadapter$u$x") ;;
      # the fusion ablations: SimAdapter(+)'s fusion layers over the target's adapter alone
      simadapter_alone) from=(--adapt.use_sources false --adapt.target_adapter "$expdir/${l}_adapter$u$x") ;;
      simadapter+_alone) from=(--adapt.use_sources false --adapt.target_adapter "$expdir/${l}_metaadapter$u$x") ;;
      *) from=() ;;
    esac
    method=${m%_alone}
    own=()
    [ -f "${adapt_config%.yaml}/$method.yaml" ] && own=(--config "${adapt_config%.yaml}/$method.yaml")
    if [ "${#from[@]}" -ge 4 ] && [ ! -f "${from[3]}/add_language.yaml" ]; then
      echo "$0: $m for $l fuses ${from[3]}, which is not finished: list its method earlier" >&2; exit 2
    fi
    conf=(--config "$adapt_config")
    [ "$adapt_config" = none ] && conf=()  # add-language's defaults (add-language --help)
    # shellcheck disable=SC2086
    asr-transfer add-language --base "$exp" --lang "$l" --method "$method" --exp "$expdir/${l}_$m$u$x" \
      --train "$data/${l}_train${train_utts}_$domain" --dev "$data/${l}_dev_$domain" \
      "${conf[@]}" --decode-config "$decode_config" "${from[@]}" "${own[@]}" --train.seed "$s" $adapt_args
  done
}

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  log "6: add every target language by every method"
  if [ -n "$train_utts" ]; then
    for l in $targets; do
      cut=$data/${l}_train${train_utts}_$domain
      if [ -f "$cut/wav.scp" ]; then
        echo "  $cut exists, skipped"
      else
        asr-transfer subset "$data/${l}_train_$domain" --utts "$train_utts" --out "$cut"
      fi
    done
  fi
  for s in $adapt_seeds; do
    for l in $targets; do
      run_job "$expdir/log/add_language_$l$u$(seed_suffix "$s").log" add_language_chain "$l" "$s"
    done
  done
  finish_jobs 6
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  log "7: decode every target's test set"
  for s in $adapt_seeds; do
    for l in $targets; do
      for m in $methods; do
        run="$expdir/${l}_$m$u$(seed_suffix "$s")"
        run_job "$expdir/log/decode_$(basename "$run").log" \
          asr-transfer decode --exp "$run" --data "$data/${l}_test_$domain" --config "$decode_config" --lang "$l"
      done
    done
  done
  finish_jobs 7
fi

if [ "$stage" -le 8 ] && [ "$stop_stage" -ge 8 ]; then
  log "8: report"
  exps=()
  for s in $adapt_seeds; do
    for l in $targets; do for m in $methods; do exps+=("$expdir/${l}_$m$u$(seed_suffix "$s")"); done; done
  done
  # the base model's own WERs per source language come with the table: add_language.yaml names it
  asr-transfer report "${exps[@]}" --out "$expdir/report$u" \
    --note "Sources: $sources. Targets: $targets${train_utts:+ ($train_utts training utterances each)}. Corpus: $corpus ($preset)."
  echo
  cat "$expdir/report$u/RESULTS.md"
fi
