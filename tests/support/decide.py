"""One real NGINX that answers with the allowlist's decisions: the gate alone, and the gate with its fast path.

The gate alone reads the request-line map (``linemap``: what a gate without the fast path reads), and the map chain
alone answers beside it (``maps``): every request must get the same answer from both.

The fast path is rendered twice, as for a configuration without and with ``pcre_jit on`` (``FastPath.jit``:
with JIT more rules share a location, static ones too); this NGINX runs with JIT, and every request must get
the same status and body from both. The first is also that of a configuration in which no server speaks HTTP/2
(``FastPath.http1``: exact locations compare the request line with its HTTP/1.1 form written out), the second
that of one in which a server does (the protocol is read from ``$server_protocol``).

Both servers pass to an upstream (another server of the same NGINX), as a real app location does:
NGINX treats ``*_pass`` locations specially (a prefix ending in "/" answers the path without it with
its own 301). The fast path passes to an upstream that answers "fast", so a test can see it was used.
"""

from __future__ import annotations

from pathlib import Path

from devtools.nginx import Nginx, free_port
from devtools.site import request
from phoenix.allowlist.fastpath import FastPath
from phoenix.allowlist.render import Rendered, render
from phoenix.allowlist.rules import Compiled


class Decider:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports = {"gate": free_port(), "maps": free_port(), "fast": free_port(), "jit": free_port()}
        self.app_port, self.fast_app_port = free_port(), free_port()
        self.fast_hits = 0

    def fast(self, jit: bool = False, http1: bool = False) -> FastPath:
        """The fast path as the real app location gets it: a proxy_pass."""
        return FastPath(parent="/", handler=f"proxy_pass http://127.0.0.1:{self.fast_app_port};", jit=jit,
                        http1=http1)

    def render(self, compiled: Compiled, name: str, **kwargs) -> dict[str, Rendered]:
        """The gate alone (with the request-line map), the map chain alone, with the fast path, and with the fast
        path of a ``pcre_jit on`` configuration (one maps file for all: with the request-line map)."""
        kwargs.setdefault("merge_slashes", True)  # as the state renders for NGINX's default (merge_slashes on)
        return {"gate": render(compiled, name, **kwargs),
                "maps": render(compiled, name, line=False, **kwargs),
                "fast": render(compiled, name, fast=self.fast(http1=True), line=True, **kwargs),
                # the nested locations of a JIT configuration (whose rules fit one regex get the gate's request-line
                # test there instead: the gate alone tests it, on this NGINX with pcre_jit on)
                "jit": render(compiled, name, fast=self.fast(jit=True), line=False, **kwargs)}

    def answers(self, rendered: dict[str, Rendered], requests: list[tuple[str, str]],
                location_extra: str = "", version: str = "HTTP/1.1",
                server_extra: str = "") -> dict[str, list[tuple[int, bytes]]]:
        """(status, body) per request and server (``rendered``: what :meth:`render` makes), each request sent with
        the protocol ``version``, ``server_extra`` in each deciding server; fails on any [alert] or [emerg] in
        NGINX's error log."""
        root = self.root
        (root / "maps.conf").write_text(rendered["gate"].maps)
        (root / "gate.conf").write_text(rendered["gate"].gate)
        (root / "chain.conf").write_text(rendered["maps"].gate)
        (root / "fast.conf").write_text(rendered["fast"].gate)
        (root / "jit.conf").write_text(rendered["jit"].gate)
        (root / "error.log").write_text("")
        app = f"proxy_pass http://127.0.0.1:{self.app_port};"
        http = (f"include {root}/maps.conf;\n"
                f"server {{ listen 127.0.0.1:{self.ports['gate']}; {server_extra}\n"
                f"  location / {{ include {root}/gate.conf; {location_extra} {app} }}\n}}\n"
                f"server {{ listen 127.0.0.1:{self.ports['maps']}; {server_extra}\n"
                f"  location / {{ include {root}/chain.conf; {location_extra} {app} }}\n}}\n"
                f"server {{ listen 127.0.0.1:{self.ports['fast']}; {server_extra}\n"
                f"  location / {{ include {root}/fast.conf; {location_extra} {app} }}\n}}\n"
                f"server {{ listen 127.0.0.1:{self.ports['jit']}; {server_extra}\n"
                f"  location / {{ include {root}/jit.conf; {location_extra} {app} }}\n}}\n"
                f"server {{ listen 127.0.0.1:{self.app_port}; return 200 \"app\\n\"; }}\n"
                f"server {{ listen 127.0.0.1:{self.fast_app_port}; return 200 \"fast\\n\"; }}\n")
        ngx = Nginx(root, http, main_extra="pcre_jit on;", master=False)
        test = ngx.test()
        assert test.returncode == 0, test.stderr
        ngx.start(self.ports["gate"])
        try:
            out: dict[str, list[tuple[int, bytes]]] = {kind: [] for kind in self.ports}
            for method, path in requests:
                for kind, port in self.ports.items():
                    status, _, body = request(port, method, path, version)
                    out[kind].append((status, body))
                    if kind == "fast" and body == b"fast\n":
                        self.fast_hits += 1
        finally:
            ngx.stop()
        log = ngx.error_log()
        assert "[alert]" not in log and "[emerg]" not in log and "[crit]" not in log, log[-2000:]
        # the fast path of a JIT configuration (more rules per location, static ones in its regexes) answers alike;
        # where a request falls back to the maps in one of the fast path's locations, that location's handler answers
        # ("fast"), and its locations differ: so "fast" and "app" are the same answer here
        same = [tuple((s, b"app\n" if b == b"fast\n" else b) for s, b in out[k]) for k in ("fast", "jit")]
        assert same[0] == same[1], [(r, f, j) for r, f, j in zip(requests, out["fast"], out["jit"]) if f != j]
        # the request-line map only ever accepts what the chain accepts, and leaves the rest to it
        chain = out.pop("maps")
        assert out["gate"] == chain, [(r, g, m) for r, g, m in zip(requests, out["gate"], chain) if g != m]
        return out

    def decides(self, rendered: dict[str, Rendered], requests: list[tuple[str, str]],
                version: str = "HTTP/1.1", server_extra: str = "") -> dict[str, list[bool]]:
        """Allowed (200) or refused (404) per request and server; any other status fails."""
        out = {}
        for kind, answers in self.answers(rendered, requests, version=version, server_extra=server_extra).items():
            for status, body in answers:
                assert status in (200, 404), (kind, status, body)
            out[kind] = [status == 200 for status, _ in answers]
        return out
