# Sourced by the recipes after parse_options.sh, for --adapt_jobs N (the recipe defines adapt_jobs=1
# among its options): their long stages run N independent chains of work at a time.
#   run_job LOG CMD...  runs CMD now when adapt_jobs is 1 (the plain serial run: the first failure stops
#                       the stage), else in the background into LOG once fewer than adapt_jobs jobs run,
#                       each with nproc / adapt_jobs CPU threads (OMP_NUM_THREADS, unless set)
#   finish_jobs STAGE   waits for them all; if one failed, fails the stage naming the failed jobs' logs
# Example:
#   for d in mic room; do run_job "exp/log/$d.log" adapt_chain "$d"; done; finish_jobs 8
case $adapt_jobs in
  ''|*[!0-9]*|0) echo "$0: --adapt_jobs $adapt_jobs: a positive number of jobs" >&2; exit 2 ;;
esac
bg_logs=() bg_status_dir=""
run_job() {
  local log=$1; shift
  if [ "$adapt_jobs" -eq 1 ]; then "$@"; return; fi
  while [ "$(jobs -rp | wc -l)" -ge "$adapt_jobs" ]; do sleep 1; done
  mkdir -p "$(dirname "$log")"
  [ -n "$bg_status_dir" ] || bg_status_dir=$(mktemp -d)
  echo "  in the background: $* > $log"
  # each job writes its own exit status: 'wait PID' cannot be trusted for it at the end of a long
  # stage, where bash has forgotten a job whose PID was reused (a stage of hours spawns more
  # processes than pid_max: 'wait: pid N is not a child of this shell', a finished job seen as failed)
  local status=$bg_status_dir/${#bg_logs[@]}
  ( export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / adapt_jobs > 0 ? $(nproc) / adapt_jobs : 1 ))}
    "$@" > "$log" 2>&1; echo $? > "$status.tmp" && mv "$status.tmp" "$status" ) &
  bg_logs+=("$log")
}
finish_jobs() {
  local i failed=()
  wait
  for i in "${!bg_logs[@]}"; do
    # no status: the job stopped before writing one (a failure under set -e, or killed)
    [ "$(cat "$bg_status_dir/$i" 2>/dev/null)" = 0 ] || failed+=("${bg_logs[$i]}")
  done
  [ -z "$bg_status_dir" ] || rm -rf "$bg_status_dir"
  bg_logs=() bg_status_dir=""
  [ "${#failed[@]}" -eq 0 ] || { echo "$0: stage $1: ${#failed[@]} job(s) failed, see: ${failed[*]}" >&2; exit 1; }
}
