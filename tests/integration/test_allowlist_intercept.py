"""intercept_errors: NGINX answers the app's 500s with its own page, so no debugger traceback leaves it.

The Werkzeug debugger answers every unhandled exception with a traceback page that embeds its SECRET
(with it, the console's commands are one request away): the ``__debugger__`` refusal is then the only
barrier left. With the switch on, the real NGINX replaces that page; the app is asked once.
"""

from __future__ import annotations

import pytest

from devtools.flaskapp import FlaskApp
from devtools.site import make_site, request
from phoenix.allowlist import manage

pytestmark = pytest.mark.nginx

APP = "boom_app:app"


@pytest.fixture(scope="module")
def app(repo):
    with FlaskApp(APP, repo / "tests" / "apps") as served:
        yield served


def _site(app, repo, root, **switches):
    site = make_site(root, app.port)
    ngx = site.nginx(gated=True)
    ret = manage.managed(str(site.maps), app=APP, cwd=str(repo / "tests" / "apps"), config=str(site.config),
                         upstream=f"127.0.0.1:{app.port}", **switches)
    assert ret["result"] is True, ret["comment"]
    ngx.start(site.port)
    return site, ngx, ret


def _calls(site) -> int:
    status, reached, body = request(site.port, "GET", "/calls")
    assert (status, reached) == (200, True)
    return int(body)


# /fail: the gate and the maps; /boom: the exact location beside the fast path's ^~ /boom/; /boom/3: its regex one
@pytest.mark.parametrize("path", ["/fail", "/boom", "/boom/3"])
def test_by_default_the_apps_traceback_with_its_secret_gets_through(app, repo, tmp_path, path):
    site, ngx, _ = _site(app, repo, tmp_path / "site")
    try:
        status, reached, body = request(site.port, "GET", path)
        assert (status, reached) == (500, True)
        assert b"Traceback" in body and b"SECRET" in body
    finally:
        ngx.stop()


@pytest.mark.parametrize("method,path", [("GET", "/fail"), ("POST", "/fail"), ("HEAD", "/fail"), ("GET", "/boom"),
                                         ("GET", "/boom/3"), ("POST", "/boom/3"), ("GET", "/boom/3?x=1")])
def test_intercept_errors_answers_the_apps_500_with_nginx_page(app, repo, tmp_path, method, path):
    site, ngx, ret = _site(app, repo, tmp_path / "site", intercept_errors=True)
    try:
        assert "NGINX answers the app's 500s" in ret["comment"]
        assert "proxy_intercept_errors on;" in site.gate.read_text()
        before = _calls(site)
        status, reached, body = request(site.port, method, path)
        assert (status, reached) == (500, False), body[:300]
        assert b"SECRET" not in body and b"Traceback" not in body
        if method != "HEAD":
            assert b"<center>nginx" in body and b"500 Internal Server Error" in body
        assert _calls(site) == before + 1  # the app was asked once: the error page did not ask it again
        # everything else is as before: answers, refusals, the app's own 404
        assert request(site.port, "GET", "/ok") == (200, True, b"ok")
        assert request(site.port, "GET", "/console")[:2] == (404, False)
        assert request(site.port, "GET", "/boom/x")[:2] == (404, False)
    finally:
        ngx.stop()
    assert "[alert]" not in ngx.error_log() and "cycle" not in ngx.error_log()
