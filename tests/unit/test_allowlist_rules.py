"""Compiled patterns against Werkzeug itself (pure logic, no NGINX)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.routing import BaseConverter, Map, Rule

from phoenix.allowlist import extract_routes
from phoenix.allowlist.converters import CONVERTERS, can_match_slash
from phoenix.allowlist.errors import ExtractError, RuleError
from phoenix.allowlist.render import MAX_TOKEN, quote, render
from phoenix.allowlist.dialect import wire
from phoenix.allowlist.rules import compile_routes
from tests.support.routing import METHODS, build, compiled_for, paths, rule_sets, werkzeug_allows


@settings(max_examples=400, deadline=None)
@given(rules=rule_sets(), probes=st.lists(paths(), min_size=1, max_size=12), method=st.sampled_from(METHODS))
def test_patterns_decide_like_werkzeug(rules, probes, method):
    url_map = build(rules)
    compiled = compiled_for(url_map)
    for path in probes:
        assert compiled.allows(method, path) == werkzeug_allows(url_map, method, path), (rules, method, path)


@pytest.mark.parametrize("rule,yes,no", [
    ("/item/<int:i>", ["/item/0", "/item/42"], ["/item/-1", "/item/x", "/item/", "/item/1/"]),
    ("/o/<int(signed=True):i>", ["/o/-3", "/o/3"], ["/o/--3", "/o/+3"]),
    ("/y/<int(fixed_digits=4):y>", ["/y/2024", "/y/0001"], ["/y/24", "/y/20245"]),
    ("/p/<float:f>", ["/p/1.5"], ["/p/1", "/p/.5"]),
    ("/f/<path:p>", ["/f/a", "/f/a/b/c"], ["/f/", "/f"]),
    ("/u/<uuid:u>", ["/u/12345678-1234-1234-1234-123456789abc"], ["/u/1234"]),
    ("/l/<string(length=2):c>", ["/l/fr", "/l/éé"], ["/l/f", "/l/fra", "/l/é"]),
    ("/t/<string(minlength=2,maxlength=3):c>", ["/t/ab", "/t/abc"], ["/t/a", "/t/abcd"]),
    ("/c/<any(red,'blue'):c>", ["/c/red", "/c/blue"], ["/c/green", "/c/redx"]),
    ("/<username>", ["/bob", "/LOGIN", "/a;b"], ["/", "/a/b"]),
    ("/about/", ["/about/", "/about"], ["/about//x", "/aboutx"]),
    ("/v<int:n>/s", ["/v2/s"], ["/v/s", "/vx/s"]),
])
def test_every_converter(rule, yes, no):
    url_map = Map([Rule(rule, endpoint="e")])
    compiled = compiled_for(url_map)
    for path in yes:
        assert werkzeug_allows(url_map, "GET", path) and compiled.allows("GET", path), path
    for path in no:
        assert not compiled.allows("GET", path), path
        assert not werkzeug_allows(url_map, "GET", path), path


def test_custom_converter_uses_its_regex():
    class Hex(BaseConverter):
        regex = "[0-9a-f]{4}"

    url_map = Map([Rule("/c/<hex:h>", endpoint="e")], converters={"hex": Hex})
    compiled = compiled_for(url_map)
    assert compiled.allows("GET", "/c/beef") and not compiled.allows("GET", "/c/bee")


def test_custom_converter_that_could_swallow_a_slash_is_refused():
    class Loose(BaseConverter):
        regex = ".+"
        part_isolating = True

    url_map = Map([Rule("/c/<loose:x>", endpoint="e")], converters={"loose": Loose})
    with pytest.raises(RuleError, match=r"/c/<loose:x>.*can match '/'"):
        compiled_for(url_map)


def test_non_isolating_custom_converter_is_fine():
    class Rest(BaseConverter):
        regex = ".+"
        part_isolating = False

    url_map = Map([Rule("/c/<rest:x>", endpoint="e")], converters={"rest": Rest})
    assert compiled_for(url_map).allows("GET", "/c/a/b")


def test_subdomain_and_host_rules_are_refused_with_the_rule_named():
    with pytest.raises(RuleError, match="/x.*subdomain/host 'api'"):
        compiled_for(Map([Rule("/x", subdomain="api", endpoint="e")]))
    with pytest.raises(RuleError, match="host_matching"):
        table = extract_routes.describe(Map([Rule("/x", host="a.example", endpoint="e")], host_matching=True))
        compile_routes(table)


def test_no_rules_is_an_error():
    with pytest.raises(ExtractError, match="no routable rules"):
        compile_routes({"app": "x:app", "rules": []})


def test_build_only_rules_are_not_served():
    url_map = Map([Rule("/a", endpoint="a"), Rule("/hidden", endpoint="h", build_only=True)])
    compiled = compiled_for(url_map)
    assert compiled.allows("GET", "/a") and not compiled.allows("GET", "/hidden")


def test_debugger_and_console_are_refused_even_under_a_catch_all():
    compiled = compiled_for(Map([Rule("/<name>", endpoint="e")]))
    assert compiled.allows("GET", "/bob")
    assert not compiled.allows("GET", "/console")
    assert not compiled.allows("GET", "/bob?__debugger__=yes")


def test_can_match_slash():
    assert can_match_slash(".+") and can_match_slash("[^a]") and can_match_slash(r"\W") and can_match_slash("a|/")
    assert not can_match_slash("[^/]+") and not can_match_slash(r"\d+") and not can_match_slash("[a-z]{2}")


def test_converter_table_covers_werkzeug_defaults():
    assert set(CONVERTERS) >= {"UnicodeConverter", "PathConverter", "IntegerConverter", "FloatConverter",
                               "UUIDConverter", "AnyConverter"}


METACHAR_RULES = ['/a b', '/q"uote', "/s'q", "/semi;colon", "/br{ace}", "/do$llar", "/ha#sh", "/back\\slash",
                  "/caf\u00e9", "/\u4e2d\u6587/<int:n>", "/x y/<v>"]


def test_metacharacters_are_quoted_and_escaped():
    url_map = Map([Rule(r, endpoint=f"e{i}") for i, r in enumerate(METACHAR_RULES)])
    compiled = compiled_for(url_map)
    text = render(compiled, "/etc/nginx/conf.d/meta.conf").maps
    for rule in METACHAR_RULES:
        if "<" not in rule:
            assert quote(rule) in text
    for line in text.splitlines():
        if line.strip().startswith(("#", "map", "}", "default")) or not line.strip():
            continue
        key = line.strip()
        assert key.startswith('"'), key  # every key is one quoted token


def test_many_dynamic_rules_fold_into_tokens_nginx_accepts():
    url_map = Map([Rule(f"/g/r{i}/<int:n>", endpoint=f"e{i}") for i in range(400)])
    text = render(compiled_for(url_map), "big").maps
    keys = [line.strip().rsplit(" ", 1)[0] for line in text.splitlines() if line.strip().startswith('"~')]
    assert len(keys) >= 2 and all(len(k) <= MAX_TOKEN + 20 for k in keys)


def test_render_is_deterministic():
    url_map = Map([Rule("/a", endpoint="a"), Rule("/b/<int:n>", endpoint="b")])
    assert render(compiled_for(url_map), "x").maps == render(compiled_for(url_map), "x").maps


def test_regexes_never_capture_except_the_segment_reader():
    url_map = Map([Rule("/c/<any(a,b):x>/<path:p>/", endpoint="e"), Rule("/<n>", endpoint="n")])
    text = render(compiled_for(url_map), "x").maps
    regexes = [line.strip() for line in text.splitlines() if line.strip().startswith('"~')]
    capturing = {r.rsplit(" ", 1)[0] for r in regexes if re.search(r"(?<!\\)\((?![?*])|\(\?P?<[A-Za-z]", r)}
    assert len(capturing) == 1 and capturing.pop().startswith('"~^(?<phoenix_x_')


def test_to_python_validation_is_the_apps_business():
    """Known, documented difference: Werkzeug stops at the first rule whose regex matches, even when
    that converter's to_python then refuses (fixed_digits, min/max); NGINX tries the next rule. The
    request then reaches the app, which answers 404 itself: NGINX is never stricter-than-needed here
    and nothing the app does not route gets an answer other than the app's own 404."""
    url_map = Map([Rule("/<int(fixed_digits=2):n>/x", endpoint="a"), Rule("/<int:n>/x", endpoint="b")])
    compiled = compiled_for(url_map)
    assert compiled.allows("GET", "/12/x") and werkzeug_allows(url_map, "GET", "/12/x")
    assert compiled.allows("GET", "/1/x") and not werkzeug_allows(url_map, "GET", "/1/x")


