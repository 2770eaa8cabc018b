"""The allowlist in a real NGINX in front of a real Flask app with the Werkzeug debugger on."""

from __future__ import annotations

import re
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.flaskapp import FlaskApp
from devtools.site import make_site, request
from phoenix.allowlist import manage
from phoenix.allowlist.render import render
from tests.support.decide import Decider
from tests.support.routing import METHODS, build, compiled_for, paths, prefix_probes, rule_sets, werkzeug_allows

pytestmark = pytest.mark.nginx

APP = "demo_app:app"

# (method, path, reaches the app once the allowlist is in place)
MATRIX = [
    ("GET", "/", True), ("GET", "/login", True), ("POST", "/login", True), ("HEAD", "/login", True),
    ("GET", "/about/", True), ("GET", "/about", True),  # the app's own strict-slash redirect
    ("GET", "/item/42", True), ("GET", "/offset/-7", True), ("GET", "/year/2024/report", True),
    ("GET", "/price/9.99", True), ("GET", "/files/a/b/c.txt", True),
    ("GET", "/obj/12345678-1234-1234-1234-123456789abc", True), ("GET", "/lang/fr", True),
    ("GET", "/lang/%C3%A9%C3%A9", True), ("GET", "/tag/abcd", True), ("GET", "/color/green", True),
    ("GET", "/commit/beef42", True), ("GET", "/v3/status", True), ("GET", "/bob", True),
    ("DELETE", "/delete/3", True), ("GET", "/api/v1/things/x/", True), ("GET", "/api/v1/things/x", True),
    ("GET", "/static/app.css", True),
    # under a fast-path prefix: other methods and query strings ask the maps
    ("HEAD", "/item/42", True), ("OPTIONS", "/item/42", True), ("PUT", "/item/42", False),
    ("GET", "/item/42?__debugger__=yes&cmd=resource&f=style.css", False), ("GET", "/item/42/", False),
    # invalid parameters
    ("GET", "/item/x", False), ("GET", "/item/-1", False), ("GET", "/year/24/report", False),
    ("GET", "/price/9", False), ("GET", "/obj/1234", False), ("GET", "/lang/fra", False),
    ("GET", "/lang/%C3%A9", False), ("GET", "/tag/ab", False), ("GET", "/color/pink", False),
    ("GET", "/commit/xyz1", False), ("GET", "/files/", False),
    # wrong methods
    ("PUT", "/login", False), ("GET", "/delete/3", False), ("POST", "/item/1", False), ("TRACE", "/", False),
    ("PATCH", "/bob", False),
    # unknown paths
    ("GET", "/admin/secret", False), ("GET", "/a/b/c/d", False), ("GET", "/item/", False), ("GET", "/bob/", False),
    # the debugger console, encoded and dot-segment tricks
    ("GET", "/console", False), ("GET", "/%63onsole", False), ("GET", "/%63%6f%6e%73%6f%6c%65", False),
    ("GET", "//console", False), ("GET", "///console", False), ("GET", "/login/../console", False),
    ("GET", "/./console", False), ("GET", "/%2Fconsole", False), ("GET", "/bob/../console", False),
    ("GET", "/login;x/../console", False), ("HEAD", "/console", False),
    # the debugger compares its path exactly: other cases are the app's /<username>
    ("GET", "/Console", True), ("GET", "/CONSOLE", True), ("GET", "/consolE?x=1", True),
    # every __debugger__ request, whatever the route and encoding
    ("GET", "/?__debugger__=yes&cmd=resource&f=style.css", False),
    ("GET", "/bob?__debugger__=yes&cmd=resource&f=debugger.js", False),
    ("GET", "/login?x=1&__debugger__=yes&cmd=printpin&s=x", False),
    ("GET", "/?%5f%5fdebugger%5f%5f=yes&cmd=resource&f=style.css", False),
    ("GET", "/?%5F%5Fdebugger%5F%5F=yes", False), ("GET", "/?__%64ebugger__=yes", False),
    ("GET", "/console?__debugger__=yes&cmd=resource&f=console.png", False),
    ("GET", "/item/5?q=a%20b&__debugger__=yes", False), ("GET", "/about/?__DEBUGGER__=yes", False),
    ("GET", "/files/a%20b/c?x=1+2&__debugger__=yes", False),
    # strict paths (the default): the raw path the app gets must route as the $uri NGINX checked
    ("GET", "/static/a/b/c/..%2f..%2f..%2f..%2fdemo_app.py", False), ("GET", "/item/5/../42", False),
    ("GET", "/item//42", False), ("GET", "/./login", False), ("GET", "/files/a%2Fb", False),
    ("GET", "/files/a/%2e%2E/b", False), ("GET", "/files/a/.", False), ("GET", "/login#/../x", False),
    ("GET", "/files/a%2ejs", False),
    ("GET", "/item/%34%32", True), ("GET", "/files/.well-known/x", True), ("GET", "/files/a.../..b", True),
    ("GET", "/login?next=/a/../b//c%2F", True),
    # ordinary query strings still pass, spaces and unicode in the path too
    ("GET", "/item/5?q=a%20b&page=2", True), ("GET", "/files/a%20b/c?x=1+2", True), ("GET", "/login?next=/x", True),
]


