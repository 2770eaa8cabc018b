"""A real site for tests and the demo: NGINX on 127.0.0.1 in front of a Flask app, with the allowlist."""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from pathlib import Path

from devtools.nginx import Nginx, free_port

SERVER = """\
    include {maps};
    server {{
        listen 127.0.0.1:{port};
        server_name site.test;
        location / {{
{gate}            proxy_pass http://127.0.0.1:{app_port};
        }}
        location /assets/ {{ alias {assets}/; }}
        location = /healthz {{ return 200 "nginx ok\\n"; }}
    }}
"""


@dataclass
class Site:
    root: Path
    port: int
    app_port: int
    maps: Path
    gate: Path

    @property
    def config(self) -> Path:
        return self.root / "nginx.conf"

    def http_block(self, gated: bool = True) -> str:
        assets = self.root / "assets"
        assets.mkdir(exist_ok=True)
        (assets / "logo.txt").write_text("logo\n")
        gate = f"            include {self.gate};\n" if gated else ""
        return SERVER.format(maps=self.maps, port=self.port, app_port=self.app_port, gate=gate, assets=assets)

    def nginx(self, gated: bool = True, main_extra: str = "") -> Nginx:
        return Nginx(self.root, self.http_block(gated), main_extra=main_extra)


def make_site(root: Path, app_port: int) -> Site:
    root.mkdir(parents=True, exist_ok=True)
    (root / "conf.d").mkdir(exist_ok=True)
    return Site(root=root, port=free_port(), app_port=app_port, maps=root / "conf.d" / "app.allowlist.conf",
                gate=root / "conf.d" / "app.allowlist.gate")


def request(port: int, method: str, path: str, version: str = "HTTP/1.1") -> tuple[int, bool, bytes]:
    """(status, reached the app, body) for one raw request line sent to 127.0.0.1:port (``version``: its protocol,
    HTTP/1.1 or HTTP/1.0)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    if version == "HTTP/1.0":  # http.client speaks 1.1; its request line says what these say
        conn._http_vsn, conn._http_vsn_str = 10, "HTTP/1.0"
    elif version != "HTTP/1.1":
        raise ValueError(f"version {version!r}: HTTP/1.1 or HTTP/1.0")
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", "site.test")
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, resp.getheader("X-Reached-App") == "1", body
    finally:
        conn.close()
