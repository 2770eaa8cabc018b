"""When the fast path is used, and what it renders (crossplane on real config files; no NGINX run)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.routing import Map, Rule

from phoenix.allowlist import extract_routes
from phoenix.allowlist.errors import ConfigError
from phoenix.allowlist.fastpath import FastPath, choose, choose_each, factored, share
from phoenix.allowlist.nginxconf import inspect
from phoenix.allowlist.render import render
from phoenix.allowlist.rules import compile_routes
from tests.support.routing import compiled_for

APP = "proxy_pass http://127.0.0.1:5000;"


def _inspect(tmp_path: Path, server: str, location: str = "/", body: str = APP):
    maps, gate = tmp_path / "app.conf", tmp_path / "app.gate"
    maps.write_text("")
    gate.write_text("")
    block = server.format(gate=f"include {gate};", location=location, body=body)
    config = tmp_path / "nginx.conf"
    config.write_text(f"events {{}}\nhttp {{\n include {maps};\n server {{\n  listen 127.0.0.1:8080;\n{block}\n }}\n}}\n")
    return inspect(str(config), str(maps), str(gate))


def test_a_plain_proxy_location_gets_the_fast_path(tmp_path):
    fast, why = choose(_inspect(tmp_path, "location {location} {{ {gate} proxy_set_header X-A b; {body} }}"))
    assert why == ""
    assert fast == FastPath(parent="/", handler="proxy_pass http://127.0.0.1:5000;", http1=True)  # no HTTP/2 server


@pytest.mark.parametrize("server,body,reason", [
    ("location {location} {{ {gate} {body} }}\n location /api/ {{ {gate} {body} }}", APP, "2 locations"),
    ("{gate}\n location {location} {{ {body} }}", APP, "does not include the gate itself"),
    ("location {location} {{ {gate} rewrite ^/a /b; {body} }}", APP, "uses rewrite"),
    ("location {location} {{ {gate} if ($x) {{ rewrite ^/a /b; }} {body} }}", APP, "uses rewrite"),
    ("location {location} {{ {gate} try_files $uri @x; {body} }}", APP, "uses try_files"),
    ("location {location} {{ {gate} if ($x) {{ {body} }} }}", APP, "outside any if"),
    ("location {location} {{ {gate} set $a $1; {body} }}", APP, "$1..$9"),
    ('location {location} {{ {gate} set $a "x\\\\ty"; {body} }}', APP, "backslashes"),
    ("location {location} {{ {gate} {body} }}\n location ~ (a)\\1 {{ return 404; }}", APP, "back-references"),
    ("location {location} {{ {gate} {body} }}\n location ~ (?<n>a) {{ return 404; }}", APP, "back-references"),
    ("location = /x {{ {gate} {body} }}", APP, "not a prefix location"),
])
def test_the_fast_path_is_off_where_copying_the_handler_would_change_nginx(tmp_path, server, body, reason):
    fast, why = choose(_inspect(tmp_path, server, body=body))
    assert fast is None
    assert reason in why


def test_a_proxy_pass_with_a_uri_part_maps_each_nested_location_as_nginx_maps_the_parent(tmp_path):
    """``location /a/ { proxy_pass http://app/x/; }`` sends /a/b/c as /x/b/c: a nested /a/b/ passes to /x/b/."""
    fast, why = choose(_inspect(tmp_path, "location {location} {{ {gate} {body} }}", location="/a/",
                                body="proxy_pass http://127.0.0.1:5000/x/;"))
    assert why == "" and fast.uri_target == "http://127.0.0.1:5000/x/"
    assert fast.handler_for("/a/b/") == "proxy_pass http://127.0.0.1:5000/x/b/;"
    url_map = Map([Rule("/a/users/<int:i>", endpoint="u", methods=["GET"]), Rule("/a/users/<int:i>/p", endpoint="p", methods=["POST"]),
                   Rule("/a/login", endpoint="l"), Rule("/a/\u00e9t\u00e9/<int:i>", endpoint="e"),
                   Rule("/a/caf\u00e9", endpoint="c")])
    gate = render(compiled_for(url_map), "x", fast=fast).gate
    # NGINX escapes the URI it passes when the raw target was %-encoded: a target part it would escape (here
    # non-ASCII) cannot be written into the copy, so those rules ask the maps in the user's location
    assert "\u00e9" not in gate and "%C3" not in gate
    # no regex location (none is needed): the prefix tests the request line for each rule's main method
    assert "location ~" not in gate
    assert ('location ^~ "/a/users" {\n    uninitialized_variable_warn off;\n'
            '    if ($request !~ "^(?:GET /a/users/[0-9]+|POST /a/users/[0-9]+/p) HTTP/") '
            '{ set $phoenix_x_fast $phoenix_x_deny; }\n    if ($phoenix_x_fast) { return 404; }\n') in gate
    # the prefix is named without its slash (no 301 from NGINX for /a/users): it passes to .../x/users
    assert "proxy_pass http://127.0.0.1:5000/x/users;" in gate and "proxy_pass http://127.0.0.1:5000/x/login;" in gate
    assert 'location = "/a/users"' not in gate


def test_what_nested_locations_would_lose_is_copied_around_the_gate(tmp_path):
    fast, why = choose(_inspect(tmp_path, "location {location} {{ if ($a) {{ return 403; }} set $b 1; {gate} "
                                          "limit_except GET {{ deny all; }} break; {body} }}"))
    assert why == ""
    assert fast.before == ("if ($a) {\n    return 403;\n}", "set $b 1;")
    assert fast.after == ("limit_except GET {\n    deny all;\n}", "break;")


def test_regex_and_nested_locations_shape_the_fast_path(tmp_path):
    fast, why = choose(_inspect(tmp_path, "location ~* \\.(css|js)$ {{ return 404; }}\n location {location} {{ {gate} "
                                          '{body} location /a/ {{ }} location ^~ /b {{ }} location ~ "\\\\.png$" {{ }} '
                                          "location = /c {{ }} }}"))
    assert why == ""
    assert fast.guard == (("~*", "\\.(css|js)$"), ("~", "\\.png$"))  # as NGINX reads them
    assert fast.taken == ("/a/", "/b", "/c")
    url_map = Map([Rule("/a/<int:i>", endpoint="a"), Rule("/bx/<int:i>", endpoint="b"), Rule("/d/<name>", endpoint="d"),
                   Rule("/n/<int:i>", endpoint="n"), Rule("/c", endpoint="c"), Rule("/e", endpoint="e"), Rule("/e.css", endpoint="ec")])
    gate = render(compiled_for(url_map), "x", fast=fast).gate
    assert '"/a/"' not in gate and '"/bx/"' not in gate and '"/c"' not in gate and '"/e.css"' not in gate
    assert 'location "/d" {' in gate and "location ^~" not in gate  # plain prefixes: the user's regexes come next
    assert 'location = "/e" {' in gate
    # no regex location of ours that NGINX would try before the user's: a test of the request line in the prefix
    assert "location ~" not in gate and "(?!(?s:" not in gate
    assert '"^[^ ]+ /n/[0-9]+ HTTP/"' in gate and '"^[^ ]+ /d/[^./%#? ][^/%#? ]*(?![\\\\x80-\\\\xbf]) HTTP/"' in gate


@pytest.mark.parametrize("target", ["http://backend", "http://$backend$request_uri", "http://unix:/run/app.sock"])
def test_proxy_pass_without_a_static_uri_part_is_copied(tmp_path, target):
    fast, why = choose(_inspect(tmp_path, "location {location} {{ {gate} {body} }}", body=f"proxy_pass {target};"))
    assert fast is not None, why
    assert fast.handler == f"proxy_pass {target};"


def test_the_gates_own_locations_are_not_the_users(tmp_path):
    """A second run sees the nested locations of the first in the gate file: they must not count."""
    url_map = Map([Rule("/users/<int:id>", endpoint="u")])
    first = _inspect(tmp_path, "location {location} {{ {gate} {body} }}")
    fast, _ = choose(first)
    (tmp_path / "app.gate").write_text(render(compiled_for(url_map), str(tmp_path / "app.conf"), fast=fast).gate)
    second = inspect(first.config, str(tmp_path / "app.conf"), str(tmp_path / "app.gate"))
    assert choose(second) == (fast, "")
    assert len(second.locations) == 1 and second.locations[0].gated


def test_rendered_fast_path():
    url_map = Map([
        Rule("/users/<int:id>", endpoint="u", methods=["GET"]),
        Rule("/users/<int:id>", endpoint="d", methods=["DELETE"]),
        Rule("/posts/<slug>/", endpoint="p", methods=["POST"]), Rule("/<username>", endpoint="n"),
        Rule("/static", endpoint="s"), Rule("/any/<int:id>", endpoint="a"),
    ])
    fast = FastPath(parent="/", handler="uwsgi_pass 127.0.0.1:9;")
    rendered = render(compiled_for(url_map), "x", status=403, fast=fast)
    gate = rendered.gate
    assert gate.count('location ^~ "/users" {') == 1 and gate.count('location ^~ "/posts" {') == 1
    # one test of the request line per prefix, for both rules of the same path; its main method is GET
    assert 'if ($request !~ "^GET /users/[0-9]+ HTTP/")' in gate and "location ~" not in gate
    assert 'if ($request !~ "^POST /posts/[^./%#? ][^/%#? ]*(?![\\\\x80-\\\\xbf])/? HTTP/")' in gate
    assert "DELETE" not in gate  # DELETE /users/1 asks the maps
    assert 'if ($request !~ "^[^ ]+ /any/[0-9]+ HTTP/")' in gate  # /any/<int:id> takes every method
    # strict paths (the default): the request line's target is one NGINX leaves as it is (no query, no
    # %-escape, no dot segment); /static takes every method: its raw target is compared with $uri
    assert gate.count("if ($request_uri != $uri)") == 1 and "if ($args)" not in gate
    loose = render(compiled_for(url_map), "x", status=403, fast=fast, strict_paths=False).gate
    assert loose.count("if ($args)") == 1 and loose.count("if ($request !~") == 3
    # an exact location for a rule with a main method: one comparison of the request line, the path written out
    login = render(compiled_for(Map([Rule("/login", endpoint="l", methods=["GET", "POST"])])), "x", fast=fast).gate
    assert 'if ($request != "GET /login $server_protocol") { set $phoenix_x_fast $phoenix_x_deny; }' in login
    assert "$request_method" not in login and "$request_uri" not in login
    assert "return 403;" in gate and "return 404" not in gate
    # per prefix (named without its slash) one handler; and the static rule's exact location
    assert gate.count("uwsgi_pass 127.0.0.1:9;") == 3 + 1
    assert 'location = "/users"' not in gate and 'location ^~ "/users/"' not in gate
    assert "/<username>" not in gate  # a dynamic first segment: the maps
    assert gate.count('location = "/static" {') == 1  # a static rule: an exact location
    assert rendered.fast.startswith("fast path: 4 rules in 3 prefix and 1 exact locations")


def test_rules_that_could_let_the_console_through_stay_with_the_maps():
    url_map = Map([Rule("/api/<x>", endpoint="a"), Rule("/api/<int:i>/x", endpoint="b")])
    table = extract_routes.describe(url_map)
    table["app"] = "generated"
    compiled = compile_routes(table, ["/api/console"])
    gate = render(compiled, "x", fast=FastPath(parent="/", handler="proxy_pass http://a;")).gate
    assert gate.count("if ($request !~") == 1 and "/api/[0-9]+/x HTTP/" in gate and "[^/" not in gate


def test_no_fast_path_no_nested_locations():
    rendered = render(compiled_for(Map([Rule("/users/<int:id>", endpoint="u")])), "x")
    assert "location ^~" not in rendered.gate and "location ~" not in rendered.gate and rendered.fast == ""


def test_prefixes_outside_the_parent_are_left_to_the_gate():
    url_map = Map([Rule("/api/users/<int:id>", endpoint="a"), Rule("/web/<int:id>", endpoint="w")])
    gate = render(compiled_for(url_map), "x", fast=FastPath(parent="/api/", handler="proxy_pass http://a;")).gate
    assert 'location ^~ "/api/users" {' in gate and "/web" not in gate


def test_several_locations_get_a_fast_path_each_through_their_own_copy_of_the_gate(tmp_path):
    """One gate file in two locations can hold no fast path; a copy per location (app.<tag>.gate) can."""
    shared = _inspect(tmp_path, "location / {{ {gate} {body} }} location /api/ {{ {gate} {body} }}")
    fast, why = choose(shared)
    assert fast is None and "2 locations include app.gate" in why and str(tmp_path / "app.api.gate") in why
    copy = tmp_path / "app.api.gate"
    server = f"location / {{{{ {{gate}} {{body}} }}}} location /api/ {{{{ include {copy}; {{body}} }}}}"
    inspection = _inspect(tmp_path, server)  # the copy does not exist yet: the state's first run writes it
    assert inspection.location_gates == [str(copy)] and not inspection.problems()
    chosen = choose_each(inspection)
    main, copied = chosen[inspection.gate_path][0], chosen[str(copy)][0]
    assert main.parent == "/" and main.taken == ("/api/",)  # the server sends /api/... to the other location
    assert copied.parent == "/api/" and copied.taken == ()
    # a file of the user's with the copy's name is never overwritten
    copy.write_text("# my own file\n")
    with pytest.raises(ConfigError, match="Phoenix did not write it"):
        _inspect(tmp_path, server)


def _chosen(tmp_path: Path, main: str = "", server: str = "") -> FastPath | None:
    """The fast path for ``location / { include gate; proxy_pass ...; }``, ``main`` in the main context and another
    server holding ``server``."""
    maps, gate = tmp_path / "app.conf", tmp_path / "app.gate"
    maps.write_text("")
    gate.write_text("")
    config = tmp_path / "nginx.conf"
    config.write_text(f"{main}\nevents {{}}\nhttp {{ include {maps};\n server {{ listen 127.0.0.1:8080;\n"
                      f"  location / {{ include {gate}; {APP} }} }}\n server {{ {server} return 200; }} }}\n")
    return choose(inspect(str(config), str(maps), str(gate)))[0]


@pytest.mark.parametrize("main,jit", [("pcre_jit on;", True), ("pcre_jit off;", False), ("", False)])
def test_pcre_jit_is_read_from_the_main_context(tmp_path, main, jit):
    fast = _chosen(tmp_path, main=main)
    assert fast is not None and fast.jit is jit


@pytest.mark.parametrize("where, http1", [
    ("", True),
    ("listen 127.0.0.1:8443 ssl http2;", False),  # listen options are the socket's: every server on it speaks h2
    ("listen 127.0.0.1:8443 quic reuseport;", False),
    ("http2 on;", False),
    ("http3 on;", False),
    ("http2 off;", True),
])
def test_http2_anywhere_keeps_the_protocol_of_exact_locations_read_from_nginx(tmp_path, where, http1):
    """Where no server speaks HTTP/2 or 3, an exact location's request line ends with HTTP/1.1 written out."""
    fast = _chosen(tmp_path, server=where)
    assert fast is not None and fast.http1 is http1
    url_map = Map([Rule("/about", endpoint="a", methods=["GET"]), Rule("/users/<int:id>", endpoint="u")])
    gate_text = render(compiled_for(url_map), "app", fast=fast).gate
    line = 'if ($request != "GET /about HTTP/1.1")' if http1 else 'if ($request != "GET /about $server_protocol")'
    assert line in gate_text and gate_text.count("if ($request != ") == 1
    assert ("its HTTP/1.1 form: no server" in gate_text) is http1  # the gate's comment says which


_PIECES = st.sampled_from(["/", "a", "b", "d", "1", "\\.", "\\xc3\\xa9"])
_TAILS = st.sampled_from(["", "[0-9]+", "/?", "(?:x|y)", "x|/z", "a+", "\\.?", "[a|]", "/[^/]+"])


@settings(max_examples=400, deadline=None)
@given(alternatives=st.lists(st.tuples(st.lists(_PIECES, max_size=5), _TAILS), min_size=1, max_size=8),
       subjects=st.lists(st.text("/abd1.xyz0é", max_size=8), min_size=1, max_size=20))
def test_a_factored_alternation_matches_what_the_alternation_matched(alternatives, subjects):
    """Written once, the common leading literals of a location's rules match the same request lines."""
    alts = list(dict.fromkeys("".join(head) + tail for head, tail in alternatives))
    whole = re.compile(factored(alts).encode())
    plain = re.compile(("(?:" + "|".join(alts) + ")").encode())
    for subject in [*subjects, *(a.replace("\\", "") for a in alts)]:
        raw = subject.encode()
        assert bool(whole.fullmatch(raw)) == bool(plain.fullmatch(raw)), (alts, factored(alts), subject)
    # never longer than the share of a token each rule is counted for (fastpath._cost: its length + 12)
    assert len(factored(alts)) <= sum(len(a) + 8 for a in alts)


@settings(max_examples=300, deadline=None)
@given(names=st.lists(st.text("/abd1", min_size=2, max_size=7).map(lambda t: "/" + t.lstrip("/")), min_size=1,
                      max_size=60, unique=True),
       size=st.integers(1, 12), banned=st.sets(st.text("/abd1", min_size=1, max_size=4).map(lambda t: "/" + t)))
def test_names_share_locations_named_by_their_common_prefix(names, size, banned):
    """Every rule's name lands in exactly one location, whose name it starts with: at most ``size`` rules each,
    names unique, none ending in "/" or outside the parent, none the caller may not use (except a name alone)."""
    names = sorted(names)
    rules = {n: {n + "/x": None} for n in names}

    def usable(name: str) -> bool:
        return name not in banned

    out = share(names, rules.__getitem__, size, usable, 1)
    assert sorted(m for _, members in out for m in members) == names
    assert len({name for name, _ in out}) == len(out)
    for name, members in out:
        assert all(m.startswith(name) for m in members), (name, members)
        if members != [name]:
            assert len(members) <= size and not name.endswith("/") and len(name) > 1 and usable(name), (name, members)


def test_rules_share_prefix_locations_and_with_jit_static_ones_too():
    rules = [Rule(f"/d{i}/<int:id>", endpoint=f"d{i}") for i in range(1, 40, 2)]
    rules += [Rule(f"/s{i}", endpoint=f"s{i}", methods=["GET"]) for i in range(0, 40, 2)]
    rules += [Rule("/a.b/./c", endpoint="dots")]
    compiled = compiled_for(Map(rules))
    fast = FastPath(parent="/", handler="proxy_pass http://a;")
    plain = render(compiled, "x", fast=fast)
    # with JIT rules that fit one regex get the gate's request-line test instead of nested locations (render_gate;
    # the dot-segment rule is left to the maps)
    tested = render(compiled, "x", fast=dataclasses.replace(fast, jit=True))
    assert tested.fast == "request-line test: 40 rules in one regex in location / (pcre_jit on: cheaper than nested " \
                          "locations)"
    assert "\nlocation" not in tested.gate and 'if ($request !~ "^' in tested.gate and tested.line.count == 1
    jit = render(compiled, "x", fast=dataclasses.replace(fast, jit=True), line=False)  # the nested locations
    # without JIT: at most GROUP (8) rules per prefix location, each static rule its exact location (and the rule
    # with a dot segment, which no raw target reaches as it is, its exact location with the $uri test)
    assert plain.fast == "fast path: 41 rules in 3 prefix and 21 exact locations inside location /"
    assert 'location ^~ "/d1" {' in plain.gate and 'location = "/s38" {' in plain.gate
    # the rules' common leading literals written once, letters followed by the same as one class
    assert 'if ($request !~ "^[^ ]+ /d1(?:/[0-9]+|[13579]/[0-9]+) HTTP/")' in plain.gate
    # with JIT: up to GROUP_JIT (128) rules per location, the static ones written out in the regexes
    assert jit.fast == "fast path: 41 rules in 2 prefix and 1 exact locations inside location /"
    assert 'if ($request !~ "^GET /s(?:[0468]|[13][02468]|2(?:|[02468])) HTTP/")' in jit.gate
    assert 'location = "/s38"' not in jit.gate and 'location = "/a.b/./c" {' in jit.gate
    assert jit.maps == plain.maps == tested.maps
