"""No tracked file names an absolute path outside the checkout, except the system's own (issue 7, item 1).

A fresh machine is the only truth: a path such as ``/work/venv/bin/cfn-lint`` exists only on the machine
of whoever wrote it, and the test that used it failed everywhere else. The rule, precisely:

* An *absolute path* is a ``/``-rooted token (not part of a URL, a relative path such as ``a/b``, a
  ``$var/...`` or ``{prefix}/...`` template) whose first component is a top-level directory of a Linux
  filesystem: the FHS set below, plus every directory in this machine's ``/`` (so that a machine-specific
  root such as ``/work`` or ``/data`` is caught where it was written). URL paths (``/console``,
  ``/users/<id>``) are not filesystem paths and are left alone.
* Allowed are only paths every Debian machine has, or that name the system's own tools and the Debian
  packages the scripts install (scripts/bootstrap.sh):
  - ``/usr/bin/``, ``/usr/sbin/``, ``/bin/``, ``/sbin/``: the system's executables (``/usr/bin/env`` in
    shebangs, ``/usr/sbin/nginx``, ``/usr/sbin/policy-rc.d`` which Debian's invoke-rc.d reads);
  - ``/etc/nginx/``, ``/usr/share/nginx``: the Debian nginx package's own locations (defaults, examples);
  - ``/dev/null`` and the other ``/dev/std*``/``/dev/fd/``/``/dev/urandom`` nodes, ``/proc/``, ``/sys/``:
    kernel interfaces;
  - ``/srv/``: the FHS directory for site data, used only as the example location of the user's app
    (``/srv/myapp``) in documentation, docstrings and pillar.example; no test or script may read it;
  - what Phoenix's SLS *manage on a production host* (they configure that host, they do not depend on
    the machine they were written on): ``/etc/`` (system configuration: systemd units, salt, the
    instance's boot scripts), ``/var/log/``, ``/var/lib/``, ``/var/cache/`` (Salt's cache), ``/var/run/`` and ``/run/`` (e.g. Debian's reboot-required flag), ``/usr/local/lib/<app>`` (the FHS
    place for locally installed software), and bash's ``/dev/tcp/`` pseudo-device. In tests these appear
    only as rendered production values or under a temporary root (``under_root_dir``).
* Everything else fails: home directories, ``/root``, ``/opt``, ``/tmp`` (temporary files come from
  ``tempfile``/pytest's ``tmp_path``, never a fixed name shared between runs), ``/var`` outside the
  above, ``/usr/local`` outside ``lib`` and any machine-specific root. The checkout itself is never named absolutely (its location varies).

Files scanned: ``git ls-files`` plus untracked files that are not ignored (a new file fails before it is
committed). This file is the one exception: it spells out the paths it forbids.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: Filesystem Hierarchy Standard top-level directories (and common non-FHS roots of Linux machines)
FHS = {"bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "media", "mnt", "opt", "proc",
       "root", "run", "sbin", "srv", "sys", "tmp", "usr", "var", "snap", "nix", "data", "work", "workspace"}

ALLOWED = (
    re.compile(r"/(usr/)?s?bin(/[A-Za-z0-9_.+-]*)?$"),
    re.compile(r"/etc/nginx(/.*)?$"),
    re.compile(r"/usr/share/nginx(/.*)?$"),
    re.compile(r"/dev/(null|stdin|stdout|stderr|urandom|fd/.*)$"),
    re.compile(r"/(proc|sys)(/.*)?$"),
    re.compile(r"/srv(/.*)?$"),
    re.compile(r"/etc(/.*)?$"),
    re.compile(r"/var/(log|lib|cache|run)(/.*)?$"),
    re.compile(r"/run(/.*)?$"),
    re.compile(r"/usr/local/lib(/.*)?$"),
    re.compile(r"/dev/tcp(/.*)?$"),
)

#: a /-rooted token not preceded by what makes it relative, a URL or a template (host:port/..., $x/, {y}/)
TOKEN = re.compile(r"(?<![A-Za-z0-9_.~$}\]/:@%*-])/[A-Za-z0-9_.+@-]+(?:/[A-Za-z0-9_.+@%-]*)*")


def roots() -> set[str]:
    local = {entry.name for entry in os.scandir("/") if entry.is_dir(follow_symlinks=False)}
    return FHS | local


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True).stdout
    return [REPO / name for name in sorted(set(out.decode().split("\0"))) if name
            and REPO / name != Path(__file__).resolve()]


def absolute_paths(text: str, top: set[str]) -> list[tuple[int, str]]:
    """(line, path) for every filesystem path in ``text`` (see the module docstring for what counts)."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for match in TOKEN.finditer(line):
            path = match.group(0).rstrip(".")
            if path.split("/")[1] in top:
                found.append((lineno, path))
    return found


def offending(path: str) -> bool:
    return not any(rule.match(path) for rule in ALLOWED)


def test_no_tracked_file_names_a_path_outside_the_checkout() -> None:
    top = roots()
    files = tracked_files()
    assert len(files) > 50 and any(f.name == "setup.cfg" for f in files)  # really scanning the checkout
    bad = []
    for file in files:
        if not file.is_file():
            continue
        data = file.read_bytes()
        if b"\0" in data:
            continue  # binary
        for lineno, path in absolute_paths(data.decode("utf-8", "replace"), top):
            if offending(path):
                bad.append(f"{file.relative_to(REPO)}:{lineno}: {path}")
    assert not bad, ("absolute paths outside the checkout (use the project's venv, tmp_path or a path relative "
                     "to the checkout; see this test's docstring for what is allowed):\n" + "\n".join(bad))


def test_the_scan_finds_what_it_must_and_leaves_urls_alone() -> None:
    """The rule itself: the defect that started it is found, URL paths and the system's tools are not."""
    top = roots() | {"work"}
    text = ('CFN_LINT = Path("/work/venv/bin/cfn-lint")\n'
            "PYTHONPATH=_utils:. /home/ops/venv/bin/python bench.py\n"
            "x = open('/tmp/phoenix-cache')\n"
            "#!/usr/bin/env bash\nnginx = '/usr/sbin/nginx'; cmd >/dev/null\n"
            "proxy_pass http://127.0.0.1:8000/api/v1; GET /console /users/<int:id> {prefix}/tmp/body $VENV/bin\n"
            "python: /srv/myapp/venv/bin/python; include /etc/nginx/conf.d/app.conf; s3://bucket/usr/x\n")
    found = absolute_paths(text, top)
    assert [p for _, p in found if offending(p)] == ["/work/venv/bin/cfn-lint", "/home/ops/venv/bin/python",
                                                     "/tmp/phoenix-cache"]
    assert {p for _, p in found if not offending(p)} == {"/usr/bin/env", "/usr/sbin/nginx", "/dev/null",
                                                         "/srv/myapp/venv/bin/python",
                                                         "/etc/nginx/conf.d/app.conf"}
