#!/usr/bin/env bash
# The README's main command: install what is needed, then run the whole Phoenix system on 127.0.0.1
# (or the allowlist demo alone: bash scripts/demo.sh allowlist).
set -euo pipefail
usage() {
  cat <<'TEXT'
usage: bash scripts/demo.sh [fleet|allowlist] [--help] [-- options of the demo]

Installs what the demos need (scripts/bootstrap.sh: nginx-light from Debian, a virtualenv in .venv or
$PHOENIX_VENV), then runs one of them on 127.0.0.1 and stops everything it started:

  fleet (default)  the whole system: localcloud (the AWS stand-in), a salt-master with Phoenix's lifecycle
                   engine and reactor, and the production stack (templates/phoenix-fleet.yaml) whose group of
                   3 instances are real salt-minions, each running the sample Flask app with the Werkzeug
                   debugger ON behind its own NGINX with the allowlist. Shows /console reachable on the app
                   and 404 through NGINX, prints rebuild.status, lets a simulated day pass, runs
                   salt-run state.orchestrate orch.rebuild with a live display of the master's event bus,
                   keeps requests flowing through an NGINX load balancer (goal: 0 failed) and prints a
                   summary. About 4-5 minutes on 2 cores. Options: python -m demo.fleet --help
                   (e.g. -- --instances 5 --logs DIR).
  allowlist        the allowlist alone: the Flask app behind two NGINX servers, one without and one with
                   the allowlist that nginx_whitelist.managed writes through salt-call --local.
TEXT
}
demo=fleet
case "${1:-}" in
  "") ;;
  fleet|allowlist) demo="$1"; shift ;;
  -h|--help) usage; exit 0 ;;
  --) ;;
  *) echo "demo.sh: unknown argument: $1" >&2; usage >&2; exit 64 ;;
esac
case "${1:-}" in
  "") ;;
  -h|--help) usage; exit 0 ;;
  --) shift ;;
  *) echo "demo.sh: unknown argument: $1" >&2; usage >&2; exit 64 ;;
esac
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
VENV="${PHOENIX_VENV:-$PWD/.venv}"
export PATH="$VENV/bin:$PATH" PYTHONPATH="$PWD/_utils:$PWD"
exec "$VENV/bin/python" -m "demo.$demo" "$@"
