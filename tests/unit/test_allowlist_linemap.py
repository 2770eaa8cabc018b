"""The request-line map (``linemap``): what a gate without the fast path accepts with one regex on ``$request``.

Its regexes are read here by Python's ``re`` (the rules' regexes are written in the subset both dialects share,
over the path's UTF-8 bytes read as Latin-1); that NGINX answers with them exactly as the map chain does is tested
through the real NGINX binary (``tests/support/decide.py``, ``test_allowlist_layouts.py``).
"""

from __future__ import annotations

import re

from werkzeug.routing import Map, Rule

from phoenix.allowlist import extract_routes, linemap
from phoenix.allowlist.fastpath import FastPath
from phoenix.allowlist.render import _QUERY_PART, Rendered, quote, render, render_gate
from phoenix.allowlist.rules import compile_routes
from tests.support.routing import compiled_for

GET = ["GET"]
URL_MAP = Map([
    Rule("/users/<int:id>", endpoint="u", methods=GET), Rule("/login", endpoint="l", methods=["GET", "POST"]),
    Rule("/files/<path:p>", endpoint="f", methods=GET), Rule("/s/<x>", endpoint="s", methods=GET),
    Rule("/about", endpoint="a", methods=GET), Rule("/Admin", endpoint="A", methods=GET),
    Rule("/hook", endpoint="h", methods=["POST"]), Rule("/any/<int:i>", endpoint="any"),  # any method
])


def _line_regexes(rendered: Rendered, v: str = "$phoenix_x") -> list[re.Pattern[str]]:
    """The request-line test's regexes: the one in the gate's ``if``, then those of the map it falls back to."""
    first = re.search(r'^if \(\$request !~ "(.+)"\) \{ set ' + re.escape(v) + r"_fast (\S+); \}$", rendered.gate, re.M)
    assert first, rendered.gate
    tokens = [first.group(1)]
    if first.group(2) == f"{v}_line":
        block = rendered.maps.split(f'map "$request" {v}_line {{\n', 1)[1].split("\n}", 1)[0]
        for entry in block.splitlines()[1:]:  # after the default
            token = entry.strip().rsplit(" ", 1)[0]
            assert token.startswith('"~^') and token.endswith('"'), entry
            tokens.append(token[2:-1])
    else:
        assert first.group(2) == f"{v}_deny"
    return [re.compile(t.replace("\\\\", "\\")) for t in tokens]


def _taken(regexes: list[re.Pattern[str]], line: str) -> bool:
    return any(r.match(line) for r in regexes)


def test_a_gate_without_the_fast_path_reads_the_request_line_map():
    rendered = render(compiled_for(URL_MAP), "x")
    # the gate tests the request line itself (a map would lowercase and hash it first); else the chain's answer
    assert 'set $phoenix_x_fast "";\nif ($request !~ "^' in rendered.gate
    assert "if ($phoenix_x_fast) { return 404; }" in rendered.gate and "$phoenix_x_allow = 0" not in rendered.gate
    assert "$phoenix_x_line" not in rendered.maps  # one regex: no map of a second
    regexes = _line_regexes(rendered)
    assert len(regexes) == 1  # a small app: one call into PCRE
    taken = ["GET /users/5 HTTP/1.1", "HEAD /users/5 HTTP/1.0", "HEAD /users/5 HTTP/2.0", "GET /users/5?a=1&b HTTP/1.1",
             "POST /login HTTP/1.1", "GET /login HTTP/1.1", "GET /files/a/b.txt HTTP/1.1", "GET /s/x.y HTTP/1.1",
             "GET /about HTTP/1.1", "POST /hook HTTP/1.1", "GET /about?q=__debug HTTP/1.1", "GET /Admin HTTP/1.1",
             "DELETE /any/5 HTTP/1.1", "BREW /any/5?x HTTP/1.1"]
    left = [
        "POST /users/5 HTTP/1.1", "OPTIONS /users/5 HTTP/1.1", "GET /hook HTTP/1.1", "DELETE /login HTTP/1.1",  # a method the rule has not
        "GET /users/%35 HTTP/1.1", "GET //users/5 HTTP/1.1", "GET /files/a//b HTTP/1.1", "GET /files/a/../b HTTP/1.1",
        "GET /s/.. HTTP/1.1", "GET /s/. HTTP/1.1", "GET /users/5/ HTTP/1.1", "GET /users/x HTTP/1.1",
        "GET /About HTTP/1.1", "GET /admin HTTP/1.1", "GET /ADMIN HTTP/1.1",  # Werkzeug compares case
        "GET /users/5?__debugger__=yes HTTP/1.1", "GET /users/5?%5f_debugger__=yes HTTP/1.1",
        "GET /users/5?x=1&__DEBUGGER__=1 HTTP/1.1", "GET /console HTTP/1.1", "GET http://h/users/5 HTTP/1.1",
        "GET /users/5 x HTTP/1.1",
    ]
    assert [line for line in taken if not _taken(regexes, line)] == []
    assert [line for line in left if _taken(regexes, line)] == []