@pytest.fixture(scope="module")
def app(repo):
    with FlaskApp(APP, repo / "tests" / "apps") as served:
        yield served


@pytest.fixture(scope="module")
def site(app, repo, tmp_path_factory):
    site = make_site(tmp_path_factory.mktemp("site"), app.port)
    ngx = site.nginx(gated=True)
    ret = manage.managed(str(site.maps), app=APP, cwd=str(repo / "tests" / "apps"), config=str(site.config),
                         upstream=f"127.0.0.1:{app.port}")
    assert ret["result"] is True, ret["comment"]
    ngx.start(site.port)
    yield site
    ngx.stop()


@pytest.fixture(scope="module")
def ungated(app, tmp_path_factory):
    """The same site without the gate: what reaches the app when nothing protects it."""
    site = make_site(tmp_path_factory.mktemp("open"), app.port)
    site.maps.write_text("")
    ngx = site.nginx(gated=False)
    ngx.start(site.port)
    yield site
    ngx.stop()


def test_without_the_allowlist_the_debugger_is_reachable(ungated):
    status, reached, body = request(ungated.port, "GET", "/console")
    assert reached and status == 200 and b"Console" in body
    status, reached, _ = request(ungated.port, "GET", "/?__debugger__=yes&cmd=resource&f=style.css")
    assert reached and status == 200
    assert request(ungated.port, "GET", "/admin/secret")[1]  # the app's own 404


@pytest.mark.parametrize("method,path,allowed", MATRIX, ids=[f"{m} {p}" for m, p, _ in MATRIX])
def test_request_matrix(site, method, path, allowed):
    status, reached, body = request(site.port, method, path)
    assert reached is allowed, (status, body[:200])
    if not allowed:  # NGINX's 404; TRACE never gets past NGINX's own parser (405)
        assert status == (405 if method == "TRACE" else 404)


def test_the_console_check_is_exact_like_the_debuggers(site):
    """/Console is a profile page (the app's /<username>), /console is the debugger's and refused."""
    assert request(site.port, "GET", "/Console") == (200, True, b"profile Console")
    assert request(site.port, "GET", "/cOnSoLe")[2] == b"profile cOnSoLe"
    status, reached, _ = request(site.port, "GET", "/console")
    assert (status, reached) == (404, False)


def test_the_site_uses_the_fast_path(site):
    """The matrix above runs through the fast path: the site's one app location qualifies."""
    gate = site.gate.read_text()
    assert 'location ^~ "/item" {' in gate and 'location ^~ "/delete" {' in gate
    assert gate.count(f"proxy_pass http://127.0.0.1:{site.app_port};") >= 10
    # one regex on the request line per prefix: the rule's main method and its raw target
    assert 'if ($request !~ "^DELETE /delete/[0-9]+ HTTP/")' in gate


