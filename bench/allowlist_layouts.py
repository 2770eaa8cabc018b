"""The allowlist's cost on each common layout, side by side with the same config without it (one run).

``bash bench/run.sh layouts [-- --sizes 1000,5000 --layouts fits,regex --rounds 4 --seconds 3]``

For each layout (a server shape the allowlist must guard, see ``LAYOUTS``), each app size (N routes,
half static ``/s<i>``, half ``/d<i>/<int:id>``) and ``pcre_jit`` off/on it measures, for the last
dynamic route (``/d<N-1>/12345``) and, with ``--routes dynamic,static``, the last static one:

* **CPU per request**: user+system CPU time of the single NGINX process (``/proc/<pid>/stat``) while
  wrk (keep-alive, one thread) hammers it, divided by wrk's request count; allowlist and baseline
  alternate A/B/B/A, and the ratio is the median of per-round ratios (this VM is shared: single rounds
  swing by +-10 %, and the same config against itself gave medians of 1.03 and 1.08); and **paired**:
  both at once, both NGINX on CPU 0 and both wrk on CPU 1, so both get the same neighbours (the same
  config against itself: 0.998 and 1.005, rounds within +-2.5 %);
* **instructions per request**: valgrind/callgrind on a single-process NGINX, counting only inside
  ``ngx_process_events_and_timers`` (start-up and config parsing excluded), one keep-alive connection,
  divided by the number of requests. Deterministic, so it is the figure to compare changes with.

The state (``manage.plan``/``apply``) writes the allowlist for each layout's real config, in which the app
location passes to ``proxy_pass``; for the measurement every ``proxy_pass`` (the user's and the fast
path's copies) becomes ``return 200`` on both sides, so both serve with NGINX's cheapest handler and the
difference is the allowlist alone. Per size it also prints the time to produce the include beyond the
app's import, the allowlist files' size, ``nginx -t`` time and the worker's resident memory, against the
same config without the allowlist.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "_utils"), str(HERE.parent), str(HERE)]

from allowlist import (_wrk_argv, _wrk_result, last_dynamic, make_app, make_words_app, paired_round,  # noqa: E402
                       user_system)
from devtools.nginx import Nginx, free_port, wait_port  # noqa: E402
from phoenix.allowlist import manage  # noqa: E402

APP = "proxy_pass http://127.0.0.1:9;"
#: the layouts of issue 13: ``{g}`` is the gate include, ``{h}`` the app's handler
LAYOUTS = {
    "fits": "location / {{ {g}{h} }}",
    "regex": 'location ~* \\.(css|js)$ {{ return 200 "asset\\n"; }}\n        location / {{ {g}{h} }}',
    "uri": "location / {{ {g}proxy_pass http://127.0.0.1:9/; }}",
    "nested": 'location / {{ {g}{h}\n            location /assets/ {{ return 200 "asset\\n"; }} }}',
    "multi": "location / {{ {g}{h} }}\n        location /api/ {{ {g}{h} }}",
    "multi_copies": "location / {{ {g}{h} }}\n        location /api/ {{ {c}{h} }}",
    "if": 'location / {{ {g}if ($http_x_block) {{ return 403; }}\n            {h} }}',
    "limit_except": "location / {{ {g}limit_except GET POST {{ deny all; }}\n            {h} }}",
}
_PASS = re.compile(r"proxy_pass http://127\.0\.0\.1:9[^;]*;")
RETURN = 'return 200 "ok\\n";'


#: the allowlist's files (multi_copies: the second location includes its own copy of the gate)
FILES = ("app.allowlist.conf", "app.allowlist.gate", "app.allowlist.api.gate")


def http_block(root: Path, layout: str, port: int, gated: bool) -> str:
    maps = f"    include {root}/conf.d/app.allowlist.conf;\n" if gated else ""
    gate = f"include {root}/conf.d/app.allowlist.gate; " if gated else ""
    copy = f"include {root}/conf.d/app.allowlist.api.gate; " if gated else ""
    body = LAYOUTS[layout].format(g=gate, c=copy, h=APP)
    return f"{maps}    server {{ listen 127.0.0.1:{port};\n        {body}\n    }}"


def build(root: Path, app_dir: Path, app: str, layout: str, jit: bool = False) -> tuple[dict[str, float], str]:
    """Write the allowlist for ``layout`` (in a config with ``pcre_jit`` on or off: the fast path's shape
    follows it) with the real pipeline; (timings, the state's fast-path summary)."""
    (root / "conf.d").mkdir(parents=True, exist_ok=True)
    ngx = Nginx(root, http_block(root, layout, free_port(), gated=True), main_extra=f"pcre_jit {'on' if jit else 'off'};",
                master=False)
    p = manage.plan(str(root / "conf.d" / "app.allowlist.conf"), app=app, cwd=str(app_dir), config=str(ngx.conf))
    manage.apply(p)
    return p.timings, p.rendered.fast or f"no fast path: {p.fast_off}"


def measured(built: Path, dest: Path, layout: str, gated: bool, port: int, jit: bool) -> Nginx:
    """The config to measure in ``dest``: the layout with every ``proxy_pass`` turned into ``return 200``."""
    dest.mkdir(parents=True, exist_ok=True)
    if gated:
        (dest / "conf.d").mkdir(exist_ok=True)
        for name in (f for f in FILES if (built / "conf.d" / f).exists()):
            text = (built / "conf.d" / name).read_text()
            (dest / "conf.d" / name).write_text(_PASS.sub(RETURN, text))
    http = _PASS.sub(RETURN, http_block(dest, layout, port, gated))
    return Nginx(dest, http, main_extra=f"pcre_jit {'on' if jit else 'off'};", master=False)


def serving(built: Path, dest: Path, layout: str, gated: bool, jit: bool, path: str) -> tuple[Nginx, int]:
    """The measured config started and answering ``path`` with 200 (another port if one is taken meanwhile)."""
    for attempt in range(3):
        port = free_port()
        ngx = measured(built, dest / str(attempt), layout, gated, port, jit)
        try:
            ngx.start(port)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            _get(conn, path)
            conn.close()
            return ngx, port
        except RuntimeError as exc:
            ngx.stop()
            print(f"   (attempt {attempt + 1}: {exc}; again on another port)")
    raise RuntimeError(f"NGINX for {layout} did not serve {path} on 3 ports")


def _get(conn: http.client.HTTPConnection, path: str) -> None:
    conn.request("GET", path, headers={"Host": "bench"})
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"{path} answered {resp.status} {body[:80]!r} during the benchmark")


