#!/usr/bin/env bash
# Libri-Adapt (Mathur et al., ICASSP 2020): the CMatch paper's unsupervised adaptation tables, from a
# release folder to WERs. A source model per source domain (one microphone, clean speech), adapted to
# each target domain without its transcripts:
#   devices: M->P M->R P->M P->R R->M R->P (M Matrix Voice, P PlayStation Eye, R ReSpeaker), clean
#   noise:   ReSpeaker clean -> rain, wind, laughter
#   0 Kaldi data dirs from the release's CSVs (local/data_prep.py; dev = last 10 % of each train CSV)
#   1 validate data dirs   2 fbank + CMVN of each source domain   3 character tokenizer (as CMatch)
#   4 train a source model per source domain   5 choose the decoding on its dev data, decode the tests
#   6 report of the source models (their WER on every test set decoded)
# Unsupervised adaptation (no target transcripts read), as recipes/mini stages 7-10:
#   7 pseudo-label each target's training and dev audio with its source model, dump its features
#   8 adapt with every method   9 decode target and source test sets   10 adaptation tables: one
#     report per source model (exp/report_adapt/<system>/) and the paper's table over all pairs
#     (exp/report_adapt/RESULTS.md)
# Every stage is idempotent: rerunning skips finished work, and training resumes from
# exp/<system>/checkpoints/last.pt after a kill.
# Usage: ./run.sh --root /data/libriadapt [--stage N] [--stop_stage N] [--ngpu N] [--nproc N]
#                 [--accent en-us] [--pairs "matrix:pseye matrix:respeaker ..."] (clean device pairs)
#                 [--noise_device respeaker] [--noises "rain wind laughter"] (clean -> noise on one device)
#                 [--adapt_methods "self_training mmd adv cmatch_frame_average cmatch_ctc_align cmatch_ctc_pred"]
#                 [--model_config FILE] [--train_config FILE] [--train_args "--train.epochs 3"]
#                 [--decode_candidates "A.yaml B.yaml"] (chosen on dev into exp/<system>/decode.yaml)
#                 [--decode_config FILE] (skip the choice) [--adapt_args "--train.epochs 2"]
#                 [--speed_perturb "0.9 1.1"] [--dev_share 0.1] [--pseudo_keep 0.7] [--jobs 2]
# Without --ngpu: the tiny model on CPU (conf/model/tiny.yaml); --ngpu N: the papers' 27 M-parameter
# Transformer (conf/model/transformer_ref.yaml, conf/train/gpu.yaml), DDP over N GPUs when N > 1.
set -euo pipefail

stage=0
stop_stage=100
root=""            # the Libri-Adapt release folder (holds en-us/, en-gb/, en-in/)
accent=en-us       # en-us is replayed speech; en-gb and en-in are synthesised
pairs="matrix:pseye matrix:respeaker pseye:matrix pseye:respeaker respeaker:matrix respeaker:pseye"
noise_device=respeaker
noises="rain wind laughter"
dev_share=0.1      # Libri-Adapt has no dev split: CMatch held out the last 10 % of the training list
ngpu=0             # GPUs for training (0: CPU)
nproc=1            # CPU processes for DDP training when ngpu=0 (gloo)
jobs=2
model_config=""    # default conf/model/tiny.yaml on CPU, conf/model/transformer_ref.yaml with --ngpu
train_config=""    # default conf/train/mini.yaml on CPU, conf/train/gpu.yaml with --ngpu
train_args=""
speed_perturb=""   # Kaldi-style perturbed copies of the training set, e.g. "0.9 1.1"
decode_candidates=""  # cheapest first; default ctc_greedy + beam_fast (CPU) or + beam (GPU, the papers')
decode_config=""   # set: use it instead of the decoding chosen on dev
adapt_methods="self_training mmd adv cmatch_frame_average cmatch_ctc_align cmatch_ctc_pred"
adapt_config=conf/train/adapt.yaml   # shared; each conf/adapt/<method>.yaml after it sets its tuned lr and weight
adapt_args=""
pseudo_keep=0.7    # most confident share of pseudo-labels kept (CMatch paper: 70 %)

