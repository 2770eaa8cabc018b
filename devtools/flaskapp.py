"""Serve a Flask app on 127.0.0.1 with the Werkzeug debugger on, in a child process.

Every response that comes from the app (the debugger included) carries ``X-Reached-App: 1``, so a
test can tell the app's own 404 from NGINX's. Run as a script::

    python -m devtools.flaskapp MODULE:ATTR APP_DIR   # prints the port, serves until SIGTERM
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HEADER = "X-Reached-App"


class _Mark:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        def start(status, headers, exc_info=None):
            return start_response(status, list(headers) + [(HEADER, "1")], exc_info)

        return self.app(environ, start)


def _serve(spec: str, app_dir: str) -> None:
    import importlib
    import logging

    from werkzeug.debug import DebuggedApplication
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log on the console
    sys.path.insert(0, app_dir)
    module, _, attr = spec.partition(":")
    app = getattr(importlib.import_module(module), attr or "app")
    app.debug = True
    wsgi = _Mark(DebuggedApplication(app, evalex=True, pin_security=False))
    server = make_server("127.0.0.1", 0, wsgi, threaded=True)
    print(server.server_port, flush=True)
    server.serve_forever()


class FlaskApp:
    """The app in a child process; ``port`` once started."""

    def __init__(self, spec: str, app_dir: str | Path, python: str = sys.executable) -> None:
        self.spec, self.app_dir, self.python = spec, str(app_dir), python
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> "FlaskApp":
        env = dict(os.environ, WERKZEUG_DEBUG_PIN="off")
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen([self.python, "-m", "devtools.flaskapp", self.spec, self.app_dir],
                                     stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"app {self.spec} did not start (got {line!r})")
        self.port = int(line)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def __enter__(self) -> "FlaskApp":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2])
