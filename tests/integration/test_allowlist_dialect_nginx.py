"""Converter regexes through the real NGINX: Python's ``re`` (Werkzeug) against NGINX's PCRE2, differentially.

Generated custom converters (sets with non-ASCII members, ``{,n}``, POSIX look-alikes, ASCII-mode
categories, nested repeats) and generated subjects go through the allowlist into NGINX; every answer
must be Werkzeug's. Bytes that are not UTF-8 may be refused where Werkzeug routes them (it reads them as
U+FFFD), never let through where it does not, and never make NGINX fail (500, ``[alert]``).
"""

from __future__ import annotations

import re
import urllib.parse

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from werkzeug.routing import BaseConverter, Map, Rule

from phoenix.allowlist.dialect import translate
from phoenix.allowlist.errors import RuleError
from tests.support.decide import Decider
from tests.support.regexes import byte_subjects, converter_regexes, subjects
from tests.support.routing import compiled_for, werkzeug_allows

pytestmark = [pytest.mark.nginx, pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")]


@pytest.fixture(scope="module")
def decider(tmp_path_factory):
    return Decider(tmp_path_factory.mktemp("dialect"))


def _rendered(decider: Decider, url_map: Map) -> dict:
    compiled = compiled_for(url_map)
    return decider.render(compiled, "dialect")


def _app(regexes: list[str]) -> tuple[Map, list[int]]:
    """One rule ``/c<i>/<c<i>:v>`` per regex that translates (the others are refused with a reason)."""
    converters, rules, kept = {}, [], []
    for i, regex in enumerate(regexes):
        try:
            translate(regex, "generated")
        except RuleError:
            continue
        converters[f"c{i}"] = type(f"C{i}", (BaseConverter,), {"regex": regex})
        rules.append(Rule(f"/c{i}/<c{i}:v>", endpoint=f"e{i}"))
        kept.append(i)
    return Map(rules, converters=converters), kept


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(regexes=st.lists(converter_regexes(), min_size=3, max_size=8),
       texts=st.lists(subjects.filter(lambda t: t not in ("", ".", "..")), min_size=3, max_size=8),  # dots: strict mode
       raw=st.lists(byte_subjects, min_size=1, max_size=3))
def test_nginx_matches_converter_regexes_like_python(decider, regexes, texts, raw):
    url_map, kept = _app(regexes)
    assume(kept)
    requests, expected, invalid = [], [], []
    for i in kept:
        for text in texts:
            path = f"/c{i}/{text}"
            requests.append(("GET", urllib.parse.quote(path, safe="/-._~!$&'()*+,;=:@")))
            allowed = werkzeug_allows(url_map, "GET", path)
            assert allowed == (re.fullmatch(regexes[i], text) is not None)  # Werkzeug is Python's re here
            expected.append(allowed)
        for data in raw:
            invalid.append((len(requests), werkzeug_allows(url_map, "GET", f"/c{i}/" + data.decode("utf-8", "replace"))))
            requests.append(("GET", f"/c{i}/" + urllib.parse.quote(data, safe="")))
    answers = decider.answers(_rendered(decider, url_map), requests)
    for kind, got in answers.items():
        statuses = [status for status, _ in got]
        assert set(statuses) <= {200, 404}, (kind, statuses)
        valid = [s == 200 for n, s in enumerate(statuses) if n not in {k for k, _ in invalid}]
        assert valid == expected, (kind, [regexes[i] for i in kept], texts)
        for n, werkzeug in invalid:
            assert statuses[n] == 404 or werkzeug, (kind, requests[n])  # never more than Werkzeug


def test_invalid_utf8_is_refused_or_answered_never_a_500(decider):
    """The issue's request: GET /cc/%FF%FE on string(length=2) was a 500 and ``pcre2_match() failed: -23``."""
    url_map = Map([Rule("/cc/<string(length=2):c>", endpoint="cc"), Rule("/n/<name>", endpoint="n"),
                   Rule("/t/<string(minlength=2):t>/x", endpoint="t"), Rule("/<path:p>.txt", endpoint="p")])
    requests = [("GET", "/cc/%FF%FE"), ("GET", "/cc/%C3%A9%C3%A9"), ("GET", "/cc/%C3"), ("GET", "/n/%FF%FE"),
                ("GET", "/t/%FF%FEz/x"), ("GET", "/t/ab/x"), ("GET", "/a%FF.txt"), ("GET", "/cc/%E2%82%AC%FF")]
    answers = decider.answers(_rendered(decider, url_map), requests)  # also: no [alert] in the error log
    for kind, got in answers.items():
        # refused where a single character must be read; passed where Werkzeug's [^/]+ / .* take any bytes
        assert [status for status, _ in got] == [404, 200, 404, 200, 404, 200, 200, 404], kind
    assert werkzeug_allows(url_map, "GET", "/n/\ufffd\ufffd") and werkzeug_allows(url_map, "GET", "/a\ufffd.txt")
