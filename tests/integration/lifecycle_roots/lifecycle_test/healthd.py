"""A tiny HTTP server for the provisioning tests: /health answers 200, everything else 404 (mode ``open``:
/console answers 200 too). Binds the instance's own loopback address; exits if it is already taken."""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

address, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        ok = path == "/health" and "__debugger__" not in self.path
        if mode == "open" and path == "/console":
            ok = True
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok" if ok else b"no")

    def log_message(self, *args):
        pass


try:
    server = ThreadingHTTPServer((address, port), Handler)
except OSError:
    sys.exit(0)  # already serving (a second highstate)
server.serve_forever()
