#!/usr/bin/env bash
# Create (once) the project's virtual environment with the pinned dependencies.
# Reruns are instant: the install is redone only when setup.cfg changes.
# Usage: tools/setup_env.sh [VENV_DIR]   (default: .venv at the repository root)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${1:-$root/.venv}
python=${PYTHON:-python3.11}
stamp=$venv/.asr-transfer-installed
want=$(sha256sum "$root/setup.cfg" "$root/pyproject.toml" | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
command -v "$python" >/dev/null || { echo "setup_env: $python not found; set PYTHON=/path/to/python3.11" >&2; exit 1; }
echo "setup_env: creating $venv with the pinned dependencies (first run: about 4 minutes)" >&2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# pip < 25 keeps the legacy resolver behaviour espnet's sdists expect; plain pip (not uv) uses local wheels
"$venv/bin/python" -m pip install -q --upgrade "pip<25"
"$venv/bin/python" -m pip install -q -e "$root[dev]"
echo "$want" > "$stamp"