. "$(dirname "$0")/../common/parse_options.sh"

log() { echo "[$(date +%H:%M:%S)] stage $*"; }
here=$(cd "$(dirname "$0")" && pwd)
data=data
device=cpu
gpu_adapt_args=()
if [ "$ngpu" -gt 0 ]; then
  device=auto
  model_config=${model_config:-conf/model/transformer_ref.yaml}
  train_config=${train_config:-conf/train/gpu.yaml}
  decode_candidates=${decode_candidates:-"conf/decode/ctc_greedy.yaml conf/decode/beam.yaml"}
  # conf/train/adapt.yaml's batches and checkpoint interval are sized for the tiny model on a CPU
  gpu_adapt_args=(--train.max_batch_frames 60000 --train.num_workers 4 --train.save_every_steps 1000
                  --train.log_every_steps 50)
else
  model_config=${model_config:-conf/model/tiny.yaml}
  train_config=${train_config:-conf/train/mini.yaml}
  decode_candidates=${decode_candidates:-"conf/decode/ctc_greedy.yaml conf/decode/beam_fast.yaml"}
fi
model=$(basename "$model_config" .yaml)   # exp/<model>_<source domain>, e.g. exp/tiny_matrix_clean

# the adaptation tasks SOURCE:TARGET over domains <device>_<noise>, and the source domains
tasks=()
for p in $pairs; do
  [[ "$p" == ?*:?* ]] || { echo "$0: --pairs: '$p' is not SOURCE:TARGET, e.g. matrix:pseye" >&2; exit 2; }
  tasks+=("${p%%:*}_clean:${p#*:}_clean")
