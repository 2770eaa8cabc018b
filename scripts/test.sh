#!/usr/bin/env bash
# The README's test command (CI runs it too): install what is needed, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
VENV="${PHOENIX_VENV:-$PWD/.venv}"
# Whole suite: test files spread over parallel workers (pytest-xdist; one file stays in one worker, so its
# module-scoped master and minions are started once). PHOENIX_TEST_WORKERS=0 runs everything in one process.
parallel=()
if [ "$#" -eq 0 ] && [ "${PHOENIX_TEST_WORKERS:-3}" != 0 ]; then
  parallel=(-n "${PHOENIX_TEST_WORKERS:-3}" --dist loadfile --durations=25)
fi
PATH="$VENV/bin:$PATH" PYTHONPATH="$PWD/_utils:$PWD" exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "${parallel[@]}" "$@"