def cpu_rounds(servers: dict[bool, tuple[Nginx, int]], path: str, rounds: int, seconds: float,
               connections: int) -> dict[str, list[float]]:
    """Per-round NGINX CPU time per request (A/B then B/A): ratios allowlist / baseline, and microseconds.

    With two or more CPUs both NGINX processes run on CPU 0 and wrk on the next one (``taskset``), so the
    load generator does not take the measured process's CPU. The kernel's share (system time: sockets,
    epoll) is the same work on both sides and most of the total; ``user`` is NGINX's own code, where
    the allowlist runs. ``paired``: the same rounds with both loaded at once (each NGINX gets half of
    CPU 0, each wrk half of CPU 1), so a noisy neighbour slows both alike.
    """
    pinned = (os.cpu_count() or 1) >= 2 and shutil.which("taskset")
    if pinned:
        for ngx, _ in servers.values():
            subprocess.run(["taskset", "-p", "-c", "0", str(ngx.proc.pid)], capture_output=True, check=True)
    out: dict[str, list[float]] = {"cpu": [], "user": [], "base_us": [], "gated_us": [], "base_user_us": [],
                                   "gated_user_us": []}
    for i in range(rounds):
        per = {}
        for gated in ((False, True) if i % 2 == 0 else (True, False)):
            ngx, port = servers[gated]
            user, system = user_system(ngx.proc.pid)
            argv = (["taskset", "-c", "1"] if pinned else []) + _wrk_argv(port, path, seconds, connections)
            report = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            user2, system2 = user_system(ngx.proc.pid)
            requests = _wrk_result(report, path)[1]
            per[gated] = ((user2 - user + system2 - system) / requests, (user2 - user) / requests)
        out["cpu"].append(per[True][0] / per[False][0])
        out["user"].append(per[True][1] / per[False][1])
        out["base_us"].append(per[False][0] * 1e6)
        out["gated_us"].append(per[True][0] * 1e6)
        out["base_user_us"].append(per[False][1] * 1e6)
        out["gated_user_us"].append(per[True][1] * 1e6)
    if pinned:  # paired: both at once, NGINX sharing CPU 0 and wrk CPU 1, so both get the same neighbours
        out["paired"] = []
        for i in range(rounds):
            got = paired_round(servers, path, seconds, connections, (False, True) if i % 2 == 0 else (True, False))
            out["paired"].append(got[True][1] / got[False][1])
    return out


def instructions(ngx: Nginx, port: int, path: str, requests: int) -> tuple[float, float]:
    """User-space instructions per keep-alive request inside NGINX's event loop (callgrind), and those of them in
    glibc's malloc.c (``allocator``)."""
    out = ngx.prefix / "callgrind.out"
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                             "--toggle-collect=ngx_process_events_and_timers", *ngx.argv()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=300)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(requests):
            _get(conn, path)
        conn.close()
    finally:
        proc.send_signal(15)
        # a signal that lands between two event-loop iterations waits for the next event: poke it
        for _ in range(120):
            try:
                proc.wait(1)
                break
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
        else:
            proc.kill()
            raise RuntimeError(f"callgrind NGINX in {ngx.prefix} did not stop")
    total = 0
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            total = int(line.split()[1])
    return total / requests, allocator(out) / requests


