"""The README's demo commands run: the allowlist demo shows the debugger reachable without, refused with the
allowlist; the fleet demo (the main command) rebuilds a provisioned fleet behind a load balancer."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest


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


@pytest.mark.daemons
def test_fleet_demo(repo, tmp_path):
    """The README's main command (python -m demo.fleet, what scripts/demo.sh runs after bootstrap): a stack
    of 3 provisioned through Salt, a simulated day, orch.rebuild, a load balancer in front: every instance
    replaced, none abandoned, no request lost, the debugger 404 through NGINX, no secret left anywhere,
    no process left."""
    logs, outcome = tmp_path / "run", tmp_path / "outcome.json"
    proc = subprocess.run([sys.executable, "-m", "demo.fleet", "--logs", str(logs), "--json", str(outcome)],
                          cwd=repo, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    result = json.loads(outcome.read_text())
    assert result["replaced"] == 3 and result["abandoned"] == 0 and result["rebuild_result"] is True
    assert len(result["new"]) == 3 and not set(result["new"]) & set(result["old"]) and result["still_old"] == []
    assert result["requests"]["failed"] == 0 and result["requests"]["ok"] > 100, result["requests"]
    # the new instances served the client too (the load balancer followed the target group)
    assert {f"hello from {iid}" for iid in result["new"]} <= set(result["requests"]["served_by"])
    assert result["allowlist"]["/console"] == [200, 404]
    assert result["allowlist"]["/?__debugger__=yes&cmd=resource&f=style.css"] == [200, 404]
    assert result["min_in_service"] == 3  # MinInstancesInService held
    assert result["oldest_age_before_s"] >= 86400 > result["oldest_age_after_s"]
    assert result["secret_scan"]["hits"] == 0 and result["secret_scan"]["files"] > 100
    assert result["secret_scan"]["events"] > 100
    assert result["leftovers"] == {}
    # what it printed
    out = proc.stdout
    assert re.search(r"^  GET /console\s+200\s+404\s*$", out, re.M), out[-4000:]
    assert re.search(r"^  replaced\s+3 of 3", out, re.M) and re.search(r"^  abandoned\s+0$", out, re.M)
    assert re.search(r"^  requests via the ALB\s+\d+ sent, 0 failed$", out, re.M)
    assert "BATCH: batch 3 done (100%)" in out and "CONTINUE: provisioned, in service" in out
    assert "no process left" in out and "DEMO OK" in out
    assert str(logs / "master" / "logs" / "master.log") in out
    # independently of the demo's own account: nothing it started runs any more
    still = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = open(f"/proc/{entry.name}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(logs) in cmdline:
                still.append(cmdline)
    assert still == []
