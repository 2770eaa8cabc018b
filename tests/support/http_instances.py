"""A localcloud instance agent whose instances are tiny real HTTP servers on 127.0.0.1 that answer
``200 <instance id>``: enough to put a load balancer in front of a group without Salt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

SERVER = r"""
import http.server, sys
iid = sys.argv[1].encode()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", str(len(iid))); self.end_headers()
        self.wfile.write(iid)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


class HttpInstances:
    """``start(id)`` runs a server for the instance, ``stop(id)`` ends it; ``resolve`` maps target ids to
    ``("127.0.0.1", port)`` for :class:`devtools.alb.LoadBalancer` (stand-in for per-instance private IPs)."""

    def __init__(self) -> None:
        self._procs: dict[str, subprocess.Popen[str]] = {}
        self.ports: dict[str, int] = {}
        self.stopped_at: dict[str, float] = {}  # instance id -> monotonic time its server was stopped
        self._lock = threading.Lock()

    def start(self, instance_id: str) -> None:
        proc = subprocess.Popen([sys.executable, "-c", SERVER, instance_id], stdout=subprocess.PIPE,
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

    def resolve(self, targets: list[tuple[str, int]]) -> dict[str, tuple[str, int]]:
        with self._lock:
            return {tid: ("127.0.0.1", self.ports[tid]) for tid, _ in targets if tid in self.ports}

    def close(self) -> None:
        for instance_id in list(self._procs):
            self.stop(instance_id)