def test_rules_that_could_let_the_console_through_stay_with_the_chain():
    url_map = Map([Rule("/api/<x>", endpoint="a"), Rule("/api/<int:i>/x", endpoint="b")])
    table = extract_routes.describe(url_map)
    table["app"] = "generated"
    regexes = _line_regexes(render(compile_routes(table, ["/api/console"]), "x"))
    assert _taken(regexes, "GET /api/5/x HTTP/1.1")
    assert not _taken(regexes, "GET /api/console HTTP/1.1") and not _taken(regexes, "GET /api/other HTTP/1.1")


def test_a_gate_with_the_fast_path_reads_the_chain():
    fast = FastPath(parent="/", handler="proxy_pass http://a;")
    alone = render(compiled_for(URL_MAP), "x", fast=fast)
    assert alone.line is None and "$request !~" not in alone.gate.split("\nlocation", 1)[0]
    # another gate of the same maps file has no fast path (manage.plan): its test is made, this gate does not use it
    both = render(compiled_for(URL_MAP), "x", fast=fast, line=True)
    assert both.line is not None and both.maps == alone.maps  # one regex: nothing in the maps file
    assert "if ($phoenix_x_allow = 0) { return 404; }" in both.gate
    assert both.line.regex not in both.gate and render_gate(compiled_for(URL_MAP), "x", line=both.line)[0] == \
        render(compiled_for(URL_MAP), "x").gate


def test_many_rules_are_cut_into_regexes_that_fit_a_token_and_too_many_get_no_map():
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    url_map = Map([Rule(f"/{w}{i}/<int:id>", endpoint=f"e{i}") for i, w in enumerate(words * 600)])
    compiled = compiled_for(url_map)
    tokens = linemap.regexes(linemap.targets(compiled, lambda p: False), _QUERY_PART, quote)
    assert len(tokens) > linemap.MAX_REGEXES and max(map(len, tokens)) <= linemap.MAX_TOKEN
    regexes = [re.compile(t[2:-1].replace("\\\\", "\\")) for t in tokens]
    for i in (0, 1, 1799, 3599):
        w = words[i % 6]
        assert sum(bool(r.match(f"GET /{w}{i}/7 HTTP/1.1")) for r in regexes) == 1, i
        assert not _taken(regexes, f"GET /{w}{i}/x HTTP/1.1") and not _taken(regexes, f"GET /{w}{i + 3600}/7 HTTP/1.1")
    # tried in turn for every request they do not take: so many are not written, and the gate reads the chain
    rendered = render(compiled, "x")
    assert "$phoenix_x_line" not in rendered.maps and "if ($phoenix_x_allow = 0)" in rendered.gate
    assert "no request-line test: its rules would need more than 2 regexes" in rendered.maps and not rendered.line
    # the cutting stops once it has its answer
    assert linemap.regexes(linemap.targets(compiled, lambda p: False), _QUERY_PART, quote, 2) is None
    assert linemap.regexes(linemap.targets(compiled, lambda p: False), _QUERY_PART, quote, len(tokens)) == tokens


def test_two_regexes_the_gate_tests_the_first_and_a_map_the_second():
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    compiled = compiled_for(Map([Rule(f"/{w}{i}/<int:id>", endpoint=f"e{i}") for i, w in enumerate((words * 200)[:1200])]))
    rendered = render(compiled, "x")
    assert rendered.line is not None and rendered.line.count == 2 and rendered.line.fallback == "$phoenix_x_line"
    # the map answers "" where its regex takes the request, else the chain's refusal
    assert 'map "$request" $phoenix_x_line {\n    default $phoenix_x_deny;\n    "~^' in rendered.maps
    regexes = _line_regexes(rendered)
    assert len(regexes) == 2
    for i in (0, 599, 600, 1199):
        line = f"GET /{words[i % 6]}{i}/7 HTTP/1.1"
        assert sum(bool(r.match(line)) for r in regexes) == 1, line  # each rule's targets in one of them
        assert not _taken(regexes, f"GET /{words[i % 6]}{i}/x HTTP/1.1")
