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
from phoenix.allowlist.render import _QUERY_PART, quote, render
from phoenix.allowlist.rules import compile_routes
from tests.support.routing import compiled_for, words_map

GET = ["GET"]
URL_MAP = Map([
    Rule("/users/<int:id>", endpoint="u", methods=GET), Rule("/login", endpoint="l", methods=["GET", "POST"]),
    Rule("/files/<path:p>", endpoint="f", methods=GET), Rule("/s/<x>", endpoint="s", methods=GET),
    Rule("/about", endpoint="a", methods=GET), Rule("/Admin", endpoint="A", methods=GET),
    Rule("/hook", endpoint="h", methods=["POST"]), Rule("/any/<int:i>", endpoint="any"),  # any method
])


def _line_regexes(maps: str, var: str = "$phoenix_x_line") -> list[re.Pattern[str]]:
    block = maps.split(f'map "$request" {var} {{\n', 1)[1].split("\n}", 1)[0]
    out = []
    for entry in block.splitlines()[1:]:  # after the default
        token = entry.strip().rsplit(" ", 1)[0]
        assert token.startswith('"~^') and token.endswith('"'), entry
        out.append(re.compile(token[2:-1].replace("\\\\", "\\")))
    return out


def _taken(regexes: list[re.Pattern[str]], line: str) -> bool:
    return any(r.match(line) for r in regexes)


def test_a_gate_without_the_fast_path_reads_the_request_line_map():
    rendered = render(compiled_for(URL_MAP), "x")
    assert "if ($phoenix_x_line = 0) { return 404; }" in rendered.gate
    assert 'map "$request" $phoenix_x_line {\n    default $phoenix_x_allow;\n' in rendered.maps
    regexes = _line_regexes(rendered.maps)
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
    regexes = _line_regexes(render(compile_routes(table, ["/api/console"]), "x").maps)
    assert _taken(regexes, "GET /api/5/x HTTP/1.1")
    assert not _taken(regexes, "GET /api/console HTTP/1.1") and not _taken(regexes, "GET /api/other HTTP/1.1")


def test_a_gate_with_the_fast_path_reads_the_chain():
    fast = FastPath(parent="/", handler="proxy_pass http://a;")
    assert "$phoenix_x_line" not in render(compiled_for(URL_MAP), "x", fast=fast).maps
    # another gate of the same maps file has no fast path (manage.plan): the map is there, this gate does not read it
    both = render(compiled_for(URL_MAP), "x", fast=fast, line=True)
    assert "$phoenix_x_line" in both.maps and "if ($phoenix_x_allow = 0) { return 404; }" in both.gate
    assert "$phoenix_x_line" not in both.gate


def test_many_rules_are_cut_into_regexes_that_fit_a_token_and_too_many_get_no_map():
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    # a dynamic first segment: no segment to dispatch on either
    url_map = Map([Rule(f"/<int:n>/{w}{i}/<int:id>", endpoint=f"e{i}") for i, w in enumerate(words * 600)])
    compiled = compiled_for(url_map)
    tokens = linemap.regexes(linemap.targets(compiled, lambda p: False), _QUERY_PART, quote)
    assert len(tokens) > linemap.MAX_REGEXES and max(map(len, tokens)) <= linemap.MAX_TOKEN
    regexes = [re.compile(t[2:-1].replace("\\\\", "\\")) for t in tokens]
    for i in (0, 1, 1799, 3599):
        w = words[i % 6]
        assert sum(bool(r.match(f"GET /3/{w}{i}/7 HTTP/1.1")) for r in regexes) == 1, i
        assert not _taken(regexes, f"GET /3/{w}{i}/x HTTP/1.1") and not _taken(regexes, f"GET /3/{w}{i + 3600}/7 HTTP/1.1")
    # tried in turn for every request they do not take: so many are not written, and the gate reads the chain
    rendered = render(compiled, "x")
    assert "$phoenix_x_line" not in rendered.maps and "if ($phoenix_x_allow = 0)" in rendered.gate
    assert f"no request-line map: its rules would need {len(tokens)} regexes" in rendered.maps and not rendered.line