def test_describe_lists_every_rule_of_a_flask_app_in_iter_rules_order():
    """describe reads Map._rules (iter_rules() would first build the matcher): the same rules, same order,
    for a Flask app with a blueprint, a rule added after the first match and a converter with arguments."""
    from flask import Blueprint, Flask

    app = Flask(__name__)
    bp = Blueprint("bp", __name__, url_prefix="/bp")
    bp.add_url_rule("/<int(fixed_digits=4):year>", "year", lambda year: "")
    app.register_blueprint(bp)
    app.add_url_rule("/a/<path:rest>", "a", lambda rest: "", methods=["POST"])
    app.url_map.bind("localhost").match("/a/x", method="POST")  # the matcher is built now
    app.add_url_rule("/late", "late", lambda: "")
    described = extract_routes.describe(app.url_map, app=app)["rules"]
    assert [r["rule"] for r in described] == [r.rule for r in app.url_map.iter_rules()]
    year = next(r for r in described if r["rule"] == "/bp/<int(fixed_digits=4):year>")
    assert year["converters"]["year"]["args"]["fixed_digits"] == 4
    assert year["converters"]["year"]["bases"][0] == "IntegerConverter"


RAW_TEXT = st.lists(st.sampled_from(["a", "b", "1", "-", ".", "/", "%", "?", "#", " ", "é", "%2e", "x", ".."]),
                    max_size=6).map("".join)


