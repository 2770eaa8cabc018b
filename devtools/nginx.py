"""Run the real NGINX binary (Debian package) from a private prefix on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class PortTaken(RuntimeError):
    """Another process took one of the ports NGINX was to listen on (``Nginx.start``)."""


MAIN_CONF = """\
{user}daemon off;
master_process {master};
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log {log_level};
{main_extra}
events {{ worker_connections 1024; }}
http {{
    access_log {access_log};
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
{http}
}}
"""


class Nginx:
    """One NGINX process with its config under ``prefix``; ``http`` is the http block's body."""

    def __init__(self, prefix: Path, http: str, main_extra: str = "", master: bool = True,
                 access_log: bool = False, log_level: str = "warn") -> None:
        self.prefix = Path(prefix)
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.conf = self.prefix / "nginx.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        self.write(http, main_extra, master, access_log, log_level)

    def write(self, http: str, main_extra: str = "", master: bool = True, access_log: bool = False,
              log_level: str = "warn") -> None:
        self.conf.write_text(MAIN_CONF.format(
            user="user root;\n" if os.geteuid() == 0 else "",  # workers must read files under 0700 temp dirs
            prefix=self.prefix, http=http, main_extra=main_extra, master="on" if master else "off",
            access_log=f"{self.prefix}/access.log" if access_log else "off", log_level=log_level))

    def argv(self, *extra: str) -> list[str]:
        return [NGINX, "-p", str(self.prefix), "-c", str(self.conf), *extra]

    def test(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv("-t"), capture_output=True, text=True, check=False)

    def start(self, port: int | None = None, others: tuple[int, ...] = ()) -> "Nginx":
        """Start NGINX and wait until ``port`` (and each of ``others``) listens. With ``others``, a port another
        process took between ``free_port()`` and NGINX's bind (NGINX logs the failed bind() as it binds the rest,
        and the port answers, but not from this NGINX) raises ``PortTaken``: start again on other ports."""
        before = len(self.error_log())  # the prefix may hold an earlier run's log
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if port:
            try:
                for p in (port, *others):
                    wait_port(p)
            except TimeoutError:
                self.stop()
                raise RuntimeError(f"nginx did not start: {self.error_log()[-2000:]}")
            log = self.error_log()[before:] if others else ""
            if "bind() to 127.0.0.1:" in log:
                self.stop()
                raise PortTaken(f"a port was taken before nginx bound it: {log[-1000:]}")
        return self

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def workers(self) -> set[int]:
        """Pids of the master's worker processes alive now (old ones too, while they finish after a reload)."""
        from localcloud.instance_init import parents

        if self.proc is None:
            return set()
        return {pid for pid, parent in parents().items() if parent == self.proc.pid}

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> "Nginx":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
