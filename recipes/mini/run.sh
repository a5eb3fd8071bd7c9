#!/usr/bin/env bash
# The mini recipe: English spoken digits in 11 domains (clean; 6 hard and 4 paper-regime
# device/noise domains, asr_transfer/synth/domains.py), tiny CTC/attention model.
#   0 synthesise corpus      1 validate data dirs   2 fbank + CMVN   3 tokenizer
#   4 train                  5 decode               6 score + report
# Unsupervised adaptation of that source model to shifted domains (no target transcripts read):
#   7 pseudo-label each target domain's training and dev audio, dump its features (the dev audio is
#     the held-out voices' split, en_heldout_*, when the corpus has one: the adaptation's dev criterion
#     then measures voices the model never heard, as the test does)
#   8 adapt with every method   9 decode target and source test sets   10 adaptation table
# Every stage is idempotent: rerunning skips finished work, and training resumes from
# exp/<system>/checkpoints/last.pt after a kill.
# Usage: ./run.sh [--stage N] [--stop_stage N] [--ngpu N] [--nproc N] [--preset mini|tiny]
#                 [--train_args "--train.epochs 3 --model.encoder.num_blocks 2"]
#                 [--decode_candidates "A.yaml B.yaml"] (chosen on dev into exp/<system>/decode.yaml)
#                 [--decode_config FILE]  (skip the choice: decode, pseudo-label and adapt with FILE)
#                 [--speed_perturb "0.9 1.1"] [--token_type char|unigram|bpe --nbpe N]
#                 [--espnet_exp DIR]   start from an ESPnet2 experiment (its model, tokenizer and
#                                      frontend) instead of training the tiny model from scratch
#                 [--adapt_domains "phone rain"] [--adapt_methods "cmatch_ctc_pred mmd"] (conf/adapt/*.yaml)
#                 [--adapt_args "--train.epochs 2"] [--adapt_tuned DIR] (the tuned lr and weight
#                 of each method, local/tune_adapt.sh; default exp/tune) [--pl_rounds N] (iterative pseudo-labelling:
#                 rounds 2..N re-label the target with the previous round's adapted model; each
#                 re-labelling's pseudo_label.yaml says how much it changed the previous round's labels)
#                 [--adapt_seeds "1 2"] (adaptation training seeds: seed 1 into exp/adapt/<method>_<domain>,
#                 seed N into exp/adapt/<method>_<domain>_seedN; the table pools them as seeds)
#                 [--adapt_soup true] (with several seeds: also their weight average, asr-transfer average,
#                 into exp/adapt/<method>_<domain>_soup, a column of its own in the table)
#                 [--adapt_jobs N] (stages 8 and 9: N adaptation chains, one per method x domain x seed with
#                 its rounds, and N decodes at a time, each with nproc/N threads; logs in exp/adapt/log/)
#                 [--adapt_config conf/train/adapt_noisy_student.yaml] (the shared adaptation config;
#                 that one masks the student's input; each method's conf/adapt/<method>.yaml comes after
#                 it and sets the method's tuned lr: another lr goes in --adapt_args "--train.lr X")
#                 [--adapt_train adapter] (train a per-domain adapter on the frozen source model instead of
#                 the whole model: exp/adapt/<method>_adapter_<domain>/<domain>.adapter; the source domain is
#                 decoded by the source model itself, so nothing is forgotten)
set -euo pipefail

stage=0
stop_stage=100
ngpu=0             # GPUs for training (0: CPU)
nproc=1            # CPU processes for DDP training when ngpu=0 (gloo)
preset=mini
seed=1
jobs=2
noise_dir=""       # default: ASR_TRANSFER_NOISE_DIR or the repository's data/noise
model_config=conf/model/tiny.yaml
train_config=""    # default conf/train/mini.yaml, or conf/train/finetune.yaml with --espnet_exp
decode_candidates="conf/decode/ctc_greedy.yaml conf/decode/beam_fast.yaml"  # cheapest first
decode_config=""   # set: use it instead of the decoding chosen on dev
train_args=""
speed_perturb="0.9 1.1"  # Kaldi-style perturbed copies of the training set ("" for none)
token_type=unigram # char | unigram | bpe; with 40 units each digit word is one token
nbpe=40
system=""          # exp/<system>; default tiny_clean, or espnet_ft with --espnet_exp
espnet_exp=""      # an ESPnet2 asr_train experiment dir (config.yaml + .pth) to fine-tune
corpus=corpus
domains="clean phone laptop farfield rain wind laugh mic room drizzle breeze"
adapt_domains="room"                  # target domains to adapt to ("" skips stages 7-10); room is in
                                      # the paper's regime (source-only WER 1.4x clean), phone is hard
