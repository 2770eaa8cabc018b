#!/usr/bin/env bash
# Install what Phoenix's demo and tests need on a fresh Debian machine: nginx (Debian package) and a
# Python virtualenv with the pinned dependencies from setup.cfg. Idempotent; run as root (or with sudo
# available) for apt. The venv lives in $PHOENIX_VENV (default: .venv in the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${PHOENIX_VENV:-$PWD/.venv}"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "bootstrap: installing nginx-light (Debian package)"
  # keep the package's service from starting on 0.0.0.0:80: the tests run their own nginx on 127.0.0.1
  created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d; created_policy=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-light >/dev/null
  [ -n "$created_policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV"
  python3 -m venv "$VENV"
fi
stamp="$VENV/.phoenix-deps-$(sha1sum setup.cfg | cut -c1-12)"
if [ ! -e "$stamp" ]; then
  echo "bootstrap: installing Python dependencies (Salt builds from source: a few minutes the first time)"
  "$VENV/bin/python" -m pip install -q --upgrade pip wheel setuptools
  # the pinned test dependencies come from setup.cfg's [test] extra; Phoenix itself is then removed
  # again so that tests see the checkout (and prove the file_roots and pip paths separately)
  "$VENV/bin/python" -m pip install -q ".[test]"
  "$VENV/bin/python" -m pip uninstall -q -y phoenix-salt
  rm -rf build ./*.egg-info _utils/*.egg-info
  touch "$stamp"
fi
