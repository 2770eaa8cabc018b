"""The request-line test: the fast path of a gate that can hold no nested locations.

A gate file included in several locations (``location /`` and ``location /api/``) cannot hold the fast path
(``fastpath.choose_each``: NGINX refuses a nested prefix location outside its parent's name), nor can one whose
location uses ``rewrite`` and the like. There the maps decided every request: for a dynamic route two regexes,
two hash lookups and the subjects built for them, +6.1K instructions per request without JIT, 1.05-1.08 times
the CPU of the same config without the allowlist (bench/README.md). Such a gate decides the commonest allowed
requests with one regex on the request line NGINX already holds, as the fast path's locations do::

    set $phoenix_<app>_fast "";
    if ($request !~ "^(?:(?:GET|HEAD|OPTIONS) /(?:d(?:1/[0-9]+|3/[0-9]+)|login)|POST /login)(?:\\?<query>)? HTTP/") {
        set $phoenix_<app>_fast $phoenix_<app>_deny;   # anything else: the full map chain decides, as before
    }
    if ($phoenix_<app>_fast) { return 404; }

``$request`` is ``<method> <raw target> <protocol>``.
A request matches only when its method is one of a rule's and its raw target is matched by the rule's regex
narrowed to targets NGINX leaves as they are (``rules.Pattern.raw``, a static path written out where it is one,
``fastpath._GROUPABLE``): no %-escape, no dot segment, no ``//``, so the target is ``$uri`` itself and the rule's
own regex matches ``$uri`` too; the query after it is checked for Werkzeug's ``__debugger__`` in any encoding as
the maps check it (``render._QUERY``'s test), and a space followed by ``H`` ends the target in NGINX's parser
(``fastpath._PROTOCOL``). So the test only ever *accepts* what the chain would accept; everything else (an escape,
another method, a path no rule has, a console path) gets the chain's answer (``..._deny``: non-empty where the maps
refuse). Rules that could let a console path through stay with the chain, as they do in the fast path.

The rules' targets are one alternation per method set, their common leading literals written once
(``fastpath.factored``), cut into regexes that fit one NGINX token: the gate tests the first, and where there is a
second, falls back to ``map $request $phoenix_<app>_line`` (``""`` where it matches, else ``..._deny``). Measured
with callgrind on the layout with one gate file in two locations (bench/allowlist_layouts.py, ``multi``): a dynamic
route +6.1K -> +2.5K instructions per request without JIT, +4.8K -> +1.1K with it (1,000 routes). Session 10 had
the first regex in a map too (+3.2K / +1.8K): NGINX's map lowercases its whole subject into a new buffer and looks
it up in its hash before it tries a regex, even where it has no key. Rules that need more than ``MAX_REGEXES``
regexes get no test (1,000 routes of random words need 9). Dispatching them on the first segment (a capture, a
hash, a regex per shape class, as the chain does) was measured and not kept: +6.0K / +4.6K against the chain's
+6.5K / +5.2K (bench/README.md, session 11).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .dialect import literal
from .fastpath import _GROUPABLE, _PROTOCOL, MAX_TOKEN, _sequence, factored
from .rules import Compiled, Pattern

#: at most this many regexes: they are tried in turn, each a call into PCRE (about 0.5K instructions without JIT
#: even where it fails at once), for every request the test does not take (a refused path, an escape). The rules
#: of the benchmark's app fit one at 5,000 routes (their names factor well); 1,000 routes of random words need 9,
#: 5,000 need 39: there is no test then, and such gates read the chain, as before
MAX_REGEXES = 2


def _methods(methods: tuple[str, ...] | None) -> str:
    """The request line's method for a rule: any of its own (sorted; GET first, most requests are GETs)."""
    if methods is None:
        return "[^ ]+"
    ordered = sorted(methods, key=lambda m: (m != "GET", m))
    return ordered[0] if len(ordered) == 1 else "(?:" + "|".join(ordered) + ")"


