#!/usr/bin/env bash
# Set up the environment on first use, install (as root with apt) the system tools the tests check
# the README's claims with (sclite, Chromium, the speech engines), then run the test suite
# (including one real end-to-end run of the mini recipe). Without root those tests skip with the
# reason; with CI=true (set by .ci/run) such a skip is an error. Extra arguments go to pytest,
# e.g. ./test.sh -m "not slow".
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$root/tools/setup_env.sh"
if ! "$root/tools/install_system_tools.sh"; then
  [ "${CI:-}" = true ] && { echo "test.sh: installing the system tools failed" >&2; exit 1; }
  echo "test.sh: could not install the system tools; the tests that need them will skip" >&2
fi
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"
