#!/usr/bin/env bash
# Every GPU figure of the project from ONE command, on a machine with one GPU, PyTorch and no network:
#
#   tools/fetch_gpu_wheels.sh                   # beforehand, where there is network: wheels/ (~25 MB)
#   bench/gpu_suite.sh --out DIR                # on the GPU machine, from the repository root
#   bench/gpu_suite.sh --device cpu --out DIR   # smoke run with small sizes (a few minutes on 2 cores)
#
# Installs what the machine lacks from the wheel folder (`pip install --no-index --no-deps --target`,
# then PYTHONPATH), puts empty stand-ins for the two NLTK data packages that g2p_en would otherwise try
# to download, then runs bench/gpu_suite.py: the GPU tests, the training benchmark (ours vs ESPnet fp32
# and --use_amp at two padded-frames budgets, reference model), the step profile (our old vs new loop
# path: data, forward, backward, optimiser per step) and the decoding benchmark (ours vs ESPnet
# Speech2Text), each part timed and limited, a failing part logged and the rest still run.
# Writes DIR/gpu_suite.json, DIR/gpu_suite.md and DIR/gpu_suite_logs.tar.gz.
#
# Options (the rest go to bench/gpu_suite.py; see its --help):
#   --wheels DIR       wheel folder (default: <repo>/wheels with cuda, none with cpu; no wheels: the
#                      interpreter's own packages, e.g. the project's venv)
#   --work DIR         scratch folder: installed wheels, corpus, experiments, logs
#                      (default: ${TMPDIR:-/tmp}/gpu_suite_work)
#   --time-limit S     whole run, set-up included (default: 450 with cuda, 900 with cpu; the
#                      parts' limits are cut to it, leaving ~30 s for killing and packing: 8 min)
# Environment: PYTHON (default python3); GPU_SUITE_FAIL=part[,part] makes those parts fail on purpose.
set -uo pipefail
start=$SECONDS
command_line=$(printf '%q ' "$0" "$@")
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-python3}
wheels=
work=${TMPDIR:-/tmp}/gpu_suite_work
device=cuda
limit=
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --wheels) wheels=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --time-limit) limit=$2; shift 2 ;;
    --device) device=$2; args+=("$1" "$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ "$device" = cpu ]; then
  limit=${limit:-900}
else
  limit=${limit:-450}
  wheels=${wheels:-$root/wheels}
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
rm -rf "$work/logs" && mkdir "$work/logs"

# ---- set-up: wheels, PYTHONPATH, NLTK stand-ins; its status goes into the JSON as part "setup"
site=$work/site
setup_log=$work/logs/setup.log
setup_status=ok
setup_error=
{
  echo "python: $(command -v "$py") ($("$py" --version 2>&1))"
  shopt -s nullglob
  whl=()
  [ -z "$wheels" ] || whl=("$wheels"/*.whl)
  rm -rf "$site"
  if [ ${#whl[@]} -eq 0 ]; then
    echo "no wheels${wheels:+ in $wheels}: using the interpreter's own packages"
  else
    echo "installing ${#whl[@]} wheels from $wheels into $site"
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
      --target "$site" "${whl[@]}"
  fi
} >"$setup_log" 2>&1 || { setup_status=failed; setup_error="pip install of the wheels failed (rc $?)"; }
pythonpath=$root
[ -d "$site" ] && pythonpath=$root:$site
export PYTHONPATH=$pythonpath${PYTHONPATH:+:$PYTHONPATH}
# g2p_en (imported by espnet2.tasks.asr) downloads these when missing; with no network that can hang.
# Empty zips stop the attempt; the ASR path never reads them.
export NLTK_DATA=$work/nltk_data
for z in taggers/averaged_perceptron_tagger_eng.zip corpora/cmudict.zip; do
  mkdir -p "$NLTK_DATA/$(dirname "$z")"
  [ -f "$NLTK_DATA/$z" ] || "$py" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1], "w").close()' \
    "$NLTK_DATA/$z"
done
export PYTHONUNBUFFERED=1
cd "$root" || exit 1
exec "$py" "$root/bench/gpu_suite.py" --work "$work" --time-limit $((limit - (SECONDS - start))) \
  --setup "$setup_status" --setup-seconds $((SECONDS - start)) --setup-error "$setup_error" \
  --suite-command "${command_line% }" "${args[@]}"
