"""``limit_except`` in the app's location: NGINX skips the gate for the methods it restricts (real NGINX, real app).

For those methods NGINX serves the request with the ``limit_except`` block's own configuration, which
inherits the location's ``proxy_pass`` and access rules but none of its rewrite-module directives, so
the gate's ``if`` is never run. ``limit_except GET { allow 127.0.0.1; deny all; }`` would let a POST to
the debugger's console through. The state refuses such a block; ``deny all;`` alone is accepted.
"""

from __future__ import annotations

import pytest

from devtools.nginx import Nginx, free_port
from devtools.site import request
from phoenix.allowlist import manage

pytestmark = pytest.mark.nginx

APP = "demo_app:app"


def _site(root, app_port: int, limit: str, satisfy: str = "") -> tuple[Nginx, int]:
    port = free_port()
    (root / "conf.d").mkdir(parents=True, exist_ok=True)
    http = (f"    include {root}/conf.d/app.allowlist.conf;\n"
            f"    server {{ listen 127.0.0.1:{port}; {satisfy}\n"
            f"        location / {{ include {root}/conf.d/app.allowlist.gate;\n"
            f"            limit_except GET {{ {limit} }}\n"
            f"            proxy_pass http://127.0.0.1:{app_port}; }}\n    }}")
    return Nginx(root, http), port


def _managed(ngx: Nginx, root, repo, demo_app, **kwargs):
    return manage.managed(str(root / "conf.d" / "app.allowlist.conf"), app=APP, cwd=str(repo / "tests" / "apps"),
                          config=str(ngx.conf), upstream=f"127.0.0.1:{demo_app.port}", **kwargs)


@pytest.mark.parametrize("limit, satisfy", [("allow 127.0.0.1; deny all;", ""),
                                            ("auth_basic off;", ""),
                                            ("deny all;", "satisfy any; allow 127.0.0.0/8;")])
def test_a_limit_except_that_lets_methods_through_is_refused(demo_app, repo, tmp_path, limit, satisfy):
    ngx, port = _site(tmp_path, demo_app.port, limit, satisfy)
    ret = _managed(ngx, tmp_path, repo, demo_app)
    assert ret["result"] is False
    assert "limit_except GET" in ret["comment"] and "deny all;' alone" in ret["comment"], ret["comment"]
    assert not (tmp_path / "conf.d" / "app.allowlist.gate").exists()
    test = _managed(ngx, tmp_path, repo, demo_app, test=True)  # test mode warns with the same reason
    assert test["result"] is None and "limit_except GET" in test["comment"], test["comment"]


def test_what_the_refusal_prevents(demo_app, repo, tmp_path):
    """The files written anyway (test mode's plan, installed by hand): a POST reaches the console unchecked."""
    ngx, port = _site(tmp_path, demo_app.port, "allow 127.0.0.1; deny all;")
    p = manage.plan(str(tmp_path / "conf.d" / "app.allowlist.conf"), app=APP, cwd=str(repo / "tests" / "apps"),
                    config=str(ngx.conf), upstream=f"127.0.0.1:{demo_app.port}", strict=False)
    assert p.problems and "limit_except" in p.problems[0]
    for path, text in p.files.items():
        with open(path, "w") as fh:
            fh.write(text)
    ngx.start(port)
    try:
        assert request(port, "GET", "/console")[:2] == (404, False)
        assert request(port, "POST", "/console")[1] is True  # NGINX never asked the gate
    finally:
        ngx.stop()


def test_deny_all_alone_is_accepted_and_nothing_unknown_reaches_the_app(demo_app, repo, tmp_path):
    ngx, port = _site(tmp_path, demo_app.port, "deny all;")
    ret = _managed(ngx, tmp_path, repo, demo_app)
    assert ret["result"] is True, ret["comment"]
    ngx.start(port)
    try:
        assert request(port, "GET", "/login")[:2] == (200, True)
        assert request(port, "GET", "/console")[:2] == (404, False)
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            for path in ("/console", "/nope", "/login", "/item/5"):
                status, reached, _ = request(port, method, path)
                assert not reached and status in (403, 404), (method, path, status)
    finally:
        ngx.stop()