def allocator(out: Path) -> int:
    """Instructions in glibc's malloc.c of a callgrind profile (``callgrind_annotate``, 0 without it).

    NGINX mallocs pools for every request, and what that costs depends on the heap the configuration leaves
    behind (bench/README.md, session 9): the figure without it is the one that compares code with code.
    """
    if not shutil.which("callgrind_annotate"):
        return 0
    text = subprocess.run(["callgrind_annotate", str(out)], capture_output=True, text=True, check=False).stdout
    return sum(int(m.group(1).replace(",", "")) for m in re.finditer(r"^\s*([\d,]+) \([^)]*\)\s+\S*malloc\.c:", text, re.M))


def rss_kib(pid: int) -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))


def nginx_t(ngx: Nginx, times: int = 3) -> float:
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        if ngx.test().returncode != 0:
            raise RuntimeError(ngx.test().stderr)
        spent.append(time.perf_counter() - started)
    return statistics.median(spent)


def produced(tmpdir: Path, app_dir: Path, app: str, n: int, layout: str, jit: bool, path: str) -> tuple[Path, str]:
    """Build the allowlist 3 times, print what producing it took and what it costs NGINX; (built, summary)."""
    built = tmpdir / f"n{n}" / layout / f"built{int(jit)}"
    runs = [build(built, app_dir, app, layout, jit) for _ in range(3)]
    fast = runs[0][1]
    t = {k: statistics.median(r[0].get(k, 0.0) for r in runs) for k in runs[0][0]}
    rest = t["extract_process"] + t["compile_render_inspect"]
    size = sum((built / "conf.d" / f).stat().st_size for f in FILES if (built / "conf.d" / f).exists())
    side = {}
    for gated in (False, True):
        port = free_port()
        ngx = measured(built, tmpdir / f"n{n}" / layout / f"m{int(gated)}{int(jit)}", layout, gated, port, jit)
        ngx.start(port)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            _get(conn, path)
            conn.close()
            side[gated] = (rss_kib(ngx.proc.pid), nginx_t(ngx))
        finally:
            ngx.stop()
    print(f"\n== {n} routes, layout {layout}, pcre_jit {'on' if jit else 'off'}: {fast}\n   include produced in app "
          f"import {t['app_import']:.3f}s + rest {rest:.3f}s (extractor process {t['extract_process']:.3f}s, "
          f"compile+render+inspect {t['compile_render_inspect']:.3f}s; CPU beyond the import "
          f"{t.get('rest_cpu', 0):.3f}s); allowlist files {size / 1024:.0f} KiB; nginx -t {side[True][1]:.3f}s vs "
          f"{side[False][1]:.3f}s; worker RSS {side[True][0] / 1024:.1f} vs {side[False][0] / 1024:.1f} MiB", flush=True)
    return built, fast


