#!/usr/bin/env bash
# Set up the environment on first use, then run the default recipe (recipes/mini) end to end:
# synthesise the mini corpus, train a tiny CTC/attention model on clean English digits,
# decode every device/noise domain, and print the WER table (report in recipes/mini/exp/report/).
# Arguments are passed to the recipe, e.g. ./run.sh --stage 4 --train_args "--train.epochs 3"
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$root/tools/setup_env.sh"
export PATH="$root/.venv/bin:$PATH"
cd "$root/recipes/mini"
exec ./run.sh "$@"
