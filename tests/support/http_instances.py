"""A localcloud instance agent whose instances are tiny real HTTP servers on their own private IP
(localcloud's per-instance loopback address) and the target group's port, answering ``200 <instance id>``:
enough to put a load balancer in front of a group without Salt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

SERVER = r"""
import http.server, sys
iid, host, port = sys.argv[1].encode(), sys.argv[2], int(sys.argv[3])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", str(len(iid))); self.end_headers()
        self.wfile.write(iid)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer((host, port), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


class HttpInstances:
    """``start(id)`` runs a server on ``<private IP>:port`` for the instance, ``stop(id)`` ends it."""

    def __init__(self, port: int = 8080) -> None:
        self.port = port
        self.cloud = None
        self._procs: dict[str, subprocess.Popen[str]] = {}
        self.ports: dict[str, int] = {}
        self.stopped_at: dict[str, float] = {}  # instance id -> monotonic time its server was stopped
        self._lock = threading.Lock()

    def attach(self, cloud) -> None:  # localcloud calls it once it serves
        self.cloud = cloud

    def start(self, instance_id: str) -> None:
        host = self.cloud.private_ip(instance_id)
        proc = subprocess.Popen([sys.executable, "-c", SERVER, instance_id, host, str(self.port)],
                                stdout=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        with self._lock:
            self._procs[instance_id], self.ports[instance_id] = proc, port

    def stop(self, instance_id: str) -> None:
        with self._lock:
            proc = self._procs.pop(instance_id, None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        self.stopped_at[instance_id] = time.monotonic()

    def crash(self, instance_id: str) -> None:
        """Kill the server as a crash would (the instance stays registered)."""
        with self._lock:
            proc = self._procs[instance_id]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def running(self) -> set[str]:
        with self._lock:
            return {iid for iid, p in self._procs.items() if p.poll() is None}

    def close(self) -> None:
        for instance_id in list(self._procs):
            self.stop(instance_id)
