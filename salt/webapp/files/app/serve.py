"""Serve a Flask app on one address with the Werkzeug debugger on (deployed by salt/webapp).

    python serve.py --host 10.0.1.23 --port 8000 --instance i-0123456789abcdef0 \
        [--app-dir DIR] [--app 'webapp_app:create_app()'] [--no-debugger] [--commit-header X-App-Commit]

``--app`` is ``module:attr`` or ``module:factory()`` imported from ``--app-dir`` (default: this file's
directory, where salt/webapp puts the sample app). ``--commit-header NAME`` adds the header ``NAME`` with
the commit that ``--app-dir`` has checked out (read from its ``.git``, as salt/deployed_commit leaves it)
to every response; nothing when the app dir is no git checkout.

The debugger trusts the address it serves on (Werkzeug otherwise refuses its console for any Host but
localhost), so a request to ``http://<host>:<port>/console`` really reaches it: only NGINX's allowlist
stands between the debugger and the network.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys


def checkout_commit(app_dir: str) -> str | None:
    """The commit checked out in ``app_dir`` (a detached HEAD, or a branch's ref), without running git."""
    git = os.path.join(app_dir, ".git")
    try:
        with open(os.path.join(git, "HEAD"), encoding="ascii") as fh:
            head = fh.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not head.startswith("ref: "):
        return head or None
    ref = head[5:]
    try:
        with open(os.path.join(git, ref), encoding="ascii") as fh:
            return fh.read().strip() or None
    except (OSError, UnicodeDecodeError):
        pass
    try:
        with open(os.path.join(git, "packed-refs"), encoding="ascii") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except (OSError, UnicodeDecodeError):
        pass
    return None


def with_header(wsgi, name: str, value: str):
    """``wsgi`` with the response header ``name: value`` added to every response."""

    def app(environ, start_response):
        def start(status, headers, exc_info=None):
            return start_response(status, [*headers, (name, value)], exc_info)

        return wsgi(environ, start)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--instance", default="unknown")
    parser.add_argument("--app-dir", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--app", default="webapp_app:create_app()")
    parser.add_argument("--no-debugger", action="store_true")
    parser.add_argument("--commit-header", help="response header naming the app dir's checked-out commit")
    args = parser.parse_args()
    os.environ["WEBAPP_INSTANCE"] = args.instance
    sys.path.insert(0, args.app_dir)
    os.chdir(args.app_dir)

    import importlib

    from werkzeug.serving import make_server

    module, _, attr = args.app.partition(":")
    factory = attr.endswith("()")
    target = getattr(importlib.import_module(module), attr[:-2] if factory else (attr or "app"))
    app = target() if factory else target
    wsgi = app
    if not args.no_debugger:
        from werkzeug.debug import DebuggedApplication

        app.debug = True
        wsgi = DebuggedApplication(app, evalex=True)
        wsgi.trusted_hosts.append(args.host)
    commit = checkout_commit(args.app_dir) if args.commit_header else None
    if commit:
        wsgi = with_header(wsgi, args.commit_header, commit)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = make_server(args.host, args.port, wsgi, threaded=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    logging.info("serving on http://%s:%d (debugger %s)", args.host, args.port,
                 "off" if args.no_debugger else "ON")
    server.serve_forever()


if __name__ == "__main__":
    main()
