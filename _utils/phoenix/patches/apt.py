"""Security updates pending according to APT: ``apt-get --simulate dist-upgrade`` lists every upgrade
it would make as ``Inst <package> [<installed>] (<candidate> <origin>:<version>/<suite> [<arch>])``; an
upgrade is a security update when it comes from a ``*-security`` suite (Debian's
``bookworm-security``/``stable-security``, Ubuntu's ``jammy-security``)."""

from __future__ import annotations

import re
import subprocess
from typing import Any

INST = re.compile(r"^Inst (?P<package>\S+)(?: \[(?P<installed>[^\]]+)\])? \((?P<candidate>\S+) (?P<origins>[^\[)]*)")
SIMULATE = ["apt-get", "--simulate", "-o", "Debug::NoLocking=1", "-o", "APT::Get::Show-User-Simulation-Note=false",
            "dist-upgrade"]
REFRESH = ["apt-get", "-qq", "update"]


def parse_simulation(text: str) -> list[dict[str, Any]]:
    """The security upgrades in ``apt-get --simulate dist-upgrade`` output, one dict per package:
    ``{package, installed, candidate, origin}`` (``installed`` None for a new package)."""
    found = []
    for line in text.splitlines():
        match = INST.match(line.strip())
        if not match:
            continue
        origins = [o.strip() for o in match.group("origins").split(",") if o.strip()]
        security = [o for o in origins if re.search(r"[/-]security\b|-security$", o.split(" ")[0])]
        if not security:
            continue
        found.append({"package": match.group("package"), "installed": match.group("installed"),
                      "candidate": match.group("candidate"), "origin": security[0]})
    return found


def pending(refresh: bool = True, timeout: float = 600.0) -> list[dict[str, Any]]:
    """Ask APT (after ``apt-get update`` when ``refresh``) which security upgrades are pending.

    Raises ``RuntimeError`` naming the command and its error when APT fails.
    """
    if refresh:
        _run(REFRESH, timeout)
    return parse_simulation(_run(SIMULATE, timeout))


def _run(argv: list[str], timeout: float) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL, env={"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    except FileNotFoundError:
        raise RuntimeError(f"{argv[0]} is not installed: source 'apt' needs a Debian or Ubuntu system; "
                           "set phoenix:patches:source to 'feed' elsewhere") from None
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{' '.join(argv)} did not finish within {timeout:.0f}s") from None
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout
