"""``phoenix-allowlist``: what ``nginx_whitelist.managed`` does, for users without Salt.

    phoenix-allowlist /etc/nginx/conf.d/myapp.allowlist.conf 'myapp:app' \\
        --python /srv/myapp/venv/bin/python --cwd /srv/myapp --upstream 127.0.0.1:8000 [--test | --reload]
    phoenix-allowlist --probe http://127.0.0.1 'myapp:app' --python /srv/myapp/venv/bin/python --cwd /srv/myapp

``--python`` is the app's own interpreter (its virtualenv): Phoenix imports the app there to read its routes.

Output: the diff and one sentence on stdout; errors on stderr. ``--json``: one JSON object on stdout
(``result``, ``comment``, ``changes``, ``reload``), errors also on stderr.

Exit status: 0 up to date or updated (and reloaded with ``--reload``); 1 failed, nothing changed;
2 changes pending (``--test``); 3 ``--reload`` failed (``nginx -t`` on the live config or the reload itself):
the files are up to date, NGINX still serves its previous configuration; 64 bad command line.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from . import manage, probe
from .errors import AllowlistError, ReloadError
from .extract import extract
from .rules import compile_routes
from .validate import nginx_reload

OK, FAILED, PENDING, NOT_RELOADED, USAGE = 0, 1, 2, 3, 64


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's 2 would read as "changes pending"
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="phoenix-allowlist", formatter_class=argparse.RawDescriptionHelpFormatter,
                 description="Write the NGINX allowlist of a Flask app (what nginx_whitelist.managed does), "
                             "or probe a running NGINX with --probe.",
                 epilog="exit status: 0 up to date or updated (and reloaded with --reload), 1 failed (nothing "
                        "changed),\n  2 changes pending (--test), 3 files up to date but --reload failed (NGINX serves "
                        "its previous config),\n  64 bad command line")
    ap.add_argument("name", help="path of the maps file (http context), or the NGINX URL with --probe")
    ap.add_argument("app", help="module:attr or module:factory()")
    ap.add_argument("--config", default=manage.DEFAULT_CONFIG, help="main NGINX config (%(default)s)")
    ap.add_argument("--gate", help="path of the gate file (default: NAME with extension .gate)")
    ap.add_argument("--python", help="the app's own interpreter (its virtualenv's bin/python); needed "
                                     "unless Phoenix's interpreter can import the app")
    ap.add_argument("--cwd", help="directory the app is imported from")
    ap.add_argument("--factory", action="store_true", help="call the attribute to build the app")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--upstream", help="the app's address as written in proxy_pass")
    ap.add_argument("--status", type=int, default=404)
    ap.add_argument("--console-path", default="/console")
    ap.add_argument("--nginx", default="nginx", help="nginx binary used for nginx -t and the reload")
    ap.add_argument("--prefix", help="nginx -p prefix")
    ap.add_argument("--test", action="store_true", help="show the diff, change nothing")
    ap.add_argument("--reload", action="store_true",
                    help="after writing, run nginx -t on the live config and, if it passes, nginx -s reload")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ap.add_argument("--no-fast-path", action="store_true", help="leave every decision to the maps (no nested locations)")
    ap.add_argument("--no-strict-paths", action="store_true",
                    help="also allow raw paths NGINX normalises (%%2F, dot segments, //) when the result is allowed")
    ap.add_argument("--intercept-errors", action="store_true",
                    help="NGINX answers the app's 500s with its own error page (hides debugger tracebacks)")
    ap.add_argument("--probe", action="store_true", help="check the live NGINX at NAME (a URL)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.probe:
        return _probe(args)
    if args.test and args.reload:
        ap.error("--reload changes the running NGINX; it cannot be combined with --test")
    ret = manage.managed(
        args.name, test=args.test, strict=True, nginx=args.nginx, prefix=args.prefix, app=args.app, config=args.config,
        gate=args.gate, python=args.python, cwd=args.cwd, timeout=args.timeout, factory=args.factory,
        upstream=args.upstream, status=args.status, console_path=args.console_path,
        fast_path=not args.no_fast_path, strict_paths=not args.no_strict_paths,
        intercept_errors=args.intercept_errors)
    changed = bool(ret["result"]) and bool(ret["changes"].get("files"))
    reload: dict[str, Any] | None = None
    code = PENDING if ret["result"] is None else OK if ret["result"] else FAILED
    if args.reload and ret["result"]:
        try:
            reload = {"reloaded": True, "output": nginx_reload(args.config, nginx=args.nginx, prefix=args.prefix)}
        except (AllowlistError, OSError) as exc:
            reload = {"reloaded": False, "error": str(exc)}
            code = NOT_RELOADED
    reload_command = shlex.join([args.nginx] + (["-p", args.prefix] if args.prefix else [])
                                + (["-c", args.config] if args.config != manage.DEFAULT_CONFIG else [])
                                + ["-s", "reload"])
    needed = changed and not (reload and reload["reloaded"])
    if args.json:
        print(json.dumps({"result": ret["result"], "comment": ret["comment"], "changes": ret["changes"],
                          "reload": reload, "reload_needed": needed}, indent=2))
        if code in (FAILED, NOT_RELOADED):
            print(f"error: {ret['comment'] if code == FAILED else reload['error']}", file=sys.stderr)
        return code
    if ret["changes"].get("diff"):
        print(ret["changes"]["diff"], end="" if ret["changes"]["diff"].endswith("\n") else "\n")
    if code == FAILED:
        print(f"error: {ret['comment']}", file=sys.stderr)
        return code
    print(ret["comment"])
    if reload is not None and reload["reloaded"]:
        print(f"NGINX reloaded: nginx -t passed on {args.config}, then {reload_command}"
              + (f" ({reload['output']})" if reload["output"] else "") + ".")
    elif reload is not None:
        what = "the allowlist files were written, but " if changed else ""
        print(f"error: {what}NGINX was not reloaded and still serves its previous configuration: "
              f"{reload['error']}", file=sys.stderr)
    elif needed:
        print(f"NGINX serves the new allowlist only after a reload: run {reload_command} "
              "(or use --reload next time).")
    return code


def _probe(args: argparse.Namespace) -> int:
    try:
        compiled = compile_routes(extract(args.app, python=args.python, cwd=args.cwd, factory=args.factory),
                                  [args.console_path])
        result = probe.run(args.name, probe.plan_checks(compiled), status=args.status)
    except (AllowlistError, OSError) as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc)}, indent=2))
        print(f"error: {exc}", file=sys.stderr)
        return FAILED
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for c in result["checks"]:
            print(f"{'ok  ' if c['ok'] else 'FAIL'} {c['method']:7} {c['path']:50} {c['status']} "
                  f"expected {'refusal' if c['expect'] == 'refused' else 'the app'}")
        print(f"{result['checked']} checks against {args.name}: "
              + ("all as expected." if result["ok"] else f"{len(result['failed'])} FAILED."))
    return OK if result["ok"] else FAILED


if __name__ == "__main__":
    sys.exit(main())