def test_nginx_served_paths_behave_exactly_as_before(site, ungated):
    assert request(site.port, "GET", "/assets/logo.txt")[::2] == (200, b"logo\n")
    assert request(site.port, "GET", "/healthz")[::2] == (200, b"nginx ok\n")
    for path in ("/assets/logo.txt", "/healthz", "/assets/missing.txt"):
        assert request(site.port, "GET", path) == request(ungated.port, "GET", path)
        assert not request(site.port, "GET", path)[1]


def test_probe_agrees(site, repo):
    from phoenix.allowlist import probe
    from phoenix.allowlist.extract import extract
    from phoenix.allowlist.rules import compile_routes

    compiled = compile_routes(extract(APP, cwd=str(repo / "tests" / "apps")))
    result = probe.run(f"http://127.0.0.1:{site.port}", probe.plan_checks(compiled))
    assert result["ok"], result["failed"]
    assert result["checked"] >= 20


def test_probe_catches_an_open_site(ungated, repo):
    from phoenix.allowlist import probe
    from phoenix.allowlist.extract import extract
    from phoenix.allowlist.rules import compile_routes

    compiled = compile_routes(extract(APP, cwd=str(repo / "tests" / "apps")))
    result = probe.run(f"http://127.0.0.1:{ungated.port}", probe.plan_checks(compiled))
    assert not result["ok"]
    assert any(f["path"] == "/console" for f in result["failed"])


# --- property: NGINX's decision equals Werkzeug's, through the real binary ----------------------
@pytest.fixture(scope="module")
def decision_nginx(tmp_path_factory):
    return Decider(tmp_path_factory.mktemp("prop"))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(rules=rule_sets(), probes=st.lists(paths(), min_size=4, max_size=12), method=st.sampled_from(METHODS))
def test_nginx_decides_like_werkzeug(decision_nginx, rules, probes, method):
    """Both mechanisms agree with Werkzeug: the gate alone, and the gate with its fast path.

    The fast path's nested locations answer "fast", so the fixture can check it was really used.
    """
    url_map = build(rules)
    compiled = compiled_for(url_map)
    # add one valid sample per rule so that allowed requests are exercised too
    from phoenix.allowlist.probe import sample_path

    probes = probes + [p for p in (sample_path(compiled, pat) for pat in compiled.patterns) if p]
    probes += prefix_probes(rules)
    rendered = decision_nginx.render(compiled, "prop")
    assert rendered["fast"].maps == rendered["gate"].maps
    quoted = [urllib_quote(p) for p in probes]
    decided = decision_nginx.decides(rendered, [(method, q) for q in quoted])
    for i, path in enumerate(probes):
        expected = werkzeug_allows(url_map, method, path)
        assert decided["gate"][i] == expected, ("gate", rules, method, path)
        assert decided["fast"][i] == expected, ("fast path", rules, method, path)


