"""Several locations through one gate file: the state renders the request-line map for it (real NGINX, real app).

One gate file included in two locations can hold no fast path (``fastpath.choose_each``); its gate reads the
request-line test (``linemap``), which takes the commonest allowed requests with one regex on ``$request`` and asks
the map chain for the rest. With a copy of the gate per location each has its fast path and no gate reads the map,
so the state does not write it.
"""

from __future__ import annotations

import pytest

from devtools.nginx import Nginx, free_port
from devtools.site import request
from phoenix.allowlist import manage
from phoenix.allowlist.nginxconf import location_gate

pytestmark = pytest.mark.nginx

APP = "demo_app:app"
#: (method, target) -> (status, reached the app): the app's routes through both locations, and what the allowlist refuses
EXPECTED = {
    ("GET", "/item/5"): (200, True), ("HEAD", "/item/5"): (200, True), ("GET", "/item/5?x=1"): (200, True),
    ("GET", "/files/a/b.txt"): (200, True), ("GET", "/files/a/b.txt?v=2"): (200, True), ("POST", "/login"): (200, True),
    ("GET", "/about/"): (200, True), ("GET", "/alice"): (200, True), ("GET", "/item/%35"): (200, True),
    ("GET", "/console"): (404, False), ("GET", "/%63onsole"): (404, False), ("GET", "//console"): (404, False),
    ("GET", "/item/5?__debugger__=yes&cmd=resource&f=style.css"): (404, False),
    ("GET", "/files/a/b.txt?%5f_debugger__=yes"): (404, False), ("GET", "/item/x"): (404, False),
    ("POST", "/item/5"): (404, False), ("GET", "/files/a/%2e%2e/b"): (404, False), ("GET", "/files/a//b"): (404, False),
}


def _answers_then_second_run(ngx: Nginx, port: int, conf_d, **kwargs) -> None:
    """The app's routes through ``ngx`` answer as ``EXPECTED``, and the state's second run changes nothing."""
    ngx.start(port)
    try:
        got = {(m, t): request(port, m, t)[:2] for m, t in EXPECTED}
    finally:
        ngx.stop()
    assert got == EXPECTED
    again = manage.managed(str(conf_d / "app.allowlist.conf"), **kwargs)
    assert again["result"] is True and again["changes"] == {}, again


@pytest.mark.parametrize("copies", [False, True], ids=["one gate file", "a copy per location"])
def test_several_locations_through_one_gate_file_read_the_request_line_map(demo_app, repo, tmp_path, copies):
    port = free_port()
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    gate = conf_d / "app.allowlist.gate"
    second = location_gate(str(gate), "files") if copies else str(gate)
    app = f"proxy_pass http://127.0.0.1:{demo_app.port};"
    ngx = Nginx(tmp_path, f"    include {conf_d}/app.allowlist.conf;\n"
                          f"    server {{ listen 127.0.0.1:{port};\n"
                          f"        location / {{ include {gate}; {app} }}\n"
                          f"        location /files/ {{ include {second}; {app} }}\n    }}")
    kwargs = dict(app=APP, cwd=str(repo / "tests" / "apps"), config=str(ngx.conf), upstream=f"127.0.0.1:{demo_app.port}")
    ret = manage.managed(str(conf_d / "app.allowlist.conf"), **kwargs)
    assert ret["result"] is True, ret["comment"]
    maps, gates = (conf_d / "app.allowlist.conf").read_text(), [gate.read_text(), open(second).read()]
    if copies:  # a fast path in each location, no gate without: no request-line test
        assert all("\nlocation " in g and "# request-line test" not in g for g in gates)
        assert "fast path:" in ret["comment"] and "no fast path" not in ret["comment"]
    else:
        assert 'set $phoenix_app_fast "";\nif ($request !~ "^' in gates[0] and "# request-line test" in gates[0]
        assert "if ($phoenix_app_fast) { return 404; }" in gates[0] and 'map "$phoenix_app_allow" $phoenix_app_deny' in maps
        assert "\nlocation" not in gates[0] and "2 locations include app.allowlist.gate" in ret["comment"]
    _answers_then_second_run(ngx, port, conf_d, **kwargs)


def test_with_pcre_jit_one_location_gets_the_request_line_test_instead_of_nested_locations(demo_app, repo, tmp_path):
    """With ``pcre_jit on`` in the configuration and rules that fit one regex, the state writes the request-line test
    into the gate and no nested locations (``render_gate``): real NGINX answers the app's routes and refuses the rest
    as the map chain does, and the second run changes nothing."""
    port = free_port()
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    gate = conf_d / "app.allowlist.gate"
    app = f"proxy_pass http://127.0.0.1:{demo_app.port};"
    ngx = Nginx(tmp_path, f"    include {conf_d}/app.allowlist.conf;\n"
                          f"    server {{ listen 127.0.0.1:{port};\n"
                          f"        location / {{ include {gate}; {app} }}\n    }}", main_extra="pcre_jit on;")
    kwargs = dict(app=APP, cwd=str(repo / "tests" / "apps"), config=str(ngx.conf), upstream=f"127.0.0.1:{demo_app.port}")
    ret = manage.managed(str(conf_d / "app.allowlist.conf"), **kwargs)
    assert ret["result"] is True, ret["comment"]
    assert "request-line test:" in ret["comment"] and "pcre_jit on: cheaper than nested locations" in ret["comment"]
    text = gate.read_text()
    assert 'if ($request !~ "^' in text and "\nlocation" not in text
    _answers_then_second_run(ngx, port, conf_d, **kwargs)