@settings(max_examples=400, deadline=None)
@given(rules=rule_sets(), tails=st.lists(RAW_TEXT, min_size=1, max_size=8))
def test_a_rules_raw_regex_matches_only_plain_targets_its_own_regex_matches(rules, tails):
    """``Pattern.raw`` (the fast path's test of the raw target) is the rule's regex narrowed: every target it
    matches is one the rule's regex matches, and one NGINX leaves as it is (no %, ?, #, space, dot segment, //).
    """
    compiled = compiled_for(build(rules))
    from phoenix.allowlist.probe import sample_path

    for pattern in compiled.patterns:
        if pattern.raw is None:
            continue
        raw = re.compile(pattern.raw + r"\Z")
        sample = sample_path(compiled, pattern) or "/"
        for target in [sample, *(sample + t for t in tails), *("/" + t for t in tails)]:
            if raw.match(wire(target)):
                assert compiled.matches(pattern, target), (pattern.rule, target)
                segments = target.split("/")[1:]
                assert not any(c in target for c in "%?# ") and "//" not in target, (pattern.rule, target)
                assert not any(s in (".", "..") for s in segments), (pattern.rule, target)


@pytest.mark.parametrize("rule,raw", [
    ("/i/<int:i>", True), ("/f/<float:f>", True), ("/u/<uuid:u>", True), ("/s/<name>", True),
    ("/p/<path:p>", True), ("/a/<any(x,y):v>", True), ("/a/<any(x,y.z):v>", False),
    ("/l/<string(length=2):c>", False), ("/sp/a b/<int:i>", False), ("/d/./<int:i>", False),
])
def test_which_rules_have_a_raw_regex(rule, raw):
    (pattern,) = compiled_for(Map([Rule(rule, endpoint="e")])).patterns
    assert (pattern.raw is not None) is raw, pattern