def test_the_fast_path_answers_and_falls_back(decision_nginx):
    """Fixed rules: the fast path's locations answer ("fast") under their prefix, the maps everywhere else."""
    url_map = build([("/users/<int:id>", ("GET",), True), ("/users/new", ("POST",), True), ("/<name>", None, True)])
    compiled = compiled_for(url_map)
    rendered = decision_nginx.render(compiled, "fixed")
    requests = [("GET", "/users/5"), ("HEAD", "/users/5"), ("GET", "/users/5?page=2"), ("POST", "/users/5"),
                ("GET", "/users/5?__debugger__=yes"), ("GET", "/users/x"), ("POST", "/users/new"),
                ("GET", "/users/new"), ("GET", "/bob"), ("GET", "/bob?__debugger__=yes"), ("GET", "/console"),
                # absolute targets: the same answers as the maps'
                ("GET", "http://site.test/users/5"), ("GET", "http://site.test/users/5?__debugger__=yes"),
                ("POST", "http://site.test/users/new"), ("PUT", "http://site.test/users/new")]
    before = decision_nginx.fast_hits
    decided = decision_nginx.decides(rendered, requests)
    expected = [werkzeug_allows(url_map, m, p.removeprefix("http://site.test").partition("?")[0])
                and "__debugger__" not in p and p != "/console" for m, p in requests]
    assert expected == [True, True, True, False, False, False, True, False, True, False, False, True, False, True,
                        False]
    assert decided["gate"] == expected and decided["fast"] == expected
    # GET, HEAD and the query string under /users/ (HEAD has no body), POST /users/new, and the two absolute
    # targets the maps allow
    assert decision_nginx.fast_hits - before == 5


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
def test_exact_locations_answer_every_protocol_as_the_gate(decision_nginx, version):
    """An exact location compares the request line with its HTTP/1.1 form (no server speaks HTTP/2: "fast") or
    with ``$server_protocol`` ("jit", where the lone static rules keep exact locations): HTTP/1.0 requests get the
    gate's answers from both, and from the first through the maps."""
    url_map = build([("/about", ("GET",), True), ("/docs/", ("GET",), True), ("/form", ("POST",), True),
                     ("/users/<int:id>", ("GET",), True)])
    compiled = compiled_for(url_map)
    rendered = decision_nginx.render(compiled, "proto")
    for kind, protocol in (("fast", "HTTP/1.1"), ("jit", "$server_protocol")):
        gate = rendered[kind].gate
        assert f'if ($request != "GET /about {protocol}")' in gate and f'"POST /form {protocol}")' in gate, gate
    requests = [("GET", "/about"), ("HEAD", "/about"), ("GET", "/about?x=1"), ("POST", "/about"), ("GET", "/docs/"),
                ("GET", "/docs"), ("POST", "/form"), ("GET", "/form"), ("GET", "/About"), ("GET", "/users/5"),
                ("GET", "/nope")]
    decided = decision_nginx.decides(rendered, requests, version=version)
    expected = [werkzeug_allows(url_map, m, p.partition("?")[0]) for m, p in requests]
    assert expected == [True, True, True, False, True, True, True, False, False, True, False]
    assert decided["gate"] == expected and decided["fast"] == expected and decided["jit"] == expected


def raw_variants(path: str) -> list[str]:
    """Raw targets around an allowed ``path`` that NGINX decodes, normalises or cuts: its ``$uri`` is not them."""
    head, _, last = path.rpartition("/")
    if not last:  # a path ending in "/": the same around its last segment, and after the slash
        return [path + "?__debugger__=yes", path + ".", path + "/", *(v + "/" for v in raw_variants(head))]
    return [path + "?x=1", path + "?__debugger__=yes", path + "#x", f"{head}/.", f"{head}/..", f"{head}/.{last}",
            f"{head}/./{last}", f"{head}//{last}", f"{head}/{last}/.", f"{head}/%{ord(last[0]):02X}{last[1:]}",
            f"{head}/{last}%2F", f"{head}/{last}%3F__debugger__=yes", f"{head}/x%20{last}", f"{head}/{last}.",
            f"{head}/..{last}"]


def test_the_request_line_test_leaves_every_target_nginx_changes_to_the_maps(decision_nginx):
    """The fast path tests the raw request line: each converter's value narrowed to what NGINX leaves as it is.

    Around an allowed path of each converter, every raw target NGINX would decode, normalise or cut (a query,
    a dot segment, an escape, ``//``) gets the gate's own answer; the allowed paths themselves the fast path's.
    """
    rules = [("/s/<name>", ("GET",), True), ("/p/<path:rest>", ("GET",), True), ("/i/<int:id>", ("GET",), True),
             ("/f/<float:x>", ("GET",), True), ("/u/<uuid:u>", ("GET",), True), ("/y/<any(ab,b):v>", ("GET",), True),
             ("/t/<name>/", ("GET",), True), ("/s/<name>/x<int:id>", ("GET",), True), ("/n/<name>", None, True)]
    url_map = build(rules)
    compiled = compiled_for(url_map)
    rendered = decision_nginx.render(compiled, "line")
    gate = rendered["fast"].gate
    assert gate.count("if ($request !~") == 8 and "location ~" not in gate  # one test per prefix, no regex location
    allowed = ["/s/ab", "/p/a/b.txt", "/i/5", "/f/1.5", "/u/12345678-1234-1234-1234-123456789abc", "/y/ab",
               "/t/ab/", "/s/a.b/x7", "/n/ab.c"]
    targets = [*allowed, *(v for path in allowed for v in raw_variants(path))]
    before = decision_nginx.fast_hits
    answers = decision_nginx.answers(rendered, [("GET", t) for t in targets])
    assert [s for s, _ in answers["fast"]] == [s for s, _ in answers["gate"]], list(zip(targets, answers["fast"],
                                                                                       answers["gate"]))
    assert [s for s, _ in answers["gate"][:len(allowed)]] == [200] * len(allowed)
    fast = [t for t, (_, body) in zip(targets, answers["fast"]) if body == b"fast\n"]
    assert fast[:len(allowed)] == allowed, fast  # the allowed paths: the fast path's own answer
    assert decision_nginx.fast_hits - before == len(fast)