done
for n in $noises; do tasks+=("${noise_device}_clean:${noise_device}_$n"); done
[ ${#tasks[@]} -gt 0 ] || { echo "$0: no adaptation task: give --pairs or --noises" >&2; exit 2; }
sources=$(for t in "${tasks[@]}"; do echo "${t%%:*}"; done | awk '!seen[$0]++')
targets_of() { for t in "${tasks[@]}"; do [ "${t%%:*}" = "$1" ] && echo "${t#*:}"; done; return 0; }
dir() { echo "$data/${accent}_$1_$2"; }   # dir SPLIT DOMAIN
# every noise domain of every device: the report averages these as noise, any other as a device
noise_domains=()
for d in matrix pseye respeaker usb nexus6 shure; do
  for n in rain wind laughter; do noise_domains+=("${d}_$n"); done
done

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "0: Kaldi data dirs of $accent from the release in $root"
  [ -n "$root" ] && [ -d "$root" ] || { echo "$0: --root DIR (a Libri-Adapt release) is required" >&2; exit 2; }
  clean_devices=$(for t in "${tasks[@]}"; do echo "${t%%_*}"; s=${t#*:}; echo "${s%%_*}"; done | awk '!seen[$0]++')
  # what was prepared, and from where: a rerun with the same options skips the stage
  record="root=$(cd "$root" && pwd) accent=$accent dev_share=$dev_share clean:$(echo $clean_devices)"
  [ -n "$noises" ] && record+=" $noise_device:$noises"
  if [ -f "$data/prepared" ] && [ "$(cat "$data/prepared")" = "$record" ]; then
    echo "  $data/prepared records the same release and options, skipped"
  else
    rm -f "$data/prepared"
    # shellcheck disable=SC2086
    python "$here/local/data_prep.py" "$root" "$data" --accents "$accent" --noises clean \
      --devices $clean_devices --dev-share "$dev_share"
    if [ -n "$noises" ]; then
      # shellcheck disable=SC2086
      python "$here/local/data_prep.py" "$root" "$data" --accents "$accent" --noises $noises \
        --devices "$noise_device" --dev-share "$dev_share"
    fi
    echo "$record" > "$data/prepared"
  fi
fi

# the data dirs the tasks read: train, dev and test of every domain in a task
needed=()
for dom in $(for t in "${tasks[@]}"; do echo "${t%%:*}"; echo "${t#*:}"; done | awk '!seen[$0]++'); do
  for split in train dev test; do needed+=("$(dir $split "$dom")"); done
done

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "1: validate data dirs"
  for d in "${needed[@]}"; do
    [ -d "$d" ] || { echo "$0: $d: no such data dir (is its CSV in the release? stage 0 lists what it found)" >&2; exit 1; }
  done
  asr-transfer validate-data "${needed[@]}"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  for src in $sources; do
    log "2: fbank features of $src${speed_perturb:+ (speed perturbation $speed_perturb)} and its global CMVN"
    # a finished dump is skipped (its CMVN statistics are re-read); one made with other speeds is an error
    # shellcheck disable=SC2086
    asr-transfer features "$(dir train "$src")" --out dump ${speed_perturb:+--speed-perturb $speed_perturb} \
      --cmvn "dump/cmvn_$src.npz" --jobs "$jobs"
    asr-transfer features "$(dir dev "$src")" --out dump --jobs "$jobs"
  done
fi

tokenizer=exp/tokenizer/en_char
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "3: character tokenizer (as the CMatch paper) from the source domains' transcripts"
  train_dirs=()
  for src in $sources; do train_dirs+=("$(dir train "$src")"); done
  asr-transfer tokenizer "${train_dirs[@]}" --lang en --kind char --out "$tokenizer"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  launcher=(asr-transfer)
  if [ "$ngpu" -gt 1 ]; then
    launcher=(torchrun --standalone --nproc_per_node "$ngpu" -m asr_transfer.cli)
  elif [ "$ngpu" -eq 0 ] && [ "$nproc" -gt 1 ]; then
    launcher=(torchrun --standalone --nproc_per_node "$nproc" -m asr_transfer.cli)
  fi
  for src in $sources; do
    exp=exp/${model}_$src
    log "4: train $exp on $src"
    if [ -f "$exp/model.pt" ]; then
      echo "  $exp/model.pt exists, skipped"
      continue
    fi
    # shellcheck disable=SC2086
    "${launcher[@]}" train --config "$model_config" --config "$train_config" --exp "$exp" \
      --data.tokenizers "{en: $tokenizer}" --data.cmvn "dump/cmvn_$src.npz" \
      --data.train "[{dump: dump/${accent}_train_$src, lang: en}]" \
      --data.dev "[{dump: dump/${accent}_dev_$src, lang: en}]" \
      --train.device "$device" $train_args
  done
fi

# --config FILE when --decode_config is given; otherwise nothing: the experiment's recorded decoding
decode_opts=()
[ -n "$decode_config" ] && decode_opts=(--config "$decode_config")

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  for src in $sources; do
    exp=exp/${model}_$src
    if [ -z "$decode_config" ] && [ ! -f "$exp/decode.yaml" ]; then
      log "5: choose the decoding of $exp on $(dir dev "$src") among: $decode_candidates"
      # shellcheck disable=SC2086
      asr-transfer choose-decoding --exp "$exp" --data "$(dir dev "$src")" --candidates $decode_candidates
    fi
    log "5: decode the test sets of $src and of its targets with $exp"
    dirs=("$(dir test "$src")")
    for tgt in $(targets_of "$src"); do dirs+=("$(dir test "$tgt")"); done
    asr-transfer decode --exp "$exp" --data "${dirs[@]}" "${decode_opts[@]}"
  done
fi

source_exps=()
for src in $sources; do source_exps+=("exp/${model}_$src"); done

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  log "6: score and report the source models"
  asr-transfer report "${source_exps[@]}" --out exp/report
  echo
  cat exp/report/RESULTS.md
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  for t in "${tasks[@]}"; do
    src=${t%%:*} tgt=${t#*:}
    labels=exp/pseudo/${model}_$src
    log "7: pseudo-label the training and dev audio of $tgt with exp/${model}_$src (never their transcripts)"
    for split in train dev; do
      asr-transfer pseudo-label --exp "exp/${model}_$src" --data "$(dir $split "$tgt")" \
        --out "$labels/${accent}_${split}_$tgt" --keep "$pseudo_keep" "${decode_opts[@]}"
    done
    rest=$labels/${accent}_train_$tgt/${accent}_train_${tgt}_unlabelled  # the audio left without a label
    dumps=("$labels/${accent}_train_$tgt" "$labels/${accent}_dev_$tgt")
    [ -d "$rest" ] && dumps+=("$rest")
    asr-transfer features "${dumps[@]}" --out "dump/pseudo/${model}_$src" --jobs "$jobs"
  done
fi

if [ "$stage" -le 8 ] && [ "$stop_stage" -ge 8 ]; then
  for t in "${tasks[@]}"; do
    src=${t%%:*} tgt=${t#*:}
    exp=exp/${model}_$src pl=dump/pseudo/${model}_$src
    for m in $adapt_methods; do
      [ -f "conf/adapt/$m.yaml" ] || { echo "$0: no such method config conf/adapt/$m.yaml" >&2; exit 2; }
      out=exp/adapt/${model}_$src/${m}_$tgt
      log "8: adapt $exp to $tgt with $m -> $out"
      if [ -f "$out/model.pt" ]; then
        echo "  $out/model.pt exists, skipped"
        continue
      fi
      # the label-free terms (MMD, ADV, CMatch ctc_pred) also see the audio left without a pseudo-label
      rest=() unlabelled=$pl/${accent}_train_${tgt}_unlabelled
      [ -d "$unlabelled" ] && rest=(--data.target_unlabelled "[{dump: $unlabelled, lang: en}]")
      # the source experiment's own config (model, frontend, tokenizer, source data) is the base
      # shellcheck disable=SC2086
      asr-transfer train --config "$exp/config.yaml" --config "$adapt_config" --config "conf/adapt/$m.yaml" \
        --exp "$out" --train.init "$exp/model.pt" \
        --data.target "[{dump: $pl/${accent}_train_$tgt, lang: en}]" \
        --data.target_dev "[{dump: $pl/${accent}_dev_$tgt, lang: en}]" "${rest[@]}" \
        --adapt.target "$tgt" --train.device "$device" "${gpu_adapt_args[@]}" $adapt_args
    done
  done
fi

if [ "$stage" -le 9 ] && [ "$stop_stage" -ge 9 ]; then
  for t in "${tasks[@]}"; do
    src=${t%%:*} tgt=${t#*:}
    for m in $adapt_methods; do
      out=exp/adapt/${model}_$src/${m}_$tgt
      log "9: decode $out on the test sets of $tgt and of the source domain $src (forgetting)"
      asr-transfer decode --exp "$out" --data "$(dir test "$tgt")" "$(dir test "$src")" "${decode_opts[@]}"
    done
  done
fi

if [ "$stage" -le 10 ] && [ "$stop_stage" -ge 10 ]; then
  for src in $sources; do
    log "10: adaptation tables of exp/${model}_$src: source-only against every method"
    adapted=() pseudo=()  # pseudo-labels' WER against the true transcripts: for the report only
    for tgt in $(targets_of "$src"); do
      pseudo+=("exp/pseudo/${model}_$src/${accent}_train_$tgt")
      for m in $adapt_methods; do adapted+=("exp/adapt/${model}_$src/${m}_$tgt"); done
    done
    asr-transfer report "exp/${model}_$src" "${adapted[@]}" --out "exp/report_adapt/${model}_$src" \
      --source-domain "$src" --noise-domains "${noise_domains[@]}" --pseudo-labels "${pseudo[@]}"
  done
  log "10: the paper's table: every task and method"
  # shellcheck disable=SC2086
  python "$here/local/paper_table.py" --exp exp --model "$model" --accent "$accent" --tasks "${tasks[@]}" \
    --methods $adapt_methods --out exp/report_adapt/RESULTS.md
  echo
  cat exp/report_adapt/RESULTS.md
fi