adapt_methods="cmatch_ctc_pred"       # conf/adapt/<name>.yaml (the labelling the held-out dev criterion chooses); all:
                                      # "self_training mmd adv cmatch_frame_average cmatch_ctc_align cmatch_ctc_pred"
adapt_config=conf/train/adapt.yaml
adapt_tuned=exp/tune                  # <method>.yaml here (local/tune_adapt.sh) overrides lr and weight
adapt_args=""
pseudo_keep=0.7                       # most confident share of pseudo-labels kept (CMatch paper: 70 %)
pl_rounds=1                           # pseudo-labelling rounds (2+: re-label with the adapted model)
adapt_seeds=1                         # adaptation training seeds (train.seed); stage 10 pools them
adapt_train=model                     # model | adapter (a domain adapter, conf/train/adapt_adapter.yaml)
adapt_soup=false                      # true: also the weight average of each method's seeds (a soup)
adapt_jobs=1                          # adaptation chains (stage 8) and decodes (stage 9) run at once

. "$(dirname "$0")/../common/parse_options.sh"

log() { echo "[$(date +%H:%M:%S)] stage $*"; }
data=$corpus/data
if [ -n "$espnet_exp" ]; then
  [ -f "$espnet_exp/config.yaml" ] || { echo "$0: $espnet_exp/config.yaml: not an ESPnet2 experiment" >&2; exit 2; }
  system=${system:-espnet_ft}
  train_config=${train_config:-conf/train/finetune.yaml}
  dump=dump_espnet   # the ESPnet model's own frontend, not our fbank
else
  system=${system:-tiny_clean}
  train_config=${train_config:-conf/train/mini.yaml}
  dump=dump
fi
exp=exp/$system
case $adapt_train in
  model) variant="" ;;
  adapter)
    variant=_adapter
    [ "$pl_rounds" -eq 1 ] || { echo "$0: --adapt_train adapter takes one pseudo-labelling round" >&2; exit 2; } ;;
  *) echo "$0: --adapt_train $adapt_train: model or adapter" >&2; exit 2 ;;
esac
. "$(dirname "$0")/../common/jobs.sh"  # run_job, finish_jobs (--adapt_jobs)
case $adapt_soup in
  false) ;;
  true)
    [ "$(echo $adapt_seeds | wc -w)" -gt 1 ] || { echo "$0: --adapt_soup true averages seeds: give --adapt_seeds \"1 2 ...\"" >&2; exit 2; }
    [ "$adapt_train" = model ] || { echo "$0: --adapt_soup true averages models, not domain adapters" >&2; exit 2; } ;;
  *) echo "$0: --adapt_soup $adapt_soup: true or false" >&2; exit 2 ;;
esac
# a control (method source_only) reads no target audio: its run on the first domain serves every
# domain (decoded on each one's test set; the report fills every domain's cell with it)
first_domain=$(echo $adapt_domains | cut -d' ' -f1)
is_control() { grep -Eq 'method: *source_only' "conf/adapt/$1.yaml"; }
serves() { is_control "$1" && [ "$2" != "$first_domain" ]; }
# the runs of method M adapted to domain D: one per seed, and their soup with --adapt_soup true
adapted_runs() {
  local m=$1 d=$2 s
  serves "$m" "$d" && return 0
  for s in $adapt_seeds; do echo "exp/adapt/${m}${variant}_$d$(seed_suffix "$s")"; done
  [ "$adapt_soup" = true ] && echo "exp/adapt/${m}_${d}_soup"
  return 0
}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "0: synthesise the $preset corpus into $corpus"
  if [ -f "$corpus/corpus.json" ]; then
    echo "  $corpus/corpus.json exists, skipped"
  else
    asr-transfer synth --preset "$preset" --out "$corpus" --seed "$seed" --jobs "$jobs" \
      ${noise_dir:+--noise-dir "$noise_dir"}
  fi
