#!/usr/bin/env bash
# Set up the environment on first use, then run the test suite (including one real
# end-to-end run of the mini recipe). Extra arguments go to pytest, e.g. ./test.sh -m "not slow".
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$root/tools/setup_env.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"
