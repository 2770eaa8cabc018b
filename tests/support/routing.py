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
    # what NGINX's prefix locations get wrong first: a static rule equal to a rule's static prefix
    # without its slash (/a beside /a/<int:v>), and catch-alls over those prefixes (/<v>, /<path:p>)
    for head in sorted({"/" + "/".join(p) for p in map(static_prefix, rules) if p}):
        if draw(st.integers(0, 2)) == 0 and head not in rules:
            rules.append(head)
    if draw(st.integers(0, 3)) == 0:
        rules.append(draw(st.sampled_from(["/<c>", "/<path:c>", "/<c>/", "/<c>/<path:d>"])))
    rules = list(dict.fromkeys(rules))
    out = []
    for r in rules:
        methods = draw(st.sampled_from([("GET",), ("GET", "POST"), ("PUT",), None]))
        out.append((r, methods, draw(st.booleans())))
    return out


def static_prefix(rule: str) -> tuple[str, ...]:
    """The complete static segments a rule starts with (those a fast-path ``^~`` prefix is made of)."""
    segs = rule.split("/")[1:-1]
    out = []
    for seg in segs:
        if "<" in seg:
            break
        out.append(seg)
    return tuple(out)


def prefix_probes(rules: list[tuple[str, tuple[str, ...] | None, bool]]) -> list[str]:
    """Each static prefix of the rules with and without its slash: where NGINX redirects on its own."""
    heads = {"/" + "/".join(p) for p in (static_prefix(r) for r, _, _ in rules) if p}
    return sorted(heads | {h + "/" for h in heads})


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