def test_long_paths_and_segments_stay_out_of_nginx_hashes(decision_nginx):
    """NGINX refuses a whole configuration with a map key longer than its hash bucket (46 bytes by default).

    A long static path is matched by regex instead of the static hash, a long first segment of a dynamic
    rule goes with the rules whose first segment is dynamic: NGINX starts, and every answer is Werkzeug's.
    """
    long_static = "/api/v1/organizations/settings/notifications/preferences"
    long_segment = "/" + "s" * 50
    url_map = build([(long_static, ("GET",), True), (long_segment + "/<int:id>", ("GET",), True),
                     ("/short", ("GET",), True), ("/x/<int:id>", ("GET",), True)])
    compiled = compiled_for(url_map)
    assert len(long_static) > 46 and all(p.exact == () for p in compiled.patterns if p.rule == long_static)
    rendered = decision_nginx.render(compiled, "long")
    assert long_static not in rendered["gate"].maps.split("map \"$request_method\"")[0].replace("\\", "")
    requests = [("GET", long_static), ("GET", long_static + "x"), ("POST", long_static), ("GET", long_static.upper()),
                ("GET", long_segment + "/5"), ("GET", long_segment + "/x"), ("GET", "/short"), ("GET", "/x/5"),
                ("GET", long_static + "?__debugger__=yes")]
    expected = [werkzeug_allows(url_map, m, p.partition("?")[0]) and "__debugger__" not in p for m, p in requests]
    assert expected == [True, False, False, False, True, False, True, True, False]
    # decides() fails unless nginx -t accepts the configuration
    assert decision_nginx.decides(rendered, requests) == {"gate": expected, "fast": expected, "jit": expected}


def test_a_route_equal_to_a_fast_prefix_is_not_redirected_by_nginx(decision_nginx):
    """``/orders`` beside ``/orders/<int:oid>``, and ``/u`` routed by a catch-all: the app answers, not NGINX's 301.

    A ``^~ "/orders/"`` prefix location holding a proxy_pass would make NGINX answer ``/orders`` itself with
    ``301 Location: http://<the request's Host>/orders/``: the fast path names its prefixes without the slash.
    """
    url_map = build([("/orders", ("GET", "POST"), True), ("/orders/<int:oid>", ("GET",), True),
                     ("/u/<name>", ("GET",), True), ("/<slug>", None, True)])
    compiled = compiled_for(url_map)
    rendered = decision_nginx.render(compiled, "redirect")
    requests = [("GET", "/orders"), ("POST", "/orders"), ("GET", "/orders?page=2"), ("GET", "/u"),
                ("HEAD", "/u"), ("GET", "/orders/7"), ("PUT", "/orders"), ("GET", "/orders?__debugger__=yes"),
                ("GET", "/orders/x")]
    expected = [werkzeug_allows(url_map, m, p.partition("?")[0]) and "__debugger__" not in p for m, p in requests]
    assert expected == [True] * 7 + [False, False]  # PUT /orders: the catch-all takes it
    assert decision_nginx.decides(rendered, requests) == {"gate": expected, "fast": expected, "jit": expected}
    gate = rendered["fast"].gate
    assert 'location ^~ "/orders" {' in gate and 'location ^~ "/u" {' in gate and 'location = "/u"' not in gate
    assert 'location = "/orders" {' in gate  # the static rule's own exact location


