"""A git smart-HTTP server on 127.0.0.1 that requires a token: the provisioning secret of the tests.

It serves the bare repositories under ``root`` through ``git http-backend`` (CGI) and answers 401 to any
request without ``Authorization: Bearer <token>`` (or Basic with the token as password). It never logs
headers; ``requests`` records ``(method, path, status)`` only, so a test can see that a fetch without the
token was refused. Used by tests and the demo only::

    with GitServer(root, token) as server:
        server.url("app.git")     # http://127.0.0.1:PORT/app.git
"""

from __future__ import annotations

import base64
import hmac
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - no access log (headers stay private)
        return

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        token = self.server.token.encode()
        if header.startswith("Bearer "):
            return hmac.compare_digest(header[7:].encode(), token)
        if header.startswith("Basic "):
            try:
                _, _, password = base64.b64decode(header[6:]).partition(b":")
            except ValueError:
                return False
            return hmac.compare_digest(password, token)
        return False

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        if not self._authorized():
            self.server.note(self.command, path, 401)
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Bearer realm="phoenix-test-git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": "deploy",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=120)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.server.note(self.command, path, status)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, token: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root, self.token = root, token
        self.requests: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()

    def note(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))


class GitServer:
    """Serve the bare repositories under ``root`` on 127.0.0.1 behind ``token``."""

    def __init__(self, root: Path | str, token: str) -> None:
        self.root, self.token = Path(root), token
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "GitServer":
        self._server = _Server(self.root, self.token)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="gitserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        return list(self._server.requests) if self._server else []

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> "GitServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_repository(root: Path, name: str, files: dict[str, str], message: str = "initial") -> tuple[Path, str]:
    """A bare repository ``root/name`` with one commit of ``files``; returns (bare path, SHA)."""
    work = root / f"{name}.work"
    bare = root / name
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.invalid", GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True, env=env)
    sha = commit_files(work, files, message, env)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True, env=env)
    return bare, sha


def commit_files(work: Path, files: dict[str, str], message: str, env: dict[str, str] | None = None) -> str:
    """Commit ``files`` in the work tree ``work``; returns the new SHA."""
    env = env or dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid",
                      GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid", GIT_CONFIG_NOSYSTEM="1",
                      GIT_CONFIG_GLOBAL=os.devnull)
    for rel, text in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "commit", "-q", "-m", message], check=True, env=env)
    return subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], check=True, env=env, capture_output=True,
                          text=True).stdout.strip()


def push(work: Path, bare: Path) -> None:
    """Push the work tree's main branch to ``bare`` (a plain path, no server)."""
    subprocess.run(["git", "-C", str(work), "push", "-q", str(bare), "main"], check=True,
                   env=dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull))