def targets(compiled: Compiled, console: Callable[[Pattern], bool]) -> dict[str, list[str]]:
    """The raw targets the map may accept, by the request line's method regex (the biggest set first)."""
    by_methods: dict[str, list[str]] = {}
    for p in compiled.patterns:
        if p.regex is None:
            raws = [literal(path) for path in p.exact if path not in compiled.console_paths and _GROUPABLE.match(path)]
        elif p.raw is not None and not console(p):
            raws = [p.raw]
        else:
            continue
        if raws:
            by_methods.setdefault(_methods(p.methods), []).extend(raws)
    return dict(sorted(by_methods.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def regexes(by_methods: dict[str, list[str]], query: str, quote: Callable[[str], str],
            limit: int | None = None) -> list[str] | None:
    """The test's regexes (quoted NGINX map tokens, ``~`` first, each at most ``MAX_TOKEN`` long): per method set,
    its targets' alternation cut where a token is full, and what is left of one set in the same token as the next
    (they are tried in turn, each a call into PCRE); ``query`` is what may follow a target before the protocol.
    With ``limit``: None where they would be more than that many, found without cutting them all (5,000 routes of
    random words need 39, whose cutting took 0.3 s): once more are full, or at once where each method set's rules
    factored whole need more than ``limit + 1`` tokens' worth (cut into runs, they only lose common heads)."""

    def token(bodies: list[str]) -> str:
        line = bodies[0] if len(bodies) == 1 else "(?:" + "|".join(bodies) + ")"
        return quote("~^" + line + query + _PROTOCOL)

    def body(method: str, raws: list[str]) -> str:
        return method + " " + _sequence(factored(raws))

    bodies: list[str] = []
    full = 0
    runs = {method: sorted(set(raws)) for method, raws in by_methods.items()}
    wholes = {method: body(method, raws) for method, raws in runs.items()}
    if limit is not None and sum(map(len, wholes.values())) > (limit + 1) * MAX_TOKEN:
        return None
    for method, raws in runs.items():
        lo = 0
        while lo < len(raws):
            if limit is not None and full > limit:
                return None
            whole = wholes[method] if lo == 0 else body(method, raws[lo:])
            if len(token([whole])) <= MAX_TOKEN:  # the common case (the rules factor well): one factoring
                bodies.append(whole)
                break
            if len(token([body(method, raws[lo:lo + 1])])) > MAX_TOKEN:
                lo += 1  # one rule too long for a token: the chain decides its requests
                continue
            # the longest run from lo that fits: doubling, then bisection (the factored text is not additive)
            good, step = lo + 1, 1
            while good + step < len(raws) and len(token([body(method, raws[lo:good + step])])) <= MAX_TOKEN:
                good, step = good + step, step * 2
            bad = min(good + step, len(raws))  # the whole run does not fit
            while bad - good > 1:
                mid = (good + bad) // 2
                if len(token([body(method, raws[lo:mid])])) <= MAX_TOKEN:
                    good = mid
                else:
                    bad = mid
            bodies.append(body(method, raws[lo:good]))
            full += 1
            lo = good
    out: list[str] = []
    packed: list[str] = []
    for b in bodies:
        if packed and len(token(packed + [b])) > MAX_TOKEN:
            out.append(token(packed))
            packed = []
        packed.append(b)
    if packed:
        out.append(token(packed))
    return out


@dataclass(frozen=True)
class Line:
    """The request-line test of a gate without the fast path."""

    #: the first regex (a quoted NGINX token), tested by the gate itself
    regex: str
    #: what the gate asks where it does not match: the map of the second regex (``$phoenix_<app>_line``) or the
    #: chain's refusal (``$phoenix_<app>_deny``: non-empty where the maps refuse)
    fallback: str
    #: how many rules' targets the regexes hold, and how many regexes there are
    rules: int
    count: int


def test(regexes: list[str], v: str, rules: int) -> Line:
    """The test of ``regexes`` (``regexes``' map tokens, ``~`` first): the gate tests the first, a map the second."""
    first = regexes[0]
    return Line(first[0] + first[2:], f"{v}_line" if len(regexes) > 1 else f"{v}_deny", rules, len(regexes))


def gate_lines(line: Line, v: str, status: int) -> list[str]:
    """The gate's test (``v`` is ``$phoenix_<app>``): the regex in an ``if`` of the rewrite module, which unlike a
    map does not lowercase and hash the request line before its regexes (-0.63K instructions per request, with or
    without JIT); ``..._fast`` is set first, so that NGINX has no uninitialised variable to warn of."""
    return [
        f"# request-line test: {line.rules} rules' commonest requests (method, raw target NGINX leaves as it is, query "
        f"without __debugger__) in {line.count} regex{'es' if line.count != 1 else ''} on the request line; anything "
        "else asks the maps",
        f'set {v}_fast "";',
        f"if ($request !~ {line.regex}) {{ set {v}_fast {line.fallback}; }}",
        f"if ({v}_fast) {{ return {status}; }}",
    ]


__all__ = ["MAX_REGEXES", "Line", "gate_lines", "regexes", "targets", "test"]