def test_rules_that_share_a_location_answer_as_the_gate(decision_nginx):
    """Many rules under common prefixes share prefix locations (``fastpath.share``), named by what their paths
    have in common: without JIT up to 8 rules per location, with JIT up to 128 (one location for the 82 under
    /u) and the static rules written out in their regexes. Each allowed path is answered by a fast-path location
    in both, each of its raw variants and near misses as by the gate alone (the decider also compares the two fast
    paths request by request).
    """
    rules = [(f"/users{i}/<int:id>", ("GET",), True) for i in range(40)]
    rules += [(f"/users{i}/new", ("GET", "POST"), True) for i in range(40)]
    rules += [("/about/", ("GET",), True), ("/about/team", ("GET",), True), ("/about-us", ("GET",), True),
              ("/api/v1/items/<int:id>", ("GET",), True), ("/api/v2/items/<int:id>", ("GET", "PUT"), True),
              ("/api/v1/items", ("GET",), True), ("/a-b/<name>", None, True), ("/a.b", ("GET",), True),
              ("/u/<int:id>", ("GET",), True), ("/user/<int:id>", ("GET",), True)]
    url_map = build(rules)
    compiled = compiled_for(url_map)
    rendered = decision_nginx.render(compiled, "share")
    plain, jit = rendered["fast"].gate, rendered["jit"].gate
    assert plain.count("location ^~") < 40 + 5 and jit.count("location ^~") < plain.count("location ^~")
    assert 'location = "/users0/new"' in plain and 'location = "/users0/new"' not in jit
    # with JIT the 82 rules under /u (more than 32) share one location: its regex is cheap, a location is not
    assert 'location ^~ "/u" {' in jit and 'location ^~ "/user' not in jit and plain.count('location ^~ "/users') >= 10
    allowed = [f"/users{i}/{i + 3}" for i in range(40)] + [f"/users{i}/new" for i in range(40)]
    allowed += ["/about/", "/about/team", "/about-us", "/api/v1/items/5", "/api/v2/items/5", "/api/v1/items",
                "/a-b/x", "/a.b", "/u/5", "/user/5"]
    misses = ["/about", "/about/x", "/users1/x", "/users40/5", "/users/5", "/api/v3/items/5", "/api/v1/items/",
              "/a-b/", "/ab", "/u/x", "/user", "/users1", "/users1/new/", "/a.c", "/api/v2/items/5x"]
    targets = [*allowed, *misses, *(v for path in allowed[::5] for v in raw_variants(path))]
    requests = [(m, t) for m in ("GET", "POST") for t in targets]
    answers = decision_nginx.answers(rendered, requests)
    assert [s for s, _ in answers["fast"]] == [s for s, _ in answers["gate"]]
    for (method, target), (status, _) in zip(requests, answers["gate"]):
        if target in allowed or target in misses:  # plain paths: Werkzeug's answer
            assert (status == 200) == werkzeug_allows(url_map, method, target), (method, target, status)
    for kind in ("fast", "jit"):  # every allowed GET is the fast path's (the decider checked jit == fast)
        got = [body for (m, t), (_, body) in zip(requests, answers[kind]) if m == "GET" and t in allowed]
        assert got == [b"fast\n"] * len(allowed), (kind, list(zip(allowed, got)))
        # ... and its request-line test or exact comparison takes it, not the maps behind it (which answer "fast"
        # there too): the tests' regexes read alike in Python (the raw regexes are in the dialects' shared subset)
        gate = rendered[kind].gate
        lines = [re.compile(rx.replace("\\\\", "\\")) for rx in re.findall(r'if \(\$request !~ "([^"]+)"\)', gate)]
        exact = set(re.findall(r'if \(\$request != "GET (\S+) (?:\$server_protocol|HTTP/1\.1)"\)', gate))
        for path in allowed:
            assert path in exact or any(rx.match(f"GET {path} HTTP/1.1") for rx in lines), (kind, path)


