#!/usr/bin/env bash
# Install what Phoenix's demo and tests need on a fresh Debian machine: nginx (Debian package) and a
# Python virtualenv with the pinned dependencies from setup.cfg. Idempotent; run as root (or with sudo
# available) for apt. The venv lives in $PHOENIX_VENV (default: .venv in the checkout).
#
# apt waits up to $PHOENIX_APT_LOCK_TIMEOUT seconds (default 600) for another apt/dpkg process to release
# its lock (the dpkg lock, and the lists lock of apt-get update) instead of failing at once. A policy-rc.d created here (so that the package's service does
# not start on 0.0.0.0:80) is removed again however the script ends. $PHOENIX_SYSROOT is for the tests only:
# a fake root whose usr/sbin stands for /usr/sbin.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${PHOENIX_VENV:-$PWD/.venv}"
SYSROOT="${PHOENIX_SYSROOT:-}"
LOCK_TIMEOUT="${PHOENIX_APT_LOCK_TIMEOUT:-600}"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

apt_get() {
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o "DPkg::Lock::Timeout=$LOCK_TIMEOUT" "$@"
}

# `apt-get update` takes the lists lock, for which apt (2.6, Debian 12) ignores DPkg::Lock::Timeout and
# fails at once: retry it while the only problem is a lock, up to the same timeout
apt_update() {
  local waited=0 out
  while ! out=$(apt_get update -qq 2>&1); do
    if ! printf '%s' "$out" | grep -q "Could not get lock" || [ "$waited" -ge "$LOCK_TIMEOUT" ]; then
      printf '%s\n' "$out" >&2
      return 1
    fi
    [ "$waited" -gt 0 ] || echo "bootstrap: another apt process holds its lock; waiting up to ${LOCK_TIMEOUT}s"
    sleep 1
    waited=$((waited + 1))
  done
  [ -z "$out" ] || printf '%s\n' "$out"
}

if ! command -v nginx >/dev/null 2>&1 && [ ! -x "$SYSROOT/usr/sbin/nginx" ]; then
  echo "bootstrap: installing nginx-light (Debian package)"
  # keep the package's service from starting on 0.0.0.0:80: the tests run their own nginx on 127.0.0.1
  policy="$SYSROOT/usr/sbin/policy-rc.d"
  created_policy=""
  if [ ! -e "$policy" ]; then
    trap '$SUDO rm -f "$policy"' EXIT   # also when apt fails (set -e) or the script is interrupted
    trap 'exit 130' INT TERM
    created_policy=1
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
  fi
  apt_update
  apt_get install -y -qq nginx-light >/dev/null
  if [ -n "$created_policy" ]; then
    $SUDO rm -f "$policy"
    trap - EXIT INT TERM
  fi
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
