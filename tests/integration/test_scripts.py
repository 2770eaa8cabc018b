"""``scripts/bootstrap.sh`` and ``scripts/demo.sh`` run for real, with a fake ``apt-get`` (issue 7, item 3).

bootstrap.sh runs unchanged from the checkout; ``PHOENIX_SYSROOT`` points its ``/usr/sbin`` (where nginx is
looked for and ``policy-rc.d`` is written) at a temporary directory, and ``PATH`` starts with a directory
whose ``apt-get`` records how it was called and fails or succeeds as the test says, and whose ``sudo`` just
runs the command. Nothing on the machine is touched.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

FAKE_APT = """#!/bin/sh
# records its arguments and whether policy-rc.d is in place, then does what $FAKE_APT_MODE says
policy="$PHOENIX_SYSROOT/usr/sbin/policy-rc.d"
if [ -x "$policy" ]; then state="policy:$(tail -n 1 "$policy")"; else state="policy:absent"; fi
echo "$* | $state" >> "$FAKE_APT_LOG"
case "$*" in
  *update*)
    # another apt process holds the lists lock for the first $FAKE_APT_LOCKED updates
    n=$(grep -c update "$FAKE_APT_LOG")
    if [ "$n" -le "${FAKE_APT_LOCKED:-0}" ]; then
      echo "E: Could not get lock on the package lists. It is held by process 4242 (apt-get)" >&2; exit 100
    fi ;;
  *install*)
    if [ "$FAKE_APT_MODE" = fail ]; then echo "E: Could not get lock (the fake apt-get of test_scripts.py)" >&2; exit 100; fi
    printf '#!/bin/sh\\n' > "$PHOENIX_SYSROOT/usr/sbin/nginx"; chmod +x "$PHOENIX_SYSROOT/usr/sbin/nginx" ;;
esac
exit 0
"""


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def machine(tmp_path: Path, repo: Path) -> dict:
    """A fake root (no nginx), a fake apt-get and sudo on PATH, and a venv that is already complete."""
    sysroot = tmp_path / "root"
    (sysroot / "usr" / "sbin").mkdir(parents=True)
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    _executable(fakebin / "apt-get", FAKE_APT)
    _executable(fakebin / "sudo", '#!/bin/sh\nexec "$@"\n')
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    _executable(venv / "bin" / "python", "#!/bin/sh\nexit 0\n")
    (venv / f".phoenix-deps-{hashlib.sha1((repo / 'setup.cfg').read_bytes()).hexdigest()[:12]}").touch()
    log = tmp_path / "apt.log"
    env = {"PATH": f"{fakebin}:/usr/bin:/bin", "HOME": str(tmp_path), "PHOENIX_SYSROOT": str(sysroot),
           "PHOENIX_VENV": str(venv), "FAKE_APT_LOG": str(log), "PHOENIX_APT_LOCK_TIMEOUT": "7"}
    return {"env": env, "policy": sysroot / "usr" / "sbin" / "policy-rc.d", "log": log, "repo": repo}


def bootstrap(machine: dict, mode: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(machine["repo"] / "scripts" / "bootstrap.sh")], capture_output=True,
                          text=True, env={**machine["env"], "FAKE_APT_MODE": mode, **env}, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_a_failing_apt_leaves_no_policy_rc_d_behind_and_apt_waits_for_the_lock(machine):
    out = bootstrap(machine, "fail")
    assert out.returncode != 0 and "Could not get lock" in out.stderr
    calls = machine["log"].read_text().splitlines()
    assert calls == ["-o DPkg::Lock::Timeout=7 update -qq | policy:exit 101",
                     "-o DPkg::Lock::Timeout=7 install -y -qq nginx-light | policy:exit 101"]
    assert not machine["policy"].exists()  # removed by the trap


def test_a_successful_apt_removes_the_policy_it_created(machine):
    out = bootstrap(machine, "ok")
    assert out.returncode == 0, out.stderr
    assert "installing nginx-light" in out.stdout and len(machine["log"].read_text().splitlines()) == 2
    assert not machine["policy"].exists()
    again = bootstrap(machine, "ok")  # nginx is there now: apt is not called again
    assert again.returncode == 0 and len(machine["log"].read_text().splitlines()) == 2


def test_a_policy_rc_d_that_was_there_before_is_left_alone(machine):
    machine["policy"].write_text("#!/bin/sh\n# the admin's own\nexit 0\n")
    machine["policy"].chmod(0o755)
    out = bootstrap(machine, "fail")
    assert out.returncode != 0
    assert machine["policy"].read_text() == "#!/bin/sh\n# the admin's own\nexit 0\n"


def test_demo_help_prints_usage_and_runs_nothing(repo):
    env = {**os.environ, "PHOENIX_VENV": "/nonexistent-phoenix-venv"}  # would fail loudly if bootstrap ran
    helped = subprocess.run(["bash", str(repo / "scripts" / "demo.sh"), "--help"], capture_output=True, text=True,
                            env=env, timeout=30)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: bash scripts/demo.sh [fleet|allowlist] [--help]")
    assert "bootstrap:" not in helped.stdout + helped.stderr
    wrong = subprocess.run(["bash", str(repo / "scripts" / "demo.sh"), "--fast"], capture_output=True, text=True,
                           env=env, timeout=30)
    assert wrong.returncode == 64 and "unknown argument: --fast" in wrong.stderr and "usage:" in wrong.stderr


def test_apt_get_update_is_retried_while_another_apt_holds_the_lists_lock(machine):
    """apt-get update ignores DPkg::Lock::Timeout for the lists lock (apt 2.6): the script waits itself."""
    out = bootstrap(machine, "ok", FAKE_APT_LOCKED="2")
    assert out.returncode == 0, out.stderr
    assert "another apt process holds its lock; waiting up to 7s" in out.stdout
    calls = [c.split(" | ")[0] for c in machine["log"].read_text().splitlines()]
    assert calls == ["-o DPkg::Lock::Timeout=7 update -qq"] * 3 + ["-o DPkg::Lock::Timeout=7 install -y -qq nginx-light"]
    assert not machine["policy"].exists()


def test_a_lock_held_longer_than_the_timeout_fails_with_apts_message(machine):
    out = bootstrap(machine, "ok", FAKE_APT_LOCKED="100", PHOENIX_APT_LOCK_TIMEOUT="2")
    assert out.returncode != 0 and "Could not get lock on the package lists" in out.stderr
    assert "install" not in machine["log"].read_text() and not machine["policy"].exists()
