"""Serve the sample app on one address with the Werkzeug debugger on (deployed by salt/webapp).

    python serve.py --host 10.0.1.23 --port 8000 --instance i-0123456789abcdef0 [--no-debugger]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--instance", default="unknown")
    parser.add_argument("--no-debugger", action="store_true")
    args = parser.parse_args()
    os.environ["WEBAPP_INSTANCE"] = args.instance
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

    from werkzeug.serving import make_server

    from webapp_app import create_app

    app = create_app()
    wsgi = app
    if not args.no_debugger:
        from werkzeug.debug import DebuggedApplication

        app.debug = True
        wsgi = DebuggedApplication(app, evalex=True)
        wsgi.trusted_hosts.append(args.host)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = make_server(args.host, args.port, wsgi, threaded=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    logging.info("serving on http://%s:%d (debugger %s)", args.host, args.port,
                 "off" if args.no_debugger else "ON")
    server.serve_forever()


if __name__ == "__main__":
    main()
