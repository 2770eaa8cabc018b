"""The fast path on each common layout answers exactly as the gate alone, through the real NGINX binary.

Each layout is a server shape of issue 13: a regex location beside the app's, locations nested in the
app's, ``if`` blocks and ``set`` around the gate, ``limit_except``, ``proxy_pass`` with a URI part (the
upstreams echo the URI they get), and several locations reaching the app: through one gate file, where the
gate alone decides, and each through its own copy of the gate, with a fast path each. The fast path is chosen by
``fastpath.choose`` on the layout's real config (crossplane), so what is tested is what the state
would render. One NGINX (with ``pcre_jit on``) runs each layout four times: the gate alone, the gate with
its fast path, and as rendered for a ``pcre_jit on`` configuration: with the gate's request-line test where the
rules fit one regex (``render_gate``), and with the nested locations (more rules per shared location, static ones
in their regexes). Every request must get the same status and body from all four (the fast path's handler answers
"fast", the user's "app"), and the gate alone must agree with Werkzeug wherever the request reached the app.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.nginx import Nginx, PortTaken, free_port
from devtools.site import request
from phoenix.allowlist.fastpath import FastPath, choose_each
from phoenix.allowlist.nginxconf import inspect, location_gate
from phoenix.allowlist.probe import sample_path
from phoenix.allowlist.render import render, render_gate
from tests.support.routing import METHODS, build, compiled_for, paths, rule_sets, werkzeug_allows

pytestmark = pytest.mark.nginx

#: ``{g}``: the gate's include, ``{h}``: the app's handler. The regexes and prefixes are chosen to hit the
#: generated rules (static segments a, b, ab, x1, item, A, ...).
LAYOUTS = {
    "fits": "location / {{ {g} {h} }}",
    "regex": 'location ~* "b/?$" {{ return 200 "regex\\n"; }}\n location ~ ^/x1 {{ return 200 "x1\\n"; }}\n'
             "location / {{ {g} {h} }}",
    "nested": 'location / {{ {g} {h}\n location /a {{ return 200 "nested a\\n"; }}\n'
              ' location = /item {{ return 200 "exact\\n"; }}\n location ~ 1$ {{ return 200 "one\\n"; }} }}',
    "if": "location / {{ if ($request_method = DELETE) {{ return 405; }} set $x 1; {g}\n"
          " if ($request_method = PUT) {{ return 418; }} {h} }}",
    "limit_except": "location / {{ {g} limit_except GET HEAD PUT {{ deny all; }} {h} }}",
    # no fast path: the gate alone must still agree with Werkzeug there
    "uri": "location / {{ {g} {h} }}",
    "multi": "location / {{ {g} {h} }}\n location /a {{ {g} {h} }}",
    # several locations, each with its own copy of the gate (``{c}``: ``<gate stem>.a.gate``): one fast path each
    "multi_copies": "location / {{ {g} {h} }}\n location /a {{ {c} {h} }}",
}
#: the app's handler where the layout needs another one than PASS for ``choose`` (in the served config every
#: handler answers "app" or "fast")
HANDLERS = {"uri": "proxy_pass http://127.0.0.1:9/;"}
NO_FAST_PATH = ("multi",)
PASS = "proxy_pass http://127.0.0.1:9;"
APP_ANSWER = 'return 200 "app\\n";'
FAST_ANSWER = 'return 200 "fast\\n";'


def _server(layout: str, port: int, gate: Path, echo: dict[str, int], copy: Path | None = None) -> str:
    # uri: the user's proxy_pass with a URI part and the fast path's mapped copies pass to servers that echo the
    # URI they got, so the test sees that each nested location sends what the user's location would
    handler = f"proxy_pass http://127.0.0.1:{echo['app']}/;" if layout == "uri" else APP_ANSWER
    body = LAYOUTS[layout].format(g=f"include {gate};", c=f"include {copy or gate};", h=handler)
    return f"server {{ listen 127.0.0.1:{port};\n{body}\n}}"


def _as_app(body: bytes) -> bytes:
    """The fast path's handlers answer "fast ..." where the user's answer "app ...".""" 
    return b"app" + body[len(b"fast"):] if body.startswith(b"fast") else body


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """Each layout's fast path, chosen by ``choose`` on its real config, serving with "fast"."""
    root = tmp_path_factory.mktemp("layouts")
    out: dict[str, FastPath | None] = {}
    copies: dict[str, FastPath] = {}  # the fast path of the gate's per-location copy, by layout
    for layout, shape in LAYOUTS.items():
        maps, gate = root / f"{layout}.conf", root / f"{layout}.gate"
        maps.write_text("")
        gate.write_text("")
        conf = root / f"{layout}.nginx.conf"
        copy = location_gate(str(gate), "a")
        conf.write_text(f"events {{}}\nhttp {{ include {maps};\nserver {{ listen 127.0.0.1:9;\n"
                        f"{shape.format(g=f'include {gate};', c=f'include {copy};', h=HANDLERS.get(layout, PASS))}"
                        "\n} }\n")
        chosen = choose_each(inspect(str(conf), str(maps), str(gate)))
        fast, why = chosen[str(gate)]
        if layout in NO_FAST_PATH:
            assert fast is None and "2 locations include" in why, (layout, why)
            out[layout] = None
            continue
        assert fast is not None, (layout, why)
        # uri: the handler (and its target) is set per run, to the echo server's port (_answers)
        out[layout] = fast if fast.uri_target else dataclasses.replace(fast, handler=FAST_ANSWER)
        if layout == "multi_copies":
            copied, why = chosen[copy]
            assert copied is not None and copied.parent == "/a" and fast.taken == ("/a",), (why, fast)
            copies[layout] = dataclasses.replace(copied, handler=FAST_ANSWER)
    assert out["uri"] is not None and out["uri"].uri_target == "http://127.0.0.1:9/"
    return {"root": tmp_path_factory.mktemp("layout-nginx"), "fast": out, "copies": copies}


