#!/usr/bin/env bash
# The README's test command (CI runs it too): install what is needed, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
VENV="${PHOENIX_VENV:-$PWD/.venv}"
# Whole suite: test files spread over 2 pytest-xdist workers, one per core (--dist loadfile keeps a file in
# one worker, so its module-scoped master and minions start once). PHOENIX_TEST_WORKERS=0 runs everything in
# one process; PHOENIX_TEST_WORKERS=N uses N workers. With arguments, pytest runs just those, in one process.
parallel=()
workers="${PHOENIX_TEST_WORKERS:-2}"
if [ "$#" -eq 0 ] && [ "$workers" != 0 ]; then
  parallel=(-n "$workers" --dist loadfile --durations=25)
fi
PATH="$VENV/bin:$PATH" PYTHONPATH="$PWD/_utils:$PWD" exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "${parallel[@]}" "$@"
