#!/usr/bin/env bash
# Benchmarks, on demand (never in CI): bash bench/run.sh [allowlist|layouts|rebuild|provision|fleet|all] [-- extra args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
missing=""
for tool in wrk valgrind; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
VENV="${PHOENIX_VENV:-$PWD/.venv}"
export PATH="$VENV/bin:$PATH" PYTHONPATH="$PWD/_utils:$PWD"
what="${1:-all}"; shift || true
if [ "${1:-}" = "--" ]; then shift; fi
if [ "$what" = allowlist ] || [ "$what" = all ]; then "$VENV/bin/python" bench/allowlist.py "$@"; fi
if [ "$what" = layouts ] || [ "$what" = all ]; then "$VENV/bin/python" bench/allowlist_layouts.py "$@"; fi
if { [ "$what" = rebuild ] || [ "$what" = all ]; } && [ -f bench/rebuild_cycle.py ]; then
  "$VENV/bin/python" bench/rebuild_cycle.py "$@"
fi
if { [ "$what" = provision ] || [ "$what" = all ]; } && [ -f bench/provision.py ]; then
  "$VENV/bin/python" bench/provision.py "$@"
fi
if [ "$what" = fleet ] || [ "$what" = all ]; then "$VENV/bin/python" bench/fleet.py "$@"; fi