def _maps(text: str) -> dict[str, tuple[str, str, list[tuple[str, str]]]]:
    """The maps file's maps: variable -> (source, default, entries), entries' keys unquoted."""
    out = {}
    for block in re.findall(r'^map "([^"]+)" (\S+) \{\n    default (\S+);\n(.*?)^\}', text, re.M | re.S):
        source, var, default, body = block
        entries = [(k[1:-1].replace("\\\\", "\\"), val) for k, val in re.findall(r'^    ("(?:[^"\\]|\\.)*") (\S+);', body, re.M)]
        out[var] = (source, default, entries)
    return out


def _line(maps: dict, line: str, var: str = "$phoenix_x_line") -> str:
    """What NGINX makes of ``$phoenix_x_line`` for a request ``line``: "1" where the request-line maps take it,
    else the variable whose answer it is (the chain's ``$phoenix_x_allow``). Hash keys ignore ASCII case."""
    captured: dict[str, str] = {}
    while var in maps and var != "$phoenix_x_allow":
        source, default, entries = maps[var]
        subject = line if source == "$request" else captured.get(source, "")
        for key, value in entries:
            if key.startswith("~"):
                m = re.match(re.sub(r"\(\?<(\w+)>", r"(?P<\1>", key[1:]), subject)
                if m:
                    captured.update({"$" + k: val for k, val in m.groupdict().items()})
                    var = value
                    break
            elif key.lower() == subject.lower():
                var = value
                break
        else:
            var = default
    return var


def test_rules_that_need_many_regexes_are_dispatched_on_the_first_segment():
    url_map, words = words_map()
    compiled = compiled_for(url_map)
    assert len(linemap.regexes(linemap.targets(compiled, lambda p: False), _QUERY_PART, quote)) > linemap.MAX_REGEXES
    rendered = render(compiled, "x")
    assert rendered.line and "if ($phoenix_x_line = 0) { return 404; }" in rendered.gate
    maps = _maps(rendered.maps)
    # the line map reads the first segment; a hash on it picks a shape class, a regex each
    assert maps["$phoenix_x_line"][2] == [("~^[^ ]+ (?<phoenix_x_ls>/[^/? ]*)", "$phoenix_x_lseg")]
    classes = {v for _, v in maps["$phoenix_x_lseg"][2]}
    # /<int>, /<int> + /list, /<int> + the segment alone, /api's /console/x
    assert len(classes) == 4 and all(len(maps[c][2]) == 1 for c in classes)
    w, s = words[100], words[55]
    taken = [f"GET /{w}/5 HTTP/1.1", f"GET /{w}/5?a=b HTTP/1.0", f"GET /{words[3]}/list HTTP/1.1",
             f"POST /{s} HTTP/1.1", f"GET /{s}?x HTTP/1.1", "GET /en/about HTTP/1.1", "GET /Admin/3 HTTP/1.1",
             "GET / HTTP/1.1", "GET /api/console/x HTTP/1.1"]
    left = [f"GET /{w.upper()}/5 HTTP/1.1", f"GET /{w}/x HTTP/1.1", f"POST /{w}/5 HTTP/1.1", f"GET /{w}/%35 HTTP/1.1",
            f"GET /%{ord(w[0]):x}{w[1:]}/5 HTTP/1.1", f"GET //{w}/5 HTTP/1.1", f"GET /{w}/5/ HTTP/1.1",
            f"GET /{w}/5?__debugger__=yes HTTP/1.1", f"GET /{words[60]}/list HTTP/1.1", f"GET /{w} HTTP/1.1",
            f"GET http://h/{w}/5 HTTP/1.1", "GET /admin/3 HTTP/1.1", "GET /en/about/ HTTP/1.1", "GET /console HTTP/1.1",
            f"DELETE /{s} HTTP/1.1", "GET /nothere/5 HTTP/1.1"]
    assert {line: _line(maps, line) for line in taken} == dict.fromkeys(taken, "1")
    assert {line: _line(maps, line) for line in left} == dict.fromkeys(left, "$phoenix_x_allow")
