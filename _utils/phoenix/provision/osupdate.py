"""All OS updates at build time, in the foreground, and whether the system now needs a reboot.

The default commands are Debian's (the distribution Phoenix targets); pillar replaces them for another
distribution, or with a harmless stand-in on a shared test machine::

    phoenix:
      os_updates:
        commands:                  # run in order, in the foreground; the first failure stops the step
          - [apt-get, update]
          - [apt-get, -y, -o, "Dpkg::Options::=--force-confdef", -o, "Dpkg::Options::=--force-confold", dist-upgrade]
          - [unattended-upgrade, -v]                   # the security origins, as configured on the image
        reboot_flag: /var/run/reboot-required          # present after an upgrade that needs a reboot
        reboot_command: [systemctl, reboot]
        timeout: 3600              # seconds per command

Relative paths (``reboot_flag``) are under the minion's ``root_dir`` (``/`` in production), so a test
minion with its own root keeps its flag to itself; in commands, ``{root_dir}`` and ``{id}`` stand for the
minion's root_dir and id (nothing else is substituted, and nothing runs through a shell).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from phoenix.provision.errors import ProvisionError, ProvisionInputError

STEP = "os-updates"
DEBIAN_COMMANDS: list[list[str]] = [
    ["apt-get", "update"],
    ["apt-get", "-y", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
     "dist-upgrade"],
    ["unattended-upgrade", "-v"],
]
DEFAULTS: dict[str, Any] = {"commands": DEBIAN_COMMANDS, "reboot_flag": "/var/run/reboot-required",
                            "reboot_command": ["systemctl", "reboot"], "timeout": 3600}
ENV = {"DEBIAN_FRONTEND": "noninteractive", "APT_LISTCHANGES_FRONTEND": "none", "NEEDRESTART_MODE": "a"}


def commands(value: Any, key: str = "phoenix:os_updates:commands") -> list[list[str]]:
    """``value`` checked as a list of argv lists (no shell strings: nothing is run through a shell)."""
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) or not value:
        raise ProvisionInputError(STEP, f"{key} must be a non-empty list of commands, each a list of arguments")
    out = []
    for n, cmd in enumerate(value):
        if not isinstance(cmd, Sequence) or isinstance(cmd, (str, bytes)) or not cmd \
                or not all(isinstance(a, (str, int, float)) for a in cmd):
            raise ProvisionInputError(STEP, f"{key}[{n}] must be a list of arguments like [apt-get, update], "
                                            f"got {cmd!r}")
        out.append([str(a) for a in cmd])
    return out


def expand(cmds: list[list[str]], root_dir: str | None, minion_id: str | None) -> list[list[str]]:
    """``{root_dir}`` / ``{id}`` in each argument replaced (plain text replacement, no format spec)."""
    root = (root_dir or "/").rstrip("/") or "/"
    return [[a.replace("{root_dir}", root).replace("{id}", str(minion_id or "")) for a in cmd] for cmd in cmds]


def resolve(path: Any, root_dir: str | None) -> Path:
    """``path`` as is when absolute, else under ``root_dir``."""
    p = Path(str(path))
    return p if p.is_absolute() else Path(root_dir or "/") / p


def upgrade(cmds: Sequence[Sequence[str]], timeout: float = 3600, env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Run every command in the foreground; ProvisionError at the first failure (the ABANDON reason)."""
    done = []
    run_env = {**os.environ, **ENV, **(env or {})}
    for cmd in cmds:
        start = time.monotonic()
        try:
            proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=run_env,
                                  stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise ProvisionError(STEP, f"{cmd[0]} is not installed: fix phoenix:os_updates:commands") from None
        except subprocess.TimeoutExpired:
            raise ProvisionError(STEP, f"{' '.join(cmd)} did not finish within {timeout:g} s") from None
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        if proc.returncode != 0:
            raise ProvisionError(STEP, f"{' '.join(cmd)} failed ({proc.returncode}): {' / '.join(tail) or 'no output'}")
        done.append({"command": " ".join(cmd), "retcode": 0, "seconds": round(time.monotonic() - start, 3),
                     "last_line": tail[-1] if tail else ""})
    return done


def reboot_required(flag: Path) -> dict[str, Any]:
    """``{required, flag, packages}`` from Debian's ``/var/run/reboot-required`` (+ ``.pkgs``) convention."""
    pkgs = flag.with_name(flag.name + ".pkgs")
    packages: list[str] = []
    if pkgs.is_file():
        packages = sorted({line.strip() for line in pkgs.read_text(errors="replace").splitlines() if line.strip()})
    return {"required": flag.exists(), "flag": str(flag), "packages": packages}


def reboot(cmd: Sequence[str]) -> int:
    """Start ``cmd`` detached (the job can return before the machine goes down); returns its pid."""
    try:
        proc = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    except FileNotFoundError:
        raise ProvisionError(STEP, f"{cmd[0]} is not installed: fix phoenix:os_updates:reboot_command") from None
    return proc.pid
