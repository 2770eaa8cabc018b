"""Werkzeug as the oracle: build a Map from rule strings and ask it what it would do."""

from __future__ import annotations

from hypothesis import strategies as st
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, RequestRedirect, Rule

from phoenix.allowlist import extract_routes
from phoenix.allowlist.rules import Compiled, compile_routes

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE")


def build(rules: list[tuple[str, tuple[str, ...] | None, bool]]) -> Map:
    return Map([Rule(r, methods=m, strict_slashes=s, endpoint=f"e{i}") for i, (r, m, s) in enumerate(rules)])


def werkzeug_allows(url_map: Map, method: str, path: str) -> bool:
    """True when the app would route the request, or answer it with its own redirect."""
    adapter = url_map.bind("localhost")
    try:
        adapter.match(path, method=method)
    except RequestRedirect:
        return True
    except (NotFound, MethodNotAllowed):
        return False
    return True


def compiled_for(url_map: Map) -> Compiled:
    table = extract_routes.describe(url_map)
    table["app"] = "generated"
    return compile_routes(table)


# --- strategies -------------------------------------------------------------------------------
STATIC = st.sampled_from(["a", "b", "ab", "x1", "é", "v", "A", "item"])
CONVERTER = st.sampled_from([
    "<int:{v}>", "<{v}>", "<string(length=2):{v}>", "<string(minlength=2,maxlength=3):{v}>",
    # int(fixed_digits=N) is left out here: see test_to_python_validation_is_the_apps_business
    "<float:{v}>", "<any(ab,b):{v}>", "<int(signed=True):{v}>",
    "<uuid:{v}>", "v<int:{v}>", "<{v}>-x",
])


@st.composite
def rule_strings(draw) -> str:
    n = draw(st.integers(1, 3))
    segs = []
    for i in range(n):
        if draw(st.booleans()):
            segs.append(draw(STATIC))
        else:
            segs.append(draw(CONVERTER).format(v=f"v{i}"))
    if draw(st.integers(0, 5)) == 0:
        segs.append("<path:rest>")
    rule = "/" + "/".join(segs)
    if draw(st.booleans()):
        rule += "/"
    return rule


@st.composite
def rule_sets(draw):
    rules = draw(st.lists(rule_strings(), min_size=1, max_size=6, unique=True))
    out = []
    for r in rules:
        methods = draw(st.sampled_from([("GET",), ("GET", "POST"), ("PUT",), None]))
        out.append((r, methods, draw(st.booleans())))
    return out


SEGMENT = st.one_of(
    STATIC, st.sampled_from(["1", "12", "-3", "1.5", "ab", "b", "zz", "éé", "aé", "12345678-1234-1234-1234-123456789abc",
                             "v7", "q-x", "00"]),
    st.text(alphabet="ab1-é", min_size=1, max_size=4),
)


@st.composite
def paths(draw) -> str:
    segs = draw(st.lists(SEGMENT, min_size=0, max_size=4))
    path = "/" + "/".join(segs)
    if segs and draw(st.booleans()):
        path += "/"
    return path