def _ports(n: int) -> list[int]:
    """``n`` distinct free ports (free_port may give a port twice: it is free again once closed)."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _answers(state, compiled, requests):
    """Each layout's answers (see the module docstring), on fresh ports where another process took one."""
    for attempt in range(3):
        try:
            return _answers_once(state, compiled, requests)
        except PortTaken:
            if attempt == 2:
                raise


def _answers_once(state, compiled, requests):
    root = state["root"]
    # the maps file with the request-line map (which multi's gate without the fast path reads), and the gate of the
    # map chain alone: what every layout must answer like
    alone = render(compiled, "prop")  # its request-line test is the JIT configuration's copies' too
    (root / "maps.conf").write_text(alone.maps)
    (root / "gate.conf").write_text(render_gate(compiled, "prop")[0])
    servers, ports = [], {}
    free = _ports(4 * len(state["fast"]) + 2)
    echo = {"app": free.pop(), "fast": free.pop()}
    for layout, fast in state["fast"].items():
        if fast is not None and fast.uri_target:
            fast = dataclasses.replace(fast, handler=f"proxy_pass http://127.0.0.1:{echo['fast']}/;",
                                       uri_target=f"http://127.0.0.1:{echo['fast']}/")
        ports[layout] = (free.pop(), free.pop(), free.pop(), free.pop())
        servers.append(_server(layout, ports[layout][0], root / "gate.conf", echo))
        # the fast path as rendered for a configuration without and with pcre_jit: with it, rules that fit one regex
        # get the gate's request-line test instead of nested locations (render_gate), and "jitn" is the nested
        # locations of a JIT configuration (more rules per location, static ones too)
        for kind, jit, port in (("fast", False, ports[layout][1]), ("jit", True, ports[layout][2]),
                                ("jitn", True, ports[layout][3])):
            (root / f"{layout}.{kind}").write_text(
                render(compiled, "prop", fast=fast and dataclasses.replace(fast, jit=jit),
                       line=False if kind == "jitn" else None).gate)
            copy = None
            if layout in state["copies"]:  # the other location's own copy of the gate, with its fast path
                copy = root / f"{layout}.{kind}.copy"
                copy.write_text(render_gate(compiled, "prop", fast=dataclasses.replace(state["copies"][layout], jit=jit),
                                            copy_for="/a", line=alone.line if kind == "jit" else None)[0])
            servers.append(_server(layout, port, root / f"{layout}.{kind}", echo, copy))
    servers += [f'server {{ listen 127.0.0.1:{port}; return 200 "{kind} $request_uri\\n"; }}'
                for kind, port in echo.items()]
    ngx = Nginx(root, f"include {root}/maps.conf;\n" + "\n".join(servers), main_extra="pcre_jit on;", master=False)
    test = ngx.test()
    assert test.returncode == 0, test.stderr
    ngx.start(ports["fits"][0], others=(*echo.values(), *(p for ps in ports.values() for p in ps)))
    try:
        out = {}
        for layout, (gate_port, fast_port, jit_port, nested_port) in ports.items():
            out[layout] = []
            for m, p in requests:
                fast = request(fast_port, m, p)[::2]
                for port in (jit_port, nested_port):  # the JIT configuration's gates answer alike
                    jit = request(port, m, p)[::2]
                    assert (jit[0], _as_app(jit[1])) == (fast[0], _as_app(fast[1])), (layout, m, p, fast, jit, port)
                out[layout].append((request(gate_port, m, p)[::2], fast))
        return out
    finally:
        ngx.stop()


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(rules=rule_sets(), probes=st.lists(paths(), min_size=4, max_size=10),
       methods=st.lists(st.sampled_from(METHODS), min_size=1, max_size=2, unique=True))