STRICT = [("GET", "/users/5"), ("GET", "/users/%35"), ("GET", "/users/7/../5"), ("GET", "/users//5"),
          ("GET", "/users/./5"), ("GET", "/x/..%2fusers/5"), ("GET", "/users/%2e/5"), ("GET", "/bob"),
          ("GET", "/a/../bob"), ("GET", "/bob%2F"), ("GET", "/users/5?x=/../..//%2F"), ("GET", "/users/5#/../x")]


@pytest.mark.parametrize("strict", [True, False])
def test_strict_paths_refuse_what_the_app_would_route_differently(decision_nginx, strict):
    """NGINX decides on $uri (decoded, dot segments resolved, // merged); the app gets the raw target.

    Strict (the default) refuses unless both route alike; without it NGINX lets the raw path through
    because its normalised form is allowed, and the app then sees /users/7/../5, /x/../users/5 ...
    """
    url_map = build([("/users/<int:id>", ("GET",), True), ("/<name>", ("GET",), True)])
    compiled = compiled_for(url_map)
    rendered = decision_nginx.render(compiled, "strict", strict_paths=strict)
    decided = decision_nginx.decides(rendered, STRICT)
    clean = [True, True, False, False, False, False, False, True, False, False, True, False]
    normalised = [True] * 10 + [True, True]  # each one's $uri is /users/5, /bob or /bob/: all allowed...
    normalised[9] = False  # ... except /bob%2F, whose $uri /bob/ is not a route
    expected = clean if strict else normalised
    assert decided == {"gate": expected, "fast": expected, "jit": expected}


def test_with_merge_slashes_off_the_maps_test_every_raw_path(decision_nginx):
    """Where NGINX merges slashes (its default), a raw path equal to ``$uri`` holds no ``//`` and the maps take it
    as it is (``render._SAME_TAIL``). With ``merge_slashes off`` both may hold one, so the state renders the maps
    that test every raw path (``merge_slashes=False``): the app, which merges slashes itself, would get another
    path than the one NGINX decided on."""
    url_map = build([("/files/<path:p>", ("GET",), True), ("/users/<int:id>", ("GET",), True), ("/about", ("GET",), True)])
    compiled = compiled_for(url_map)
    requests = [("GET", "/files/a//b"), ("GET", "/files/a/b"), ("GET", "/files/a//b?x=1"), ("GET", "/users/5"),
                ("GET", "/users/5?x=1"), ("GET", "/about?x=1"), ("GET", "//about?x=1"), ("GET", "/files//a?x=1")]
    expected = [False, True, False, True, True, True, False, False]
    off = "merge_slashes off;"
    exact = decision_nginx.decides(decision_nginx.render(compiled, "slashes", merge_slashes=False), requests,
                                   server_extra=off)
    assert exact == {"gate": expected, "fast": expected, "jit": expected}
    # the maps for merged slashes would let the raw // through to the app there: what the state's reading prevents
    merged = decision_nginx.decides(decision_nginx.render(compiled, "slashes"), requests, server_extra=off)
    assert merged["gate"][0] and merged["gate"][2] and not any(merged["gate"][i] != expected[i] for i in (1, 3, 4, 5))
    # and where NGINX merges them, those maps answer as the app routes
    assert decision_nginx.decides(decision_nginx.render(compiled, "slashes"), requests)["gate"] == \
        [False, True, False, True, True, True, False, False]


RAW_PIECES = ["a", "b", "1", "12", ".", "..", "", "%2e", "%2E.", "%2f", "%2F", "%61", "x%20y", "é", ".a", "a.."]


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(rules=rule_sets(), raw=st.lists(st.lists(st.sampled_from(RAW_PIECES), min_size=1, max_size=4), min_size=4,
                                       max_size=10), method=st.sampled_from(("GET", "POST")))