def measure(args: argparse.Namespace, tmpdir: Path, built: Path, n: int, layout: str, jit: bool, kind: str,
            path: str, fast: str, callgrind: bool) -> dict:
    """One row: CPU per request (alternating and paired) and instructions per request against the baseline."""
    row: dict = {"n": n, "layout": layout, "jit": jit, "kind": kind, "fast": not fast.startswith("no ")}
    if not args.no_wrk:
        servers = {}
        try:
            for gated in (False, True):
                servers[gated] = serving(built, tmpdir / f"n{n}" / layout / f"{int(gated)}{int(jit)}", layout, gated,
                                         jit, path)
            cpu = cpu_rounds(servers, path, args.rounds, args.seconds, args.connections)
        finally:
            for ngx, _ in servers.values():
                ngx.stop()
        ratios = cpu["cpu"]
        if cpu.get("paired"):
            row.update(paired=statistics.median(cpu["paired"]), paired_min=min(cpu["paired"]),
                       paired_max=max(cpu["paired"]))
        row.update(cpu=statistics.median(ratios), cpu_min=min(ratios), cpu_max=max(ratios),
                   user=statistics.median(cpu["user"]),
                   us=(statistics.median(cpu["gated_us"]), statistics.median(cpu["base_us"])),
                   user_us=(statistics.median(cpu["gated_user_us"]), statistics.median(cpu["base_user_us"])))
    if callgrind:  # a config of its own: a fresh port, a fresh prefix
        for gated, key in ((False, "base_instr"), (True, "instr")):
            for attempt in range(3):  # a shared machine: another process may take the port
                port = free_port()
                ngx = measured(built, tmpdir / f"n{n}" / layout / f"cg{int(gated)}{int(jit)}{attempt}", layout, gated,
                               port, jit)
                try:
                    row[key], row[key + "_malloc"] = instructions(ngx, port, path, args.requests)
                    break
                except RuntimeError as exc:
                    print(f"   (callgrind attempt {attempt + 1}: {exc}; again on another port)")
            else:
                raise RuntimeError(f"callgrind failed 3 times for {layout}")
    line = f"   pcre_jit {'on ' if jit else 'off'} {kind} {path}:"
    if "cpu" in row:
        line += (f" CPU/request x{row['cpu']:.3f} (rounds {row['cpu_min']:.3f}-{row['cpu_max']:.3f}; "
                 f"{row['us'][0]:.2f} vs {row['us'][1]:.2f} us), user CPU x{row['user']:.3f} "
                 f"({row['user_us'][0]:.2f} vs {row['user_us'][1]:.2f} us)")
    if "paired" in row:
        line += f"; paired CPU/request x{row['paired']:.3f} (rounds {row['paired_min']:.3f}-{row['paired_max']:.3f})"
    if "instr" in row:
        row["own"] = row["instr"] - row["instr_malloc"] - row["base_instr"] + row["base_instr_malloc"]
        line += (f"; instructions/request {row['instr']:.0f} vs {row['base_instr']:.0f} "
                 f"(+{row['instr'] - row['base_instr']:.0f}, x{row['instr'] / row['base_instr']:.3f}; "
                 f"without glibc's malloc.c {row['own']:+.0f}: {row['base_instr_malloc']:.0f} -> "
                 f"{row['instr_malloc']:.0f})")
    print(line, flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,5000")
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    ap.add_argument("--jit", default="off,on")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--requests", type=int, default=2000, help="keep-alive requests under callgrind")
    ap.add_argument("--routes", default="dynamic", help="dynamic, static or both (dynamic,static)")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--no-wrk", action="store_true")
    ap.add_argument("--app", default="bench", choices=("bench", "words"),
                    help="bench: /s<i> and /d<i>/<int:id>; words: /<word>/<int:id> and /<word>/list (random words, "
                         "names that do not factor)")
    args = ap.parse_args()
    callgrind = bool(not args.no_callgrind and shutil.which("valgrind"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="phoenix-layouts-") as tmp:
        tmpdir = Path(tmp)
        app_dir = tmpdir / "apps"
        app_dir.mkdir()
        print(f"nginx {subprocess.run(['nginx', '-v'], capture_output=True, text=True).stderr.strip()}, "
              f"{os.cpu_count()} cores; ratios = allowlist / the same config without it (same run)")
        for n in (int(s) for s in args.sizes.split(",")):
            if args.app == "words":
                app, dynamic, static = make_words_app(app_dir, n)
                every = {"dynamic": dynamic, "static": static}
            else:
                app = make_app(app_dir, n)
                every = {"dynamic": last_dynamic(n), "static": f"/s{n - 1 if (n - 1) % 2 == 0 else n - 2}"}
            targets = [(kind, every[kind]) for kind in args.routes.split(",")]
            for layout in args.layouts.split(","):
                for jit in (j == "on" for j in args.jit.split(",")):  # the fast path's shape follows pcre_jit
                    built, fast = produced(tmpdir, app_dir, app, n, layout, jit, targets[0][1])
                    rows += [measure(args, tmpdir, built, n, layout, jit, kind, path, fast, callgrind)
                             for kind, path in targets]
    print("\n| routes | layout | route | fast path | pcre_jit | CPU/request (median, rounds) | paired CPU/request "
          "| user CPU/request | instructions/request | without malloc.c |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cpu = f"x{r['cpu']:.3f} ({r['cpu_min']:.2f}-{r['cpu_max']:.2f})" if "cpu" in r else "-"
        user = f"x{r['user']:.3f} ({r['user_us'][0]:.2f} vs {r['user_us'][1]:.2f} us)" if "user" in r else "-"
        paired = f"x{r['paired']:.3f} ({r['paired_min']:.2f}-{r['paired_max']:.2f})" if "paired" in r else "-"
        ins = (f"{r['instr']:.0f} vs {r['base_instr']:.0f} (+{r['instr'] - r['base_instr']:.0f}, "
               f"x{r['instr'] / r['base_instr']:.3f})") if "instr" in r else "-"
        own = f"{r['own']:+.0f}" if "own" in r else "-"
        print(f"| {r['n']:,} | {r['layout']} | {r['kind']} | {'yes' if r['fast'] else 'no'} | "
              f"{'on' if r['jit'] else 'off'} | {cpu} | {paired} | {user} | {ins} | {own} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
