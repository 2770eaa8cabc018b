"""The allowlist demo: what reaches a Flask app with the Werkzeug debugger on, without and with it.

Starts the sample app (tests/apps/demo_app.py, debugger on) and two real NGINX servers in front of
it on 127.0.0.1: one as most sites are configured, one whose allowlist was written by
``nginx_whitelist.managed`` applied through ``salt-call --local``. Sends the same requests to both
and prints them side by side, then stops everything it started.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from devtools.flaskapp import FlaskApp
from devtools.saltcall import salt_call, write_minion_config
from devtools.site import make_site, request

REPO = Path(__file__).resolve().parent.parent
APPS = REPO / "tests" / "apps"

REQUESTS = [
    ("legit routes", "GET", "/login"), ("", "POST", "/login"), ("", "GET", "/item/42"),
    ("", "GET", "/files/report/2024.txt"), ("", "GET", "/bob"), ("", "DELETE", "/delete/3"),
    ("strict-slash redirect", "GET", "/about"),
    ("invalid parameter", "GET", "/item/abc"), ("", "GET", "/lang/fra"),
    ("wrong method", "PUT", "/login"), ("", "GET", "/delete/3"),
    ("unknown path", "GET", "/admin/secret"),
    ("debugger console", "GET", "/console"), ("", "GET", "/%63onsole"), ("", "GET", "//console"),
    ("", "GET", "/login/../console"),
    ("__debugger__ requests", "GET", "/?__debugger__=yes&cmd=resource&f=debugger.js"),
    ("", "GET", "/bob?%5f%5fdebugger%5f%5f=yes&cmd=resource&f=style.css"),
    ("served by NGINX itself", "GET", "/assets/logo.txt"),
]


def _cell(port: int, method: str, path: str) -> str:
    status, reached, _ = request(port, method, path)
    return f"{status} {'app ' if reached else 'nginx'}"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="phoenix-demo-") as tmp, FlaskApp("demo_app:app", APPS) as app:
        root = Path(tmp)
        print(f"Flask app with the Werkzeug debugger on: 127.0.0.1:{app.port}")
        open_site = make_site(root / "open", app.port)
        open_site.maps.write_text("# nothing: this site has no allowlist\n")
        guarded = make_site(root / "guarded", app.port)
        open_ngx, guarded_ngx = open_site.nginx(gated=False), guarded.nginx(gated=True)
        conf = write_minion_config(root / "salt", REPO)
        print("Applying nginx_whitelist.managed with salt-call --local (test=True first) ...")
        args = ["state.single", "nginx_whitelist.managed", f"name={guarded.maps}", "app=demo_app:create_app()",
                f"cwd={APPS}", f"config={guarded.config}", f"upstream=127.0.0.1:{app.port}"]
        for extra in (["test=True"], []):
            code, out, err = salt_call(conf, *args, *extra)
            if not isinstance(out, dict):
                print(f"salt-call failed ({code}): {err}", file=sys.stderr)
                return 1
            (ret,) = out.values()
            print(f"  result={ret['result']}: {ret['comment']}")
            if ret["result"] is False:
                return 1
        with open_ngx.start(open_site.port), guarded_ngx.start(guarded.port):
            print(f"\nNGINX without allowlist: 127.0.0.1:{open_site.port}   with allowlist: 127.0.0.1:{guarded.port}\n")
            print(f"{'':24} {'request':54} {'without':11} {'with':11}")
            leaks = 0
            for label, method, path in REQUESTS:
                without, with_ = _cell(open_site.port, method, path), _cell(guarded.port, method, path)
                print(f"{label:24} {method + ' ' + path:54} {without:11} {with_:11}")
                leaks += ("console" in path or "debugger" in path) and with_.endswith("app ")
        print("\n'app' = the request reached the Flask app; 'nginx' = NGINX answered by itself.")
        print("Everything the demo started has been stopped.")
        return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
