"""``phoenix-allowlist``: what ``nginx_whitelist.managed`` does, for users without Salt.

    phoenix-allowlist /etc/nginx/conf.d/myapp.allowlist.conf 'myapp:app' \\
        --python /srv/myapp/venv/bin/python --cwd /srv/myapp --upstream 127.0.0.1:8000 [--test]
    phoenix-allowlist --probe http://127.0.0.1 'myapp:app' --cwd /srv/myapp

Exit status: 0 up to date or updated, 1 failed (nothing changed), 2 changes pending (--test).
"""

from __future__ import annotations

import argparse
import json
import sys

from . import manage, probe
from .errors import AllowlistError
from .extract import extract
from .rules import compile_routes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="phoenix-allowlist", description=__doc__.split("\n")[0])
    ap.add_argument("name", help="path of the maps file (http context), or the NGINX URL with --probe")
    ap.add_argument("app", help="module:attr or module:factory()")
    ap.add_argument("--config", default=manage.DEFAULT_CONFIG, help="main NGINX config (%(default)s)")
    ap.add_argument("--gate", help="path of the gate file (default: NAME with extension .gate)")
    ap.add_argument("--python", help="the app's interpreter (its virtualenv's bin/python)")
    ap.add_argument("--cwd", help="directory the app is imported from")
    ap.add_argument("--factory", action="store_true", help="call the attribute to build the app")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--upstream", help="the app's address as written in proxy_pass")
    ap.add_argument("--status", type=int, default=404)
    ap.add_argument("--console-path", default="/console")
    ap.add_argument("--nginx", default="nginx", help="nginx binary used for nginx -t")
    ap.add_argument("--prefix", help="nginx -p prefix")
    ap.add_argument("--test", action="store_true", help="show the diff, change nothing")
    ap.add_argument("--no-fast-path", action="store_true", help="leave every decision to the maps (no nested locations)")
    ap.add_argument("--no-strict-paths", action="store_true",
                    help="also allow raw paths NGINX normalises (%%2F, dot segments, //) when the result is allowed")
    ap.add_argument("--intercept-errors", action="store_true",
                    help="NGINX answers the app's 500s with its own error page (hides debugger tracebacks)")
    ap.add_argument("--probe", action="store_true", help="check the live NGINX at NAME (a URL)")
    args = ap.parse_args(argv)
    if args.probe:
        try:
            compiled = compile_routes(extract(args.app, python=args.python, cwd=args.cwd, factory=args.factory),
                                      [args.console_path])
            result = probe.run(args.name, probe.plan_checks(compiled), status=args.status)
        except (AllowlistError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for c in result["checks"]:
            print(f"{'ok  ' if c['ok'] else 'FAIL'} {c['method']:7} {c['path']:50} {c['status']} expected {c['expect']}")
        return 0 if result["ok"] else 1
    ret = manage.managed(
        args.name, test=args.test, nginx=args.nginx, prefix=args.prefix, app=args.app, config=args.config,
        gate=args.gate, python=args.python, cwd=args.cwd, timeout=args.timeout, factory=args.factory,
        upstream=args.upstream, status=args.status, console_path=args.console_path,
        fast_path=not args.no_fast_path, strict_paths=not args.no_strict_paths,
        intercept_errors=args.intercept_errors)
    if ret["changes"].get("diff"):
        print(ret["changes"]["diff"], end="")
    print(json.dumps({"result": ret["result"], "comment": ret["comment"]}), file=sys.stderr)
    if ret["result"] is None:
        return 2
    return 0 if ret["result"] else 1


if __name__ == "__main__":
    sys.exit(main())
