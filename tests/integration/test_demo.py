"""The README's demo command runs and shows the debugger reachable without, refused with the allowlist."""

from __future__ import annotations

import re
import subprocess
import sys


def test_allowlist_demo(repo):
    proc = subprocess.run([sys.executable, "-m", "demo.allowlist"], cwd=repo, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {m.group(1).strip(): (m.group(2), m.group(3)) for m in
            re.finditer(r"^.{24} (\S+ \S+)\s+(\d+ (?:app |nginx))\s+(\d+ (?:app |nginx))\s*$", proc.stdout, re.M)}
    assert rows["GET /console"] == ("200 app ", "404 nginx")
    assert rows["GET /?__debugger__=yes&cmd=resource&f=debugger.js"] == ("200 app ", "404 nginx")
    assert rows["PUT /login"] == ("405 app ", "404 nginx")
    assert rows["GET /login"] == ("200 app ", "200 app ")
    assert rows["GET /assets/logo.txt"] == ("200 nginx", "200 nginx")
    assert "result=None" in proc.stdout and "result=True" in proc.stdout
