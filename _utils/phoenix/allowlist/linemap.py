"""The request-line map: the fast path of a gate that can hold no nested locations.

A gate file included in several locations (``location /`` and ``location /api/``) cannot hold the fast path
(``fastpath.choose_each``: NGINX refuses a nested prefix location outside its parent's name), nor can one whose
location uses ``rewrite`` and the like. There the maps decided every request: for a dynamic route two regexes,
two hash lookups and the subjects built for them, +6.1K instructions per request without JIT, 1.05-1.08 times
the CPU of the same config without the allowlist (bench/README.md). This map decides the commonest allowed
requests with one regex on the request line NGINX already holds, as the fast path's locations do::

    map $request $phoenix_<app>_line {
        default $phoenix_<app>_allow;              # anything else: the full map chain decides, as before
        "~^(?:(?:GET|HEAD|OPTIONS) /(?:d(?:1/[0-9]+|3/[0-9]+)|login)|POST /login)(?:\\?<query>)? HTTP/" 1;
    }

and such a gate reads ``if ($phoenix_<app>_line = 0)``. ``$request`` is ``<method> <raw target> <protocol>``.
A request matches only when its method is one of a rule's and its raw target is matched by the rule's regex
narrowed to targets NGINX leaves as they are (``rules.Pattern.raw``, a static path written out where it is one,
``fastpath._GROUPABLE``): no %-escape, no dot segment, no ``//``, so the target is ``$uri`` itself and the rule's
own regex matches ``$uri`` too; the query after it is checked for Werkzeug's ``__debugger__`` in any encoding as
the maps check it (``render._QUERY``'s test), and a space followed by ``H`` ends the target in NGINX's parser
(``fastpath._PROTOCOL``). So the map only ever *accepts* what the chain would accept; everything else (an escape,
another method, a path no rule has, a console path) gets the chain's answer through its default. Rules that could
let a console path through stay with the chain, as they do in the fast path.

The rules' targets are one alternation per method set, their common leading literals written once
(``fastpath.factored``), cut into regexes that fit one NGINX token, which the map tries in turn. Measured with
callgrind on the layout with one gate file in two locations (bench/allowlist_layouts.py, ``multi``): a dynamic
route +6.1K -> +3.2K instructions per request without JIT, +4.8K -> +1.8K with it (1,000 routes).

Rules that need more than ``MAX_REGEXES`` regexes (names that do not factor: 1,000 routes of random words need 9)
are dispatched on the raw target's first segment instead, as the chain dispatches ``$uri``'s (``render``, step 2)::

    map $request $phoenix_<app>_line {
        default $phoenix_<app>_allow;
        "~^[^ ]+ (?<phoenix_<app>_ls>/[^/? ]*)" $phoenix_<app>_lseg;   # the first segment, read on the way
    }
    map $phoenix_<app>_ls $phoenix_<app>_lseg {                        # a hash (ASCII case ignored)
        default $phoenix_<app>_l0;
        "/users" $phoenix_<app>_lc0;  "/posts" $phoenix_<app>_lc0;  ...
    }
    map $request $phoenix_<app>_lc0 {                                  # a shape class: one regex
        default $phoenix_<app>_l0;
        "~^GET /[^/A-Z ?]*(?:/[0-9]+|/new)(?:\\?<query>)? HTTP/" 1;
    }

Segments whose rules have the same remainders share a *shape class* and its regex, in which the (hashed) segment
is a wildcard without upper-case letters (the hash ignored case; a segment without them is the key). A %-escaped
segment is no key. Rules whose first segment is not a plain lower-case one (``/<lang>/about``, ``/About``) are the
``..._l0`` map's, the default of every class; any other request gets the chain's answer. A request the map takes
costs two regexes and a hash; one it does not take, up to ``MAX_REGEXES`` more than the chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Callable

from .dialect import literal
from .fastpath import _GROUPABLE, _PROTOCOL, MAX_TOKEN, _sequence, factored
from .rules import Compiled, Pattern, hash_key_fits

#: at most this many regexes: NGINX's map tries them in turn, each a call into PCRE (about 0.5K instructions without
#: JIT even where it fails at once), for every request the map does not take (a refused path, an escape). The rules
#: of the benchmark's app fit one at 5,000 routes (their names factor well); 1,000 routes of random words need 9,
#: 5,000 need 39: there the map is not written and such gates read the chain, as before
MAX_REGEXES = 2
#: the rules get one map without dispatch when they fit this many regexes (``MAX_REGEXES``; 0 dispatches every app,
#: as the property tests do to try the dispatch on every kind of rule)
FLAT_REGEXES = MAX_REGEXES


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


def regexes(by_methods: dict[str, list[str]], query: str, quote: Callable[[str], str], head: str = "") -> list[str]:
    """The map's regexes (quoted NGINX tokens, each at most ``MAX_TOKEN`` long): per method set, its targets'
    alternation cut where a token is full, and what is left of one set in the same token as the next (the map
    tries its regexes in turn, each a call into PCRE); ``query`` is what may follow a target before the protocol,
    ``head`` what precedes every target (a shape class's segment)."""

    def token(bodies: list[str]) -> str:
        line = bodies[0] if len(bodies) == 1 else "(?:" + "|".join(bodies) + ")"
        return quote("~^" + line + query + _PROTOCOL)

    def body(method: str, raws: list[str]) -> str:
        return method + " " + head + _sequence(factored(raws))

    bodies: list[str] = []
    for method, raws in by_methods.items():
        raws = sorted(set(raws))
        lo = 0
        while lo < len(raws):
            whole = body(method, raws[lo:])
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


#: the first segment of the raw target in the request line: what the dispatch hashes (a named capture, read on
#: the way by the line map's one regex) and, in a shape class's regex, the same segment without upper-case letters
_SEGMENT = "/[^/? ]*"
_CLASS_SEGMENT = "/[^/A-Z ?]*"


@dataclass(frozen=True)
class Block:
    """One map of the request-line map's: ``map <source> <var> { default <default>; <entries> }``."""

    source: str
    var: str
    entries: list[tuple[str, str]]
    default: str
    comment: str


def _split(compiled: Compiled, console: Callable[[Pattern], bool]) -> tuple[dict[str, dict[str, set[str]]],
                                                                             dict[str, list[str]]]:
    """The rules' targets by first segment (lower-case, a hash key) -> method regex -> remainders, and those of
    the rules whose first segment is not such a segment, by method regex."""
    by_segment: dict[str, dict[str, set[str]]] = {}
    other: dict[str, list[str]] = {}
    for p in compiled.patterns:
        method = _methods(p.methods)
        if p.regex is None:
            for path in p.exact:
                if path in compiled.console_paths or not _GROUPABLE.match(path):
                    continue
                cut = path.find("/", 1)
                segment, rest = (path, "") if cut < 0 else (path[:cut], path[cut:])
                if segment != "/" and hash_key_fits(segment):  # exact paths are lower-case (rules.Pattern)
                    by_segment.setdefault(segment, {}).setdefault(method, set()).add(literal(rest) if rest else "")
                else:
                    other.setdefault(method, []).append(literal(path))
        elif p.raw is not None and not console(p):
            segment = "/" + p.prefix[0] if p.prefix else ""
            head = literal(segment) if segment else ""
            # a plain segment: ASCII without upper-case letters (the hash ignores ASCII case), written as the raw
            # regex's own head, which has no "|" of its own at the top (cut there, it would mean another thing)
            if head and segment.isascii() and not any("A" <= c <= "Z" for c in segment) and hash_key_fits(segment) \
                    and p.raw.startswith(head) and _sequence(p.raw) == p.raw:
                by_segment.setdefault(segment, {}).setdefault(method, set()).add(p.raw[len(head):])
            else:
                other.setdefault(method, []).append(p.raw)
    return by_segment, other


def _ordered(by_methods: dict[str, list[str]]) -> dict[str, list[str]]:
    return dict(sorted(by_methods.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def blocks(compiled: Compiled, console: Callable[[Pattern], bool], query: str, quote: Callable[[str], str],
           v: str, allow: str) -> tuple[list[Block], str]:
    """The request-line map's maps (``$<v>_line`` first, whose default is ``allow``), or none and why not.

    The rules' targets in at most ``MAX_REGEXES`` regexes where they fit, else dispatched on the first segment
    (module docstring). ``v`` is ``$phoenix_<app>``."""
    by_methods = targets(compiled, console)
    count = sum(map(len, by_methods.values()))
    if not count:
        return [], ""
    flat = regexes(by_methods, query, quote)
    if len(flat) <= FLAT_REGEXES:
        return [Block("$request", f"{v}_line", [(r, "1") for r in flat], allow,
                      f"a gate without the fast path: {count} rules' commonest requests (method, raw target NGINX leaves "
                      f"as it is, query without __debugger__) in {len(flat)} regex{'es' if len(flat) != 1 else ''} on "
                      f"the request line; anything else asks {allow}")], ""
    by_segment, other = _split(compiled, console)
    rest = regexes(_ordered(other), query, quote) if other else []
    fallback = f"{v}_l0" if 0 < len(rest) <= MAX_REGEXES else allow
    classes: dict[tuple[tuple[str, tuple[str, ...]], ...], list[str]] = {}
    for segment, methods in by_segment.items():
        shape = tuple(sorted((m, tuple(sorted(rems))) for m, rems in methods.items()))
        classes.setdefault(shape, []).append(segment)
    out: list[Block] = []
    keys: list[tuple[str, str]] = []
    for shape, segments in sorted(classes.items(), key=lambda kv: min(kv[1])):
        tokens = regexes(_ordered({m: list(rems) for m, rems in shape}), query, quote, _CLASS_SEGMENT)
        if not tokens or len(tokens) > MAX_REGEXES:
            continue  # the chain (or l0) decides its requests
        var = f"{v}_lc{len(out)}"
        out.append(Block("$request", var, [(r, "1") for r in tokens], fallback,
                         "segments " + ", ".join(sorted(segments))[:160]))
        keys += [(quote(s), var) for s in segments]
    if not out and fallback == allow:
        return [], (f"no request-line map: its rules would need {len(flat)} regexes, tried in turn for every request it "
                    f"does not take (at most {MAX_REGEXES}: linemap.MAX_REGEXES), and dispatched on their first segments, none of "
                    f"their shape classes fits {MAX_REGEXES}")
    capture = quote("~^[^ ]+ (?<" + v[1:] + "_ls>" + _SEGMENT + ")")
    head = [Block("$request", f"{v}_line", [(capture, f"{v}_lseg")], allow,
                  f"a gate without the fast path: {count} rules need {len(flat)} regexes on the request line, more than "
                  f"{MAX_REGEXES}: the raw target's first segment (read on the way) picks the rules that may take it; "
                  f"anything else asks {allow}"),
            Block(f"{v}_ls", f"{v}_lseg", sorted(keys), fallback,
                  f"{len(keys)} first segments (hash) in {len(out)} shape classes")]
    if fallback != allow:
        out.append(Block("$request", fallback, [(r, "1") for r in rest], allow,
                         f"{sum(map(len, other.values()))} rules whose first segment is not a plain lower-case one"))
    return head + out, ""


__all__ = ["MAX_REGEXES", "Block", "blocks", "regexes", "targets"]