def test_strict_paths_never_let_the_app_see_another_path(decision_nginx, rules, raw, method):
    """Whatever the raw target, a request NGINX allows (strict) is one the app routes, by its raw path.

    Raw paths are made of dot segments, empty segments, encoded dots and slashes. When the raw path
    decodes to itself without any of those, NGINX's answer is exactly Werkzeug's.
    """
    import urllib.parse

    url_map = build(rules)
    compiled = compiled_for(url_map)
    rendered = decision_nginx.render(compiled, "raw")
    from phoenix.allowlist.probe import sample_path

    targets = ["/" + "/".join(urllib.parse.quote(p, safe="%.") for p in pieces) for pieces in raw]
    # an allowed path reached through what NGINX normalises: the app would see something else
    for sample in filter(None, (sample_path(compiled, pat) for pat in compiled.patterns)):
        q = urllib.parse.quote(sample, safe="/")
        targets += ["/zz/.." + q, "/./" + q[1:], "/" + q, "/zz/%2e%2E" + q, "/zz%2F.." + q, q + "/.", q + "/zz/.."]
        # what the fast path's test of the request line must leave to the maps: a query, the debugger's, a
        # segment that starts with a dot or is one, an escape, an empty segment, a fragment
        head, _, last = q.rpartition("/")
        targets += [q + "?x=1", q + "?__debugger__=yes", f"{head}/.{last}", f"{head}/./{last}", f"{head}//{last}",
                    f"{head}/%{ord(last[0]):02X}{last[1:]}" if last[:1].isascii() and last[:1].isalnum() else q + "%2F",
                    q + "#x"]
    answers = decision_nginx.answers(rendered, [(method, t) for t in targets])
    # the fast path changes no answer, whatever the raw target
    assert [s for s, _ in answers["fast"]] == [s for s, _ in answers["gate"]], (rules, method, targets)
    for kind, got in answers.items():
        for target, (status, body) in zip(targets, got):
            assert status in (200, 400, 404), (kind, target, status, body)
            path = target.split("#")[0].partition("?")[0]
            seen = urllib.parse.unquote(path)  # what the WSGI server hands to Werkzeug
            if status == 200:
                assert werkzeug_allows(url_map, method, seen), (kind, rules, method, target)
            segments = seen.split("/")[1:]
            plain = "?" not in target and "#" not in target and not re.search(r"%2[ef]", target.lower()) and all(s not in (".", "..") for s in segments) and "//" not in seen
            if plain:
                assert (status == 200) == werkzeug_allows(url_map, method, seen), (kind, rules, method, target)


def urllib_quote(path: str) -> str:
    import urllib.parse

    return urllib.parse.quote(path, safe="/-._~!$&'()*+,;=:@")


def test_nginx_binary_is_the_debian_package():
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
    assert "nginx/" in out.stderr


def test_a_request_line_test_of_two_regexes_answers_as_the_chain(decision_nginx):
    """1,200 rules that need two regexes on the request line: the gate without the fast path tests the first in its
    ``if``, a map the second (``linemap``); NGINX answers every request as the chain alone does and as Werkzeug."""
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    url_map = build([(f"/{w}{i}/<int:id>", ("GET",), True) for i, w in enumerate((words * 200)[:1200])])
    rendered = decision_nginx.render(compiled_for(url_map), "two")
    assert rendered["gate"].line.count == 2 and 'map "$request" $phoenix_two_line {' in rendered["gate"].maps
    allowed = [f"/{words[i % 6]}{i}/{i}" for i in (0, 1, 599, 600, 601, 1199)]
    misses = [f"/{words[i % 6]}{i}/x" for i in (0, 1199)] + ["/alpha1200/5", "/alpha0", "/bravo0/5"]
    targets = [*allowed, *misses, *(v for path in allowed[::2] for v in raw_variants(path))]
    requests = [(m, t) for m in ("GET", "HEAD", "POST") for t in targets]
    answers = decision_nginx.answers(rendered, requests)
    for (method, target), (status, _) in zip(requests, answers["gate"]):
        if target in allowed or target in misses:
            assert (status == 200) == werkzeug_allows(url_map, method, target), (method, target, status)
