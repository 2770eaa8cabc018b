"""What strict paths cost (run on demand: ``python bench/strict_paths.py``). Prints figures, asserts nothing.

The allowlist of bench/allowlist.py's app (N routes, half static ``/s<i>``, half ``/d<i>/<int:id>``)
rendered twice, ``strict_paths`` on (the default) and off; callgrind counts user-space instructions
per request of a single-process NGINX for each kind of request (count of a run with R2 requests
minus one with R1, divided by R2-R1, so start-up cancels out). Where strict paths cost something:

* the fast path's regex locations test ``$request_uri != $uri`` instead of ``$args`` (one if either way);
* a request the maps allow reads one more map, a regex on ``$request_uri``;
* a %-encoded path is no longer taken by the fast path (its raw target is not its ``$uri``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import allowlist as base  # noqa: E402  (bench/allowlist.py: the app, the callgrind harness)

from phoenix.allowlist import manage  # noqa: E402


def build(root: Path, app_dir: Path, app: str, strict: bool) -> None:
    (root / "conf.d").mkdir(parents=True, exist_ok=True)
    ngx = base.Nginx(root, base.site_config(root, base.free_port(), gated=True)
                     .replace('return 200 "ok\\n";', base.APP_HANDLER), master=False)
    p = manage.plan(str(root / "conf.d" / "app.allowlist.conf"), app=app, cwd=str(app_dir), config=str(ngx.conf),
                    strict_paths=strict)
    manage.apply(p)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--routes", type=int, default=1000)
    ap.add_argument("--r1", type=int, default=100)
    ap.add_argument("--r2", type=int, default=700)
    ap.add_argument("--jit", default="off,on")
    args = ap.parse_args()
    n = args.routes
    dyn = base.last_dynamic(n)
    kinds = {
        "fast path: last dynamic route": dyn,
        "maps: the same with a query string": dyn + "?page=2",
        "maps: a static route": "/s0",
        "%-encoded dynamic route": dyn[: -5] + "%312345",
    }
    with tempfile.TemporaryDirectory(prefix="phoenix-bench-strict-") as tmp:
        tmpdir = Path(tmp)
        app_dir = tmpdir / "apps"
        app_dir.mkdir()
        app = base.make_app(app_dir, n)
        roots = {strict: tmpdir / ("strict" if strict else "loose") for strict in (True, False)}
        for strict, root in roots.items():
            build(root, app_dir, app, strict)
        print(f"{n} routes; user-space instructions per request (callgrind, requests {args.r1}..{args.r2})")
        for jit in (j == "on" for j in args.jit.split(",")):
            for label, path in kinds.items():
                base.last_dynamic = lambda _n, path=path: path  # the harness requests last_dynamic(n)
                got = {strict: base.instructions(root, n, jit, gated=True, r1=args.r1, r2=args.r2)
                       for strict, root in roots.items()}
                print(f"  pcre_jit {'on ' if jit else 'off'} {label:38} strict {got[True]:7.0f}  off {got[False]:7.0f}"
                      f"  cost {got[True] - got[False]:+6.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
