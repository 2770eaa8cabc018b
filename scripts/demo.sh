#!/usr/bin/env bash
# The README's main command: install what is needed, then run the allowlist demo on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
VENV="${PHOENIX_VENV:-$PWD/.venv}"
PATH="$VENV/bin:$PATH" PYTHONPATH="$PWD/_utils:$PWD" exec "$VENV/bin/python" -m demo.allowlist "$@"
