"""``merge_slashes off`` in the configuration: the state renders maps that test every raw path (real NGINX, real app).

NGINX merges ``//`` in ``$uri`` by default, so a raw path equal to ``$uri`` holds none and the maps take it as it is
(``render._SAME_TAIL``). With ``merge_slashes off`` both may hold ``//``: the app (Werkzeug merges slashes and
redirects) would see another path than the one NGINX decided on, so the state reads the directive and renders the
maps that test each raw path (``Inspection.merge_slashes_off``).
"""

from __future__ import annotations

import pytest

from devtools.nginx import Nginx, free_port
from devtools.site import request
from phoenix.allowlist import manage

pytestmark = pytest.mark.nginx

APP = "demo_app:app"


@pytest.mark.parametrize("merge", ["", "merge_slashes off;", "merge_slashes on;"])
def test_the_state_reads_merge_slashes(demo_app, repo, tmp_path, merge):
    port = free_port()
    (tmp_path / "conf.d").mkdir()
    ngx = Nginx(tmp_path, f"    include {tmp_path}/conf.d/app.allowlist.conf;\n"
                          f"    server {{ listen 127.0.0.1:{port}; {merge}\n"
                          f"        location / {{ include {tmp_path}/conf.d/app.allowlist.gate;\n"
                          f"            proxy_pass http://127.0.0.1:{demo_app.port}; }}\n    }}")
    ret = manage.managed(str(tmp_path / "conf.d" / "app.allowlist.conf"), app=APP, cwd=str(repo / "tests" / "apps"),
                         config=str(ngx.conf), upstream=f"127.0.0.1:{demo_app.port}")
    assert ret["result"] is True, ret["comment"]
    maps = (tmp_path / "conf.d" / "app.allowlist.conf").read_text()
    if merge != "merge_slashes off;":  # the raw path compared with $uri
        assert r" (?:\\1|(?:(?:/" in maps
    else:
        assert r"\\1" not in maps
    ngx.start(port)
    try:
        # a query keeps the fast path out: the maps decide
        assert request(port, "GET", "/files/a/b?x=1")[:2] == (200, True)
        assert request(port, "GET", "/item/5?x=1")[:2] == (200, True)
        assert request(port, "GET", "/files/a//b?x=1")[:2] == (404, False)  # merged or not, // never reaches the app
        assert request(port, "GET", "/files/a/%2e%2e/b?x=1")[:2] == (404, False)
    finally:
        ngx.stop()
