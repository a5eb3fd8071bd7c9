#!/usr/bin/env bash
# Equal tuning for every unsupervised adaptation method: the same grid (learning rate x matching
# weight) for each, chosen on the unsupervised dev criterion (the supervised terms on source dev
# transcripts + target dev pseudo-labels, on the held-out voices' split when there is one; no
# target transcript is read), averaged over the tuning
# domains (one device, one noise); the choice is then fixed for every domain.
# Needs stages 0-7 of ./run.sh for the tuning domains. Writes exp/tune/<method>.yaml (the chosen
# overlay, which stage 8 adds after conf/adapt/<method>.yaml) and exp/tune/RESULTS.md (the grid).
# Usage: local/tune_adapt.sh [--domains "room breeze"] [--methods "..."] [--lrs "5e-4 2e-3"]
#                            [--adapt_args "--train.num_threads 1"] [--jobs 2]
set -euo pipefail

domains="room breeze"
methods="self_training mmd adv cmatch_frame_average cmatch_ctc_align cmatch_ctc_pred"
lrs="5e-4 2e-3"
adapt_args=""
jobs=2
exp=exp/tiny_clean
adapt_config=conf/train/adapt.yaml
dump=dump
out=exp/tune
while [ $# -gt 0 ]; do
  name=${1#--}
  [ "$name" != "$1" ] && [ $# -ge 2 ] || { echo "usage: $0 [--option value]..." >&2; exit 2; }
  declare -p "$name" >/dev/null 2>&1 || { echo "$0: unknown option --$name" >&2; exit 2; }
  printf -v "$name" '%s' "$2"
  shift 2
done

# the matching term of each method and the weights tried (per-token terms: see README)
declare -A term=([mmd]=mmd [adv]=adv [cmatch_frame_average]=cmatch [cmatch_ctc_align]=cmatch
                 [cmatch_ctc_pred]=cmatch)
declare -A weights=([mmd]="0.05 0.5" [adv]="0.01 0.1" [cmatch_frame_average]="0.02 0.2"
                    [cmatch_ctc_align]="0.02 0.2" [cmatch_ctc_pred]="0.02 0.2")

# the dev split of ./run.sh's stage 7: the held-out voices when the corpus has them
adapt_dev=dev
[ -d "$dump/en_heldout_clean" ] && adapt_dev=heldout
# one grid point: adapt to D with method M at learning rate L and weight W into $out/M/D_lrL_wW
run_point() {
  local m=$1 d=$2 lr=$3 w=$4 dir=$out/$1/$2_lr$3_w$4
  [ -f "$dir/model.pt" ] && return
  local rest=()
  [ -d "$dump/pseudo/en_train_${d}_unlabelled" ] &&
    rest=(--data.target_unlabelled "[{dump: $dump/pseudo/en_train_${d}_unlabelled, lang: en}]")
  local weight=()
  [ "$w" != "-" ] && weight=("--adapt.weights.${term[$m]}" "$w")
  # shellcheck disable=SC2086
  asr-transfer train --config "$exp/config.yaml" --config "$adapt_config" --config "conf/adapt/$m.yaml" \
    --exp "$dir" --train.init "$exp/model.pt" --train.init_espnet null --train.device cpu \
    --data.target "[{dump: $dump/pseudo/en_train_$d, lang: en}]" \
    --data.dev "[{dump: $dump/en_${adapt_dev}_clean, lang: en}]" \
    --data.target_dev "[{dump: $dump/pseudo/en_${adapt_dev}_$d, lang: en}]" "${rest[@]}" \
    --adapt.target "$d" --train.lr "$lr" "${weight[@]}" $adapt_args > "$dir.log" 2>&1
}

mkdir -p "$out"
points=()
for m in $methods; do
  mkdir -p "$out/$m"
  for d in $domains; do
    for lr in $lrs; do
      for w in ${weights[$m]:--}; do points+=("$m $d $lr $w"); done
    done
  done
done
echo "tune_adapt: ${#points[@]} runs, $jobs at a time"
for p in "${points[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  # shellcheck disable=SC2086
  run_point $p &
done
wait

# the criterion of a run: its best dev loss (the epochs kept for model.pt are the best ones)
best_dev() { grep -o "dev loss [0-9.]*" "$1/train.log" | awk '{print $3}' | sort -g | head -1; }
{
  echo "| method | lr | weight | $(echo "$domains" | sed 's/ / | /g') | mean |"
  echo "|---|---|---|$(for _ in $domains; do printf -- '---|'; done)---|"
  for m in $methods; do
    for lr in $lrs; do
      for w in ${weights[$m]:--}; do
        row=() sum=0
        for d in $domains; do
          v=$(best_dev "$out/$m/${d}_lr${lr}_w$w")
          row+=("$v") sum=$(awk -v a="$sum" -v b="$v" 'BEGIN{print a+b}')
        done
        mean=$(awk -v s="$sum" -v n="$(echo "$domains" | wc -w)" 'BEGIN{printf "%.4f", s/n}')
        echo "| $m | $lr | $w | $(printf '%s | ' "${row[@]}")$mean |"
      done
    done
  done
} > "$out/RESULTS.md"
# per method, the grid point with the lowest mean criterion -> exp/tune/<method>.yaml
for m in $methods; do
  read -r lr w _ < <(grep "^| $m |" "$out/RESULTS.md" | awk -F'|' '{print $3, $4, $(NF-1)}' |
                     sort -g -k3 | head -1)
  {
    echo "# chosen by local/tune_adapt.sh on $domains (mean best dev criterion); see RESULTS.md"
    echo "train: {lr: $lr}"
    [ "$w" != "-" ] && echo "adapt: {weights: {${term[$m]}: $w}}"
  } > "$out/$m.yaml"
done
cat "$out/RESULTS.md"
