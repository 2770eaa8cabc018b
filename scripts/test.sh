#!/usr/bin/env bash
# The README's test command (CI runs it too): install what is needed, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
VENV="${PHOENIX_VENV:-$PWD/.venv}"
# One process by default: the daemon tests' event timing is not safe under parallel load yet (two of them
# failed with 2 workers). PHOENIX_TEST_WORKERS=N spreads test files over N pytest-xdist workers (one file per
# worker, so its module-scoped master and minions start once) for a faster local run.
parallel=()
if [ "$#" -eq 0 ] && [ "${PHOENIX_TEST_WORKERS:-0}" != 0 ]; then
  parallel=(-n "${PHOENIX_TEST_WORKERS}" --dist loadfile --durations=25)
fi
PATH="$VENV/bin:$PATH" PYTHONPATH="$PWD/_utils:$PWD" exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "${parallel[@]}" "$@"
