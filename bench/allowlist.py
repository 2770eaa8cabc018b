"""Allowlist benchmarks (run on demand: ``bash bench/run.sh allowlist``). Prints ratios, not asserts.

1. NGINX requests/s for the *last dynamic route* of an app with N routes (half static ``/s<i>``, half
   ``/d<i>/<int:id>``), with the allowlist vs without it (same config otherwise: one worker,
   ``location / { return 200; }``; the allowlist's fast path copies that ``return`` where it would copy
   ``proxy_pass``), ``pcre_jit`` off and on. Two ways, medians of per-round ratios:
   *alternating*: wrk runs A/B/B/A one after the other (what the issue asks for; on this shared VM
   single rounds swing by +-30%); *paired*: both NGINX processes pinned to CPU 0 and both wrk to CPU 1,
   running at the same time, so that they share whatever the neighbours leave (rounds swing by +-7%).
2. User-space instructions per request (valgrind/callgrind, single-process NGINX): the instruction
   count of a run with R2 requests minus one with R1 requests, divided by R2-R1, so start-up (and the
   parsing of thousands of map keys) cancels out. Noise-free, unlike wrk.
3. Time to produce the include for the 1,000-route app: the app's own import vs the rest
   (interpreter start, route extraction, compile, render, config inspection), and ``nginx -t``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "_utils"), str(ROOT)]

from devtools.nginx import Nginx, free_port  # noqa: E402
from phoenix.allowlist import manage  # noqa: E402

APP_TEMPLATE = '''\
from flask import Flask

app = Flask(__name__, static_folder=None)


def _view(**kwargs):
    return "ok"


for i in range({n}):
    if i % 2 == 0:
        app.add_url_rule(f"/s{{i}}", f"s{{i}}", _view)
    else:
        app.add_url_rule(f"/d{{i}}/<int:id>", f"d{{i}}", _view)
'''


def make_app(directory: Path, n: int) -> str:
    module = f"bench_app_{n}"
    (directory / f"{module}.py").write_text(APP_TEMPLATE.format(n=n))
    return f"{module}:app"


WORDS_TEMPLATE = '''\
from flask import Flask

app = Flask(__name__, static_folder=None)


def _view(**kwargs):
    return "ok"


for i, word in enumerate({words!r}):
    app.add_url_rule(f"/{{word}}/<int:id>", f"d{{i}}", _view)
    app.add_url_rule(f"/{{word}}/list", f"s{{i}}", _view)
'''


def make_words_app(directory: Path, n: int) -> tuple[str, str, str]:
    """An app of N routes whose names do not factor: ``/<word>/<int:id>`` and ``/<word>/list`` for N/2 random words
    (seeded by N). Returns the app's spec, its last word's dynamic route and its last static one."""
    rnd = random.Random(n)
    words = sorted({"".join(rnd.choice(string.ascii_lowercase) for _ in range(4 + i % 6)) for i in range(n)})[:n // 2]
    module = f"words_app_{n}"
    (directory / f"{module}.py").write_text(WORDS_TEMPLATE.format(words=words))
    return f"{module}:app", f"/{words[-1]}/12345", f"/{words[-1]}/list"


def last_dynamic(n: int) -> str:
    last = n - 1 if (n - 1) % 2 == 1 else n - 2
    return f"/d{last}/12345"


def site_config(root: Path, port: int, gated: bool) -> str:
    maps = f"    include {root}/conf.d/app.allowlist.conf;\n" if gated else ""
    gate = f"include {root}/conf.d/app.allowlist.gate; " if gated else ""
    return (f"{maps}    server {{ listen 127.0.0.1:{port}; location / {{ {gate}return 200 \"ok\\n\"; }} }}")


APP_HANDLER = "proxy_pass http://127.0.0.1:9;"


def bench_conf(root: Path, dest: Path) -> None:
    """The allowlist files for the throughput configs: the fast path serves with ``return 200`` too."""
    shutil.copytree(root / "conf.d", dest / "conf.d", dirs_exist_ok=True)
    gate = dest / "conf.d" / "app.allowlist.gate"
    gate.write_text(gate.read_text().replace(APP_HANDLER, 'return 200 "ok\\n";'))


def build(root: Path, app_dir: Path, app: str) -> dict[str, float]:
    """Write the allowlist for ``app`` into ``root`` with the real pipeline; return its timings."""
    (root / "conf.d").mkdir(parents=True, exist_ok=True)
    port = free_port()
    # the state needs a location that passes to the app; the throughput configs below return 200 instead
    ngx = Nginx(root, site_config(root, port, gated=True).replace('return 200 "ok\\n";', APP_HANDLER), master=False)
    p = manage.plan(str(root / "conf.d" / "app.allowlist.conf"), app=app, cwd=str(app_dir), config=str(ngx.conf))
    manage.apply(p)
    return p.timings


def user_system(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid`` so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK"), int(fields[12]) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    return sum(user_system(pid))


def _wrk_argv(port: int, path: str, seconds: float, connections: int) -> list[str]:
    return ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", f"http://127.0.0.1:{port}{path}"]


def _wrk_result(out: str, path: str) -> tuple[float, int]:
    """(requests/s, requests) from wrk's report; a refused request fails the benchmark."""
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise RuntimeError(f"{path} was refused during the benchmark: {out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), int(re.search(r"(\d+) requests in", out).group(1))


def wrk(port: int, path: str, seconds: float, connections: int, pid: int) -> tuple[float, float]:
    """(requests/s, NGINX CPU seconds per request: user+system of the single NGINX process)."""
    cpu = _cpu_seconds(pid)
    out = subprocess.run(_wrk_argv(port, path, seconds, connections), capture_output=True, text=True, check=True).stdout
    cpu = _cpu_seconds(pid) - cpu
    rps, requests = _wrk_result(out, path)
    return rps, cpu / requests


def paired_round(servers: dict[bool, tuple[Nginx, int]], path: str, seconds: float, connections: int,
                 order: tuple[bool, bool]) -> dict[bool, tuple[float, float]]:
    """Both servers loaded at once, each by a wrk on CPU 1: per server (requests/s, NGINX CPU seconds per
    request). The caller pins both NGINX to CPU 0, so whatever the neighbours take, both lose alike."""
    before = {g: _cpu_seconds(servers[g][0].proc.pid) for g in order}
    procs = {g: subprocess.Popen(["taskset", "-c", "1", *_wrk_argv(servers[g][1], path, seconds, connections)],
                                 stdout=subprocess.PIPE, text=True) for g in order}
    reports = {g: proc.communicate()[0] for g, proc in procs.items()}
    out = {}
    for g in order:
        cpu = _cpu_seconds(servers[g][0].proc.pid) - before[g]
        rps, requests = _wrk_result(reports[g], path)
        out[g] = (rps, cpu / requests)
    return out


def throughput(root: Path, n: int, jit: bool, rounds: int, seconds: float, connections: int) -> dict[str, float]:
    path = last_dynamic(n)
    extra = f"pcre_jit {'on' if jit else 'off'};"
    servers = {}
    for gated in (False, True):
        port = free_port()
        d = root / ("gated" if gated else "base") / ("jit" if jit else "nojit")
        d.mkdir(parents=True, exist_ok=True)
        if gated:
            bench_conf(root, d)
        ngx = Nginx(d, site_config(d, port, gated), main_extra=extra, master=False)
        ngx.start(port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as resp:
            assert resp.status == 200
        servers[gated] = (ngx, port)
    try:
        paired = []
        for ngx, _ in servers.values():
            subprocess.run(["taskset", "-pc", "0", str(ngx.proc.pid)], capture_output=True, check=True)
        for i in range(rounds):
            got = paired_round(servers, path, seconds, connections, (False, True) if i % 2 == 0 else (True, False))
            paired.append(got[True][0] / got[False][0])
        for gated, (ngx, _) in servers.items():  # back to both CPUs for the alternating rounds
            subprocess.run(["taskset", "-pc", "0,1", str(ngx.proc.pid)], capture_output=True, check=True)
        ratios, cpu_ratios, base_rps, gated_rps = [], [], [], []
        for i in range(rounds):
            order = (False, True) if i % 2 == 0 else (True, False)
            got = {g: wrk(servers[g][1], path, seconds, connections, servers[g][0].proc.pid) for g in order}
            base_rps.append(got[False][0])
            gated_rps.append(got[True][0])
            ratios.append(got[True][0] / got[False][0])
            cpu_ratios.append(got[False][1] / got[True][1])  # requests per NGINX CPU-second, gated/base
        return {"base_rps": statistics.median(base_rps), "gated_rps": statistics.median(gated_rps),
                "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                "cpu_ratio": statistics.median(cpu_ratios), "paired": statistics.median(paired),
                "paired_min": min(paired), "paired_max": max(paired)}
    finally:
        for ngx, _ in servers.values():
            ngx.stop()


def instructions(root: Path, n: int, jit: bool, gated: bool, r1: int = 200, r2: int = 1200) -> float:
    """User-space instructions per request of a single-process NGINX, from two callgrind runs."""
    path = last_dynamic(n)
    totals = []
    for count in (r1, r2):
        d = root / "cg" / f"{'g' if gated else 'b'}{'j' if jit else 'n'}{count}"
        d.mkdir(parents=True, exist_ok=True)
        if gated:
            bench_conf(root, d)
        port = free_port()
        ngx = Nginx(d, site_config(d, port, gated), main_extra=f"pcre_jit {'on' if jit else 'off'};", master=False)
        out = d / "callgrind.out"
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *ngx.argv()],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            for _ in range(count - 1):
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).read()
        finally:
            proc.send_signal(15)
            proc.wait(120)
        summary = subprocess.run(["callgrind_annotate", str(out)], capture_output=True, text=True).stdout
        total = re.search(r"([\d,]+)\s+\(100\.0%\)\s+PROGRAM TOTALS", summary) or re.search(r"([\d,]+)\s+PROGRAM TOTALS", summary)
        totals.append(int(total.group(1).replace(",", "")))
    return (totals[1] - totals[0]) / (r2 - r1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,5000")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--no-wrk", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="phoenix-bench-") as tmp:
        tmpdir = Path(tmp)
        app_dir = tmpdir / "apps"
        app_dir.mkdir()
        print(f"nginx {subprocess.run(['nginx', '-v'], capture_output=True, text=True).stderr.strip()}, "
              f"{os.cpu_count()} cores; route = last dynamic route; ratio = allowlist / baseline (same run)")
        for n in (int(s) for s in args.sizes.split(",")):
            root = tmpdir / f"n{n}"
            app = make_app(app_dir, n)
            runs = [build(root, app_dir, app) for _ in range(3)]
            t = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}
            t["nginx_t"] = max(r.get("nginx_t", 0.0) for r in runs)  # only the first build changes files
            rest = t["extract_process"] + t["compile_render_inspect"]
            print(f"\n== {n} routes ({n // 2} static, {n - n // 2} dynamic): include produced in "
                  f"{t['app_import'] + rest:.3f}s = app import {t['app_import']:.3f}s + rest {rest:.3f}s "
                  f"(extraction process {t['extract_process']:.3f}s, compile+render+inspect "
                  f"{t['compile_render_inspect']:.3f}s); nginx -t {t.get('nginx_t', 0):.3f}s; "
                  f"maps file {(root / 'conf.d' / 'app.allowlist.conf').stat().st_size // 1024} KiB")
            for jit in (False, True):
                label = f"pcre_jit {'on ' if jit else 'off'}"
                line = f"  {label}:"
                if not args.no_wrk:
                    r = throughput(root, n, jit, args.rounds, args.seconds, args.connections)
                    line += (f" alternating {r['gated_rps']:.0f} vs {r['base_rps']:.0f} req/s, ratio {r['ratio']:.3f} "
                             f"(rounds {r['ratio_min']:.3f}-{r['ratio_max']:.3f}); requests per NGINX "
                             f"CPU-second ratio {r['cpu_ratio']:.3f}; paired ratio {r['paired']:.3f} "
                             f"(rounds {r['paired_min']:.3f}-{r['paired_max']:.3f})")
                if not args.no_callgrind and shutil.which("valgrind"):
                    base = instructions(root, n, jit, gated=False)
                    gated = instructions(root, n, jit, gated=True)
                    line += f"; instructions/request {gated:.0f} vs {base:.0f} (+{gated - base:.0f}, x{gated / base:.3f})"
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
