#!/usr/bin/env bash
# The README's test command (CI runs it too): install what is needed, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
VENV="${PHOENIX_VENV:-$PWD/.venv}"
PATH="$VENV/bin:$PATH" PYTHONPATH="$PWD/_utils:$PWD" exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
