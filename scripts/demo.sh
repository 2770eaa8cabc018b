#!/usr/bin/env bash
# The README's main command: install what is needed, then run the allowlist demo on 127.0.0.1.
set -euo pipefail
usage() {
  cat <<'TEXT'
usage: bash scripts/demo.sh [--help]

Installs what the demo needs (scripts/bootstrap.sh: nginx-light from Debian, a virtualenv in .venv or
$PHOENIX_VENV), then runs the allowlist demo: a Flask app with the Werkzeug debugger on, behind two real
NGINX servers on 127.0.0.1, one without and one with the allowlist that nginx_whitelist.managed writes
through salt-call --local. Prints what reaches the app in each, then stops everything it started.
TEXT
}
case "${1:-}" in
  "") ;;
  -h|--help) usage; exit 0 ;;
  *) echo "demo.sh: unknown argument: $1" >&2; usage >&2; exit 64 ;;
esac
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
VENV="${PHOENIX_VENV:-$PWD/.venv}"
PATH="$VENV/bin:$PATH" PYTHONPATH="$PWD/_utils:$PWD" exec "$VENV/bin/python" -m demo.allowlist