fi

# the adaptation's dev split: voices held out from both training and test when the corpus has them
# (mini does), so that its dev criterion measures unseen voices as the test does; else dev
adapt_dev=dev
[ -d "$data/en_heldout_clean" ] && adapt_dev=heldout

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "1: validate data dirs"
  asr-transfer validate-data "$data"/*
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ] && [ -n "$espnet_exp" ]; then
  log "2: features with the frontend of $espnet_exp${speed_perturb:+ (speed perturbation $speed_perturb)}"
  # shellcheck disable=SC2086
  asr-transfer features "$data/en_train_clean" --out $dump --espnet-exp "$espnet_exp" \
    ${speed_perturb:+--speed-perturb $speed_perturb}
  asr-transfer features "$data/en_dev_clean" --out $dump --espnet-exp "$espnet_exp"
elif [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "2: fbank features${speed_perturb:+ (speed perturbation $speed_perturb)} and global CMVN of the training set"
  # a finished dump is skipped (its CMVN statistics are re-read); one made with other speeds is an error
  # shellcheck disable=SC2086
  asr-transfer features "$data/en_train_clean" --out dump ${speed_perturb:+--speed-perturb $speed_perturb} \
    --cmvn dump/cmvn.npz --jobs "$jobs"
  asr-transfer features "$data/en_dev_clean" --out dump --jobs "$jobs"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ] && [ -n "$espnet_exp" ]; then
  log "3: tokenizer: the token list of $espnet_exp"
elif [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "3: $token_type tokenizer"
  asr-transfer tokenizer "$data/en_train_clean" --lang en --kind "$token_type" --vocab-size "$nbpe" \
    --out "exp/tokenizer/en_$token_type"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "4: train $exp"
  if [ -f "$exp/model.pt" ]; then
    echo "  $exp/model.pt exists, skipped"
  else
    launcher=()
    if [ "$ngpu" -gt 1 ]; then
      launcher=(torchrun --standalone --nproc_per_node "$ngpu" -m asr_transfer.cli)
    elif [ "$ngpu" -eq 0 ] && [ "$nproc" -gt 1 ]; then
      launcher=(torchrun --standalone --nproc_per_node "$nproc" -m asr_transfer.cli)
    else
      launcher=(asr-transfer)
    fi
    device=cpu; [ "$ngpu" -gt 0 ] && device=auto
    if [ -n "$espnet_exp" ]; then
      # model, tokenizer, frontend and CMVN all come from the ESPnet experiment
      start=(--train.init_espnet "$espnet_exp")
    else
      start=(--config "$model_config" --data.tokenizers "{en: exp/tokenizer/en_$token_type}"
             --data.cmvn dump/cmvn.npz)
    fi
    # shellcheck disable=SC2086
    "${launcher[@]}" train --config "$train_config" "${start[@]}" --exp "$exp" \
      --data.train "[{dump: $dump/en_train_clean, lang: en}]" \
      --data.dev "[{dump: $dump/en_dev_clean, lang: en}]" \
      --train.device "$device" $train_args
  fi
fi

# --config FILE when --decode_config is given; otherwise nothing: the experiment's recorded decoding
decode_opts=()
[ -n "$decode_config" ] && decode_opts=(--config "$decode_config")

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  if [ -z "$decode_config" ] && [ ! -f "$exp/decode.yaml" ]; then
    log "5: choose the decoding on dev data among: $decode_candidates"
    # shellcheck disable=SC2086
    asr-transfer choose-decoding --exp "$exp" --data "$data/en_dev_clean" --candidates $decode_candidates
  fi
  log "5: decode the test set of every domain"
  dirs=()
  for d in $domains; do dirs+=("$data/en_test_$d"); done
  asr-transfer decode --exp "$exp" --data "${dirs[@]}" "${decode_opts[@]}"
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  log "6: score and report"
  asr-transfer report "$exp" --out exp/report
  echo
  cat exp/report/RESULTS.md
fi

# features of a data dir with the source model's frontend (ours, or the ESPnet experiment's) into DUMP
dump_features() {
  local out=$1; shift
  if [ -n "$espnet_exp" ]; then
    asr-transfer features "$@" --out "$out" --espnet-exp "$espnet_exp"
  else
    asr-transfer features "$@" --out "$out"
  fi
}

# pseudo-label domain D's training and dev audio with experiment SRC into exp/LABELS, dump them into DUMP;
# with PREV (the previous round's exp/PREV) the summary says how much re-labelling changed the labels
pseudo_label() {
  local src=$1 d=$2 labels=$3 out=$4 prev=${5:-}
  for split in train $adapt_dev; do
    asr-transfer pseudo-label --exp "$src" --data "$data/en_${split}_$d" --out "exp/$labels/en_${split}_$d" \
      --keep "$pseudo_keep" "${decode_opts[@]}" ${prev:+--previous "exp/$prev/en_${split}_$d"}
  done
  local rest=exp/$labels/en_train_$d/en_train_${d}_unlabelled  # the audio left without a pseudo-label
  dump_features "$out" "exp/$labels/en_train_$d" "exp/$labels/en_${adapt_dev}_$d" $([ -d "$rest" ] && echo "$rest")
}

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ] && [ -n "$adapt_domains" ]; then
  log "7: pseudo-label the training and dev audio of: $adapt_domains (never their transcripts)"
  # the source side of the dev criterion on the held-out voices (a finished dump is skipped)
  [ "$adapt_dev" = heldout ] && dump_features "$dump" "$data/en_heldout_clean"
  for d in $adapt_domains; do pseudo_label "$exp" "$d" pseudo "$dump/pseudo"; done
fi

# adapt FROM's model to domain D with method M on the dumps in PL into OUT with training seed S
# (skipped when finished)
adapt() {
  local from=$1 d=$2 m=$3 pl=$4 out=$5 s=$6
  if [ -f "$out/model.pt" ]; then
    echo "  $out/model.pt exists, skipped"
    return
  fi
  # the label-free terms (MMD, ADV, CMatch ctc_pred) also see the audio left without a pseudo-label
  local rest=() unlabelled=$pl/en_train_${d}_unlabelled
  [ -d "$unlabelled" ] && rest=(--data.target_unlabelled "[{dump: $unlabelled, lang: en}]")
  local tuned=()
  [ -f "$adapt_tuned/$m.yaml" ] && tuned=(--config "$adapt_tuned/$m.yaml")
  # a domain adapter: its own learning rate and bottleneck over the method's tuned matching weight
  [ "$adapt_train" = adapter ] && tuned+=(--config conf/train/adapt_adapter.yaml)
  # the source experiment's own config (model, frontend, tokenizer, source data) is the base
  # shellcheck disable=SC2086
  asr-transfer train --config "$exp/config.yaml" --config "$adapt_config" --config "conf/adapt/$m.yaml" \
    "${tuned[@]}" --exp "$out" --train.init "$from/model.pt" --train.init_espnet null \
    --data.target "[{dump: $pl/en_train_$d, lang: en}]" \
    --data.dev "[{dump: $dump/en_${adapt_dev}_clean, lang: en}]" \
    --data.target_dev "[{dump: $pl/en_${adapt_dev}_$d, lang: en}]" "${rest[@]}" \
    --adapt.target "$d" --train.device "$device" --train.seed "$s" $adapt_args
}

# the run dir suffix of adaptation seed S: none for seed 1 (the single-seed layout), _seedS otherwise
seed_suffix() { [ "$1" = 1 ] || echo "_seed$1"; }

# adapt the source model to domain D with method M and training seed S, round after round (skipped
# when the last round finished: no earlier round is redone)
adapt_chain() {
  local d=$1 m=$2 s=$3 sfx final from pl labels round out
  sfx=$(seed_suffix "$s")
  final=exp/adapt/${m}${variant}_$d$sfx
  if [ -f "$final/model.pt" ]; then
    echo "  $final/model.pt exists, skipped"
    return
  fi
  from=$exp pl=$dump/pseudo labels=pseudo
  for round in $(seq 1 "$pl_rounds"); do
    out=$final; [ "$round" -lt "$pl_rounds" ] && out=exp/adapt/${m}_$d${sfx}_round$round
    # the control reads no target audio: re-labelling for it would cost minutes for labels nothing reads
    if [ "$round" -gt 1 ] && ! is_control "$m"; then
      log "8: round $round: re-label $d with $from"
      pl=$dump/pseudo_$m${sfx}_round$round
      pseudo_label "$from" "$d" "pseudo_$m${sfx}_round$round" "$pl" "$labels"
      labels=pseudo_$m${sfx}_round$round
    fi
    log "8: adapt $from to $d with $m (seed $s) -> $out"
    adapt "$from" "$d" "$m" "$pl" "$out" "$s"
    from=$out
  done
}

if [ "$stage" -le 8 ] && [ "$stop_stage" -ge 8 ] && [ -n "$adapt_domains" ]; then
  device=cpu; [ "$ngpu" -gt 0 ] && device=auto
  for d in $adapt_domains; do
    for m in $adapt_methods; do
      [ -f "conf/adapt/$m.yaml" ] || { echo "$0: no such method config conf/adapt/$m.yaml" >&2; exit 2; }
      if serves "$m" "$d"; then
        log "8: $m reads no target audio: its $first_domain runs serve $d"
        continue
      fi
      for s in $adapt_seeds; do
        run_job "exp/adapt/log/${m}${variant}_$d$(seed_suffix "$s").log" adapt_chain "$d" "$m" "$s"
      done
    done
  done
  finish_jobs 8
  if [ "$adapt_soup" = true ]; then
    for d in $adapt_domains; do
      for m in $adapt_methods; do
        soup=exp/adapt/${m}_${d}_soup
        if ! serves "$m" "$d" && [ ! -f "$soup/model.pt" ]; then
          log "8: the soup of $m's seeds on $d -> $soup"
          # shellcheck disable=SC2046
          asr-transfer average $(for s in $adapt_seeds; do echo "exp/adapt/${m}_$d$(seed_suffix "$s")"; done) --out "$soup"
        fi
      done
    done
  fi
fi

if [ "$stage" -le 9 ] && [ "$stop_stage" -ge 9 ] && [ -n "$adapt_domains" ]; then
  for d in $adapt_domains; do
    for m in $adapt_methods; do
      for out in $(adapted_runs "$m" "$d"); do
        log "9: decode $out on en_test_$d and the source domain (forgetting)"
        if [ "$adapt_train" = adapter ]; then
          # the source model with the domain adapter swapped in for audio of domain $d (utt2domain):
          # the source domain is decoded by the source model alone
          run_job "exp/adapt/log/decode_$(basename "$out").log" \
            asr-transfer decode --exp "$exp" --adapter "$out/$d.adapter" --out-root "$out" \
            --data "$data/en_test_$d" "$data/en_test_clean" "${decode_opts[@]}"
        else
          tests=("$data/en_test_$d")
          # the control serves every domain: their test sets too
          if is_control "$m"; then tests=(); for x in $adapt_domains; do tests+=("$data/en_test_$x"); done; fi
          run_job "exp/adapt/log/decode_$(basename "$out").log" \
            asr-transfer decode --exp "$out" --data "${tests[@]}" "$data/en_test_clean" "${decode_opts[@]}"
        fi
      done
    done
  done
  finish_jobs 9
fi

if [ "$stage" -le 10 ] && [ "$stop_stage" -ge 10 ] && [ -n "$adapt_domains" ]; then
  log "10: adaptation table: source-only against every method"
  adapted=()
  pseudo=()  # their WER against the true transcripts: the regime table's, for the report only
  for d in $adapt_domains; do
    pseudo+=("exp/pseudo/en_train_$d")
    for m in $adapt_methods; do
      for out in $(adapted_runs "$m" "$d"); do adapted+=("$out"); done
    done
  done
  # --source-model: $exp even when it continued from another model (a control's run has 'adapt')
  asr-transfer report "$exp" "${adapted[@]}" --source-model "$exp" --out exp/report_adapt \
    --pseudo-labels "${pseudo[@]}"
  echo
  cat exp/report_adapt/RESULTS.md
fi