def test_each_layout_answers_like_the_gate_alone(layouts, rules, probes, methods):
    url_map = build(rules)
    compiled = compiled_for(url_map)
    probes = probes + [p for p in (sample_path(compiled, pat) for pat in compiled.patterns) if p]
    requests = [(m, urllib.parse.quote(p, safe="/-._~!$&'()*+,;=:@")) for m in methods for p in probes]
    answers = _answers(layouts, compiled, requests)
    for layout, pairs in answers.items():
        for (method, path), (gate, fast) in zip(requests, pairs):
            # the fast path's locations (and their fallbacks) answer "fast" where the user's location said "app"
            assert (fast[0], _as_app(fast[1])) == gate, (layout, rules, method, path, gate, fast)
            if gate[0] == 200 and gate[1].startswith(b"app"):
                assert werkzeug_allows(url_map, method, urllib.parse.unquote(path)), (layout, rules, method, path)
            if gate[0] == 404:
                assert not werkzeug_allows(url_map, method, urllib.parse.unquote(path)), (layout, rules, method, path)


def test_the_fast_path_answers_on_each_layout(layouts):
    """Fixed rules: on every layout the fast path really answers (its own body) where it may."""
    url_map = build([("/users/<int:id>", ("GET",), True), ("/ab/<int:id>", None, True), ("/login", ("GET",), True),
                     ("/x1/<int:id>", None, True)])
    compiled = compiled_for(url_map)
    requests = [("GET", "/users/5"), ("GET", "/login"), ("GET", "/users/5?x=1"), ("POST", "/users/5"),
                ("GET", "/ab/5"), ("GET", "/x1/5"), ("GET", "/users/51"), ("DELETE", "/users/5"), ("PUT", "/login"), ("PUT", "/ab/5"),
                ("GET", "/users/b")]
    answers = _answers(layouts, compiled, requests)
    for layout, pairs in answers.items():
        if layout in NO_FAST_PATH:
            continue
        fast = [f for _, f in pairs]
        assert fast[0][0] == 200 and fast[0][1].startswith(b"fast") and fast[1][0] == 200 \
            and fast[1][1].startswith(b"fast"), (layout, fast)
        assert fast[2][0] == 200, (layout, fast)  # a query string asks the maps
        assert fast[3][0] in (403, 404), (layout, fast)
    # proxy_pass with a URI part: the fast path's copies send the upstream the URI the user's location sends
    # several locations, each with its own copy of the gate: /ab/5 reaches location /a, whose copy answers it
    assert answers["multi_copies"][4][1] == (200, b"fast\n"), answers["multi_copies"][4]
    assert answers["uri"][0] == ((200, b"app /users/5\n"), (200, b"fast /users/5\n"))
    assert answers["uri"][1] == ((200, b"app /login\n"), (200, b"fast /login\n"))
    # where NGINX chose the user's own location before, it still does
    assert answers["nested"][4][1] == (200, b"nested a\n") and answers["nested"][6][1] == (200, b"one\n")
    assert answers["regex"][10][1] == (200, b"regex\n") and answers["regex"][5][1] == (200, b"x1\n")
    assert answers["if"][7][1][0] == 405 and answers["if"][8][1][0] == 404 and answers["if"][9][1][0] == 418
    assert answers["limit_except"][3][1][0] == 403 and answers["limit_except"][8][1][0] == 404
