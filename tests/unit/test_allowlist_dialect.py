"""Python's regex dialect -> PCRE2's (``dialect.py``): exact translations and named refusals, in Python.

The same translations run through the real NGINX in tests/integration/test_allowlist_dialect_nginx.py.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.routing import BaseConverter, Map, Rule

from phoenix.allowlist.dialect import literal, translate, wire
from phoenix.allowlist.errors import RuleError
from tests.support.regexes import byte_subjects, converter_regexes, subjects
from tests.support.routing import compiled_for, werkzeug_allows

pytestmark = pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")


def _same(regex: str, subject: str) -> tuple[bool, bool]:
    pcre, _ = translate(regex, "test")
    return (re.fullmatch(regex, subject) is not None, re.fullmatch(pcre, wire(subject)) is not None)


@pytest.mark.parametrize("regex,pcre,yes,no", [
    # a bounded repeat in Python, literal text in PCRE2 10.42
    ("[a-z]{,3}", "[a-z]{0,3}", ["", "abc"], ["abcd", "{,3}", "a{,3}"]),
    # Python reads a set of the characters "[:digt" followed by "]", PCRE2 a POSIX class: Python wins
    ("[[:digit:]]", r"[:\x5bdgit]\]", ["d]", ":]"], ["1", "d"]),
    # characters, not bytes: é is \xc3\xa9
    ("[éè]", r"\xc3[\xa8\xa9]", ["é", "è"], ["e", "\xc3", "ée"]),
    ("[^/]{2}", None, ["éé", "ab", "a€"], ["é", "ééé", "a/"]),
    ("(?a:\\d)+", None, ["123"], ["١٢٣", "1a"]),
    ("é{2}", r"(?:\xc3\xa9){2}", ["éé"], ["é"]),
    ("[^/]+", r"[^/]+(?![\x80-\xbf])", ["a", "é€😀"], [""]),
])
def test_translations_the_issue_names(regex, pcre, yes, no):
    translated, _ = translate(regex, "test")
    if pcre is not None:
        assert translated == pcre
    assert translated.isascii() and "(*UTF)" not in translated  # PCRE2 never runs in UTF mode
    for subject in yes:
        assert _same(regex, subject) == (True, True), subject
    for subject in no:
        assert _same(regex, subject) == (False, False), subject


def test_posix_lookalike_gets_a_note():
    _, notes = translate("[[:digit:]]+", "rule '/x/<d:v>': converter Digits for <v>")
    assert len(notes) == 1 and "not as a POSIX class" in notes[0] and "Digits" in notes[0]


@pytest.mark.parametrize("regex,construct,fix", [
    (r"\d+", r"\d, which in Python also matches non-ASCII digits", "[0-9]"),
    (r"\w{2}", r"\w, which in Python also matches non-ASCII characters", "[A-Za-z0-9_]"),
    (r"[^\W_]", r"\W", "negated"),
    (r"\s", r"\s", r"(?a:\s)"),
    ("(?i:ab)", "case-insensitive matching", "[Aa]"),
    (r"a\b", "anchor or word boundary", "Remove it"),
    ("^a", "anchor or word boundary", "Remove it"),
    ("a(?=b)b", "lookahead or lookbehind", "character class"),
    ("(?<!x)a", "lookahead or lookbehind", "character class"),
    (r"(a)\1", "back reference", "alternatives"),
    ("a++", "possessive repeat", "plain repeat"),
    ("(?>ab|a)b", "atomic group", "plain repeat"),
    ("a{70000}", "repeat count above 65535", "smaller"),
])
def test_what_cannot_be_translated_is_refused_with_converter_construct_and_fix(regex, construct, fix):
    class Custom(BaseConverter):
        pass

    Custom.regex = regex
    with pytest.raises(RuleError) as err:
        compiled_for(Map([Rule("/c/<custom:v>", endpoint="e")], converters={"custom": Custom}))
    message = str(err.value)
    assert "/c/<custom:v>" in message and "converter Custom for <v>" in message, message
    assert repr(regex) in message and construct in message and fix in message, message


def test_literal_writes_utf8_bytes():
    assert literal("/é/a.b") == r"/\xc3\xa9/a\.b"
    assert re.fullmatch(literal("/é €?"), wire("/é €?"))
    assert literal("/x$y") == r"/x\x24y"


@settings(max_examples=300, deadline=None)
@given(regex=converter_regexes(), texts=st.lists(subjects, min_size=1, max_size=8))
def test_translation_matches_what_python_matches(regex, texts):
    """Over valid UTF-8 the translation takes exactly what Python's re takes."""
    try:
        pcre, _ = translate(regex, "generated")
    except RuleError:
        return  # refused with a reason: tested above
    for text in texts:
        assert (re.fullmatch(pcre, wire(text)) is not None) == (re.fullmatch(regex, text) is not None), \
            (regex, pcre, text)


@settings(max_examples=200, deadline=None)
@given(regex=converter_regexes(), raw=st.lists(byte_subjects, min_size=1, max_size=8))
def test_bytes_that_are_not_utf8_are_never_let_through_where_werkzeug_would_not_route(regex, raw):
    """Werkzeug reads such bytes as U+FFFD; NGINX may refuse them, never take more."""
    try:
        pcre, _ = translate(regex, "generated")
    except RuleError:
        return
    for data in raw:
        if re.fullmatch(pcre, data.decode("latin-1")):
            assert re.fullmatch(regex, data.decode("utf-8", "replace")), (regex, pcre, data)


def test_string_length_counts_characters_and_invalid_bytes_are_refused():
    url_map = Map([Rule("/cc/<string(length=2):c>", endpoint="e"), Rule("/n/<name>", endpoint="n")])
    compiled = compiled_for(url_map)
    assert compiled.allows("GET", "/cc/éé") and not compiled.allows("GET", "/cc/é")
    (pattern,) = [p for p in compiled.patterns if p.rule.startswith("/cc/")]
    assert not re.match(compiled.python_regex(pattern), "/cc/\xff\xfe")  # %FF%FE: refused, no UTF mode to fail
    (name,) = [p for p in compiled.patterns if p.rule.startswith("/n/")]
    assert re.match(compiled.python_regex(name), "/n/\xff\xfe")  # like Werkzeug: [^/]+ takes any bytes
    assert werkzeug_allows(url_map, "GET", "/n/\ufffd\ufffd")
