"""Patterns -> NGINX text: an http-level file of ``map`` blocks and a one-line location-level gate.

The *gate* design (DESIGN.md section 1): no location of the user's config changes. The decision is
a chain of maps, each one a hash lookup or a few regexes, evaluated lazily and only as far as needed:

1. ``$uri`` hash: the debugger console path -> 0 (re-checked with its exact case, as the debugger
   compares it); a static rule -> its method set -> case check;
2. on a miss the same map reads the first path segment (a named capture) -> hash on it -> the
   *shape class* of that segment's dynamic rules -> one small anchored regex;
3. rules whose first segment is dynamic (catch-alls such as ``/<username>``) -> 1, else 0.

Every regex that allows also reads ``$args`` (after the last space of its subject: NGINX never lets
a raw space into the query) and refuses Werkzeug's ``__debugger__`` argument in any encoding, so
the debugger check costs no map of its own. With strict paths (the default) they read the raw
``$request_uri`` there instead, and also refuse a raw path that the app would route differently from
``$uri`` (``%2F``, ``%2E``, dot segments, ``//``, ``#``): again no map of its own. A raw path equal to the ``$uri``
the dynamic rules matched is clean where NGINX merges slashes (``_SAME_TAIL``): one comparison instead of the test.
Regexes capture only the first segment (named) and, strict, what the dynamic rules matched (``\1``: NGINX's ``$1``
is not the user's after the maps, which the state checks, ``nginxconf``), and every regex is anchored. A hash hit on
a static key is re-checked for upper-case letters, because NGINX map hashes ignore case while Werkzeug does not. The gate is
``if ($phoenix_<app>_allow = 0) { return 404; }``.

When the configuration allows it, the gate file also holds the *fast path* (``fastpath.py``): nested
locations that accept the commonest allowed requests of dynamic routes without the maps.
"""

from __future__ import annotations

import functools
import os
import re
from collections import defaultdict
from typing import Callable
from dataclasses import dataclass

from . import linemap
from .fastpath import GROUP, GROUP_JIT, FastPath, render_locations
from .dialect import literal
from .rules import Compiled, Pattern, _ascii_lower, hash_key_fits

#: NGINX rejects a config token longer than 4094 bytes ("too long parameter")
MAX_TOKEN = 3000

_DEBUGGER_KEY = "".join(
    "(?:_|%5f)" if ch == "_" else f"(?:{ch}|%{ord(ch):x})" for ch in "__debugger__"
)
#: appended to every allowing regex over "... $uri $args": the query, without __debugger__
_ARGS_TAIL = r" (?![^ ]*(?i:" + _DEBUGGER_KEY + r"))[^ ]*\z"
#: strict paths: the raw path part of ``$request_uri`` (the target the app gets) must route as the
#: ``$uri`` NGINX decided on, which NGINX decoded (``%XX``), resolved (``.``/``..``) and merged (``//``).
#: So it may hold no encoded slash or dot (``%2F``, ``%2E``), no dot segment, no ``//`` and no ``#``;
#: its query is then the same as ``$args``, without __debugger__. One possessive iteration per "/" or
#: "%" and a possessive run of the characters between, so a clean path costs little per segment.
_CLEAN_PATH = r"(?:(?:/(?!/|\.\.?(?:/|\?|\z))|%(?!2[eEfF]))[^/%#? ]*+)*+"
#: a raw query without __debugger__ (after the path of ``$request_uri``, or of the request line: ``linemap``)
_QUERY_PART = r"(?:\?(?![^ ]*(?i:" + _DEBUGGER_KEY + r"))[^ ]*)?"
_QUERY = _QUERY_PART + r"\z"
_RAW_TAIL = r" " + _CLEAN_PATH + _QUERY
#: the same, when NGINX merges slashes (``merge_slashes``, on by default): a raw path that *is* the ``$uri`` the
#: rule matched (``\1``, the group around the rules) is clean, and comparing it costs PCRE's interpreter a
#: fraction of the clean-path test: -1.4K instructions per dynamic request the maps decide without JIT, -0.1K with
#: it (bench/README.md). Used by the dynamic rules' regexes; the static rules' case check tests the raw path.
#: NGINX decodes every %-escape, resolves dot segments and merges ``//`` into ``$uri``, and cuts it at ``#``, so a
#: raw path equal to it holds none of them; only with ``merge_slashes off`` may both hold ``//``, and there this
#: tail is not used.
_SAME_TAIL = r" (?:\1|" + _CLEAN_PATH + ")" + _QUERY
#: the subject of every regex map that decides on method, path and query (and, strict, the raw path)
_SUBJECT = "$request_method $uri $args"
_STRICT_SUBJECT = "$request_method $uri $request_uri"


@dataclass(frozen=True)
class Rendered:
    """The two generated files."""

    maps: str
    gate: str
    variable: str
    #: what the fast path covers, for comments and logs ("" when it is off)
    fast: str = ""
    #: the request-line test of gates without the fast path (``linemap``), None where there is none
    line: linemap.Line | None = None


def app_id(name: str) -> str:
    """The app's id in NGINX variable names: the maps file's name without its extension and ``.allowlist``.

    ``/etc/nginx/conf.d/myapp.allowlist.conf`` -> ``myapp`` (``$phoenix_myapp_allow``): readable, and stable
    for a given file name. At most 22 characters, cut at the end: the id also names a PCRE capture group
    (``phoenix_<id>_s``), and those are limited to 32. Two maps files of the same name in one http block
    would share variables (NGINX accepts that silently): ``manage.plan`` refuses it.
    """
    base = os.path.basename(name)
    stem = os.path.splitext(base)[0] if "." in base.lstrip(".") else base
    if stem.lower().endswith(".allowlist"):
        stem = stem[: -len(".allowlist")]
    return re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")[:22].strip("_") or "app"


def quote(token: str) -> str:
    """Quote any string as one NGINX config token (backslash and double quote escaped)."""
    if "\\" not in token and '"' not in token:  # most paths: as they are
        return '"' + token + '"'
    return '"' + token.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _methods_regex(methods: tuple[str, ...] | None) -> str:
    if methods is None:
        return "[^ ]+"
    return "(?:" + "|".join(re.escape(m) for m in methods) + ")"


def _alternations(patterns: list[Pattern], tail: str = _ARGS_TAIL) -> list[str]:
    """Fold a node's regex patterns into as few anchored regexes as fit in one NGINX token.

    Their group captures when the tail reads it (``\\1``, ``_SAME_TAIL``: the raw path compared with what it
    matched); it is the regex's first, as the rules' own groups never capture (``dialect``)."""
    by_methods: dict[tuple[str, ...] | None, list[Pattern]] = defaultdict(list)
    for p in patterns:
        by_methods[p.methods].append(p)
    out: list[str] = []
    for methods, group in by_methods.items():
        head = "^" + _methods_regex(methods) + (" (" if "\\1" in tail else " (?:")  # the tail reads the group
        chunk: list[str] = []
        base = len(head) + len(tail) + len("~)")
        size = base
        for p in group:
            assert p.regex is not None
            if chunk and size + len(p.regex) + 1 > MAX_TOKEN:
                out.append("~" + head + "|".join(chunk) + ")" + tail)
                chunk, size = [], base
            chunk.append(p.regex)
            size += len(p.regex) + 1
        if chunk:
            out.append("~" + head + "|".join(chunk) + ")" + tail)
    return out


@functools.lru_cache(maxsize=8)
def _console_probes(console_paths: tuple[str, ...]) -> tuple[list[str], set[str]]:
    probes = [c for path in console_paths for c in (path, "/" + path, "//" + path)]
    return probes, {_ascii_lower(c.lstrip("/").split("/")[0]) for c in probes}


def _under_console(p: Pattern, heads: set[str]) -> bool:
    """Only a rule with no static first segment, or with a console path's, can match a console path."""
    return not p.prefix or _ascii_lower(p.prefix[0]) in heads


def console_check(compiled: Compiled) -> Callable[[Pattern], bool]:
    """``check(pattern)``: could the pattern let a console path through? Such rules stay with the map chain."""
    heads = _console_probes(compiled.console_paths)[1]

    def check(p: Pattern) -> bool:  # most rules are not under a console's segment: no list made for them
        return _under_console(p, heads) and _matches_console([p], compiled)

    return check


def _matches_console(patterns: list[Pattern], compiled: Compiled) -> bool:
    """Could one of ``patterns`` let a console path through (so that it must be refused first)?"""
    probes, heads = _console_probes(compiled.console_paths)
    candidates = [p for p in patterns if _under_console(p, heads)]
    return any(compiled.matches(p, c) for p in candidates for c in probes)


def render(compiled: Compiled, name: str, status: int = 404, header: str = "",
           fast: FastPath | None = None, strict_paths: bool = True,
           intercept_errors: tuple[str, ...] = (), merge_slashes: bool = False, line: bool | None = None) -> Rendered:
    """Render the maps file and the gate for the app called ``name`` (with the fast path if given).

    ``strict_paths`` refuses requests whose raw path the app would route differently from the
    normalised ``$uri`` NGINX decided on (see ``_RAW_TAIL``). ``intercept_errors`` names the
    ``*_pass`` directives of the app's locations whose 500 answers NGINX replaces with its own error
    page (see :func:`intercept_lines`); empty: the app's 500s pass through. ``merge_slashes=True``: no server of
    the configuration has ``merge_slashes off`` (``Inspection.merge_slashes_off``, read by ``manage.plan``), so a raw
    path equal to ``$uri`` holds no ``//`` and needs no test of its own (``_SAME_TAIL``); the default tests each
    raw path, right for any configuration. ``line``: make the request-line test (``linemap``: ``Rendered.line``, and
    the map of its second regex if it has one) that a gate without the fast path makes, with the same answers as
    ``..._allow``; by default when this gate has no fast path (``manage.plan`` also asks for it when one of the
    gate's per-location copies has none).
    """
    if line is None:
        line = fast is None or fast.jit
    aid = app_id(name)
    v = f"$phoenix_{aid}"
    allow = f"{v}_allow"
    # strict paths read the raw target instead of $args, in the same regexes: no map of their own
    # (the static rules' case check tests the raw path itself: compared with a group around [^A-Z]*, which PCRE
    # backtracks through to the last space, it cost as much without JIT and +0.17K with it)
    if strict_paths:
        tail, case_tail, subject, query = _SAME_TAIL if merge_slashes else _RAW_TAIL, _RAW_TAIL, _STRICT_SUBJECT, \
            "$request_uri"
    else:
        tail, case_tail, subject, query = _ARGS_TAIL, _ARGS_TAIL, _SUBJECT, "$args"
    lines: list[str] = [
        f"# Phoenix allowlist for {name} (generated by nginx_whitelist; edits are overwritten).",
        *(f"# {line}" for line in header.splitlines()),
        f"# Include in the http context. Gate every location that reaches the app with {allow}.",
        "",
    ]

    def block(source: str, var: str, entries: list[tuple[str, str]], default: str, comment: str) -> None:
        lines.extend((f"# {comment}", f"map {quote(source)} {var} {{", f"    default {default};"))
        lines.extend([f"    {key} {value};" for key, value in entries])
        lines.extend(("}", ""))

    # 1. static rules: one case-insensitive hash lookup, then method set, then a case check
    exact = [p for p in compiled.patterns if p.regex is None]
    merged: dict[str, tuple[str, ...] | None] = {}  # a path listed by several rules: union of methods
    for p in exact:
        for path in p.exact:
            if path in compiled.console_paths:
                continue
            if path not in merged:
                merged[path] = p.methods if p.methods is None else tuple(sorted(p.methods))
            elif p.methods is None or merged[path] is None:
                merged[path] = None
            else:
                merged[path] = tuple(sorted(set(merged[path]) | set(p.methods)))
    set_var = {m: f"{v}_m{i}" for i, m in enumerate(sorted(set(merged.values()), key=lambda m: m or ()))}
    # the hash ignores case, the debugger does not: /Console is the app's (a /<slug> may route it)
    entries = [(quote(c), f"{v}_console") for c in compiled.console_paths if hash_key_fits(c)]
    entries += [(quote(path), set_var[methods]) for path, methods in merged.items()]
    # a miss reads the first segment into $..._s (a named capture) on the way: one map fewer
    seg_regex = quote("~^(?<" + v[1:] + "_s>/[^/]*)")
    entries.append((seg_regex, f"{v}_dyn"))
    block("$uri", allow, entries, f"{v}_any",
          f"{len(merged)} static paths (hash); the debugger console is refused")
    for methods, var in set_var.items():
        if methods is None:
            block("$request_method", var, [], f"{v}_case", "static rules for any method")
        else:
            block("$request_method", var, [(m, f"{v}_case") for m in methods], f"{v}_dynf",
                  "methods of these static rules")
    if compiled.console_paths:
        console = "|".join(literal(c) for c in compiled.console_paths)
        block("$uri", f"{v}_console", [(quote(f"~^(?:{console})\\z"), "0")], f"{v}_dynf",
              "the debugger console, compared exactly as the debugger does; other cases go on as a miss")
    block(f"$uri {query}", f"{v}_case", [(quote("~^[^A-Z]*" + case_tail), "1")], f"{v}_dynf",
          "the hash ignores case, Werkzeug does not: upper-case variants (and __debugger__) go on to the regexes")
    # 2. dynamic rules: a hash on the first path segment picks a *shape class*. Segments whose rules
    # have the same remainders (e.g. /users/<int:id> and /posts/<int:id>) share one map and one small
    # regex in which the (already hashed) first segment is a wildcard. Classes stay few however many
    # routes there are, and NGINX zeroes every variable's slot on every request, so few is cheap.
    dynamic = [p for p in compiled.patterns if p.regex is not None]
    groups: dict[str, list[Pattern]] = defaultdict(list)
    rest: list[Pattern] = []
    for p in dynamic:
        head = literal("/" + p.prefix[0]) if p.prefix and hash_key_fits("/" + p.prefix[0]) else None
        if head and p.regex.startswith(head):
            groups[_ascii_lower(p.prefix[0])].append(p)  # the hash key: NGINX ignores ASCII case
        else:
            rest.append(p)
    classes: dict[tuple, list[str]] = defaultdict(list)
    for key, pats in groups.items():
        if all(p.prefix[0] == key for p in pats):
            # lower-case segment: the hash matched it up to case, [^/A-Z]* re-checks the case
            cut = len(literal("/" + key))
            shape = tuple(sorted({(p.methods or (), "/[^/A-Z]*" + p.regex[cut:]) for p in pats}))
            classes[(None, shape)].append(key)
        else:  # upper-case letters in the segment: a class of its own, segments spelled out
            shape = tuple(sorted({(p.methods or (), p.regex) for p in pats}))
            classes[(key, shape)].append(key)
    block("$uri", f"{v}_dynf", [(seg_regex, f"{v}_dyn")], f"{v}_any",
          "a static path with another method or case: read the first segment, then as below")
    class_var = {key: f"{v}_c{i}" for i, key in enumerate(sorted(classes, key=lambda k: (k[0] or "", k[1])))}
    entries = [(quote("/" + seg), class_var[key]) for key, segs in classes.items() for seg in segs]
    block(f"{v}_s", f"{v}_dyn", sorted(entries), f"{v}_any",
          f"{len(dynamic) - len(rest)} dynamic rules under {len(groups)} first segments (hash) in "
          f"{len(classes)} shape classes")
    for key, var in class_var.items():
        pats = [Pattern(rule="", methods=m or None, regex=body) for m, body in key[1]]
        members = [p for seg in classes[key] for p in groups[seg]]
        entries = [(quote(r), "1") for r in _alternations(pats, tail)]
        if _matches_console(members, compiled):
            entries.insert(0, (quote(_console_regex(compiled)), "0"))
        block(subject, var, entries, f"{v}_any",
              "segments " + ", ".join(f"/{seg}" for seg in sorted(classes[key]))[:160])
    # 3. rules whose first segment is dynamic
    entries = [(quote(r), "1") for r in _alternations(rest, tail)]
    if _matches_console(rest, compiled):
        entries.insert(0, (quote(_console_regex(compiled)), "0"))
    block(subject, f"{v}_any", entries, "0",
          f"{len(rest)} rules whose first segment is dynamic; everything else is refused")
    # the fast path's fallback (the same maps file whether it is used or not): non-empty when the maps refuse
    block(allow, f"{v}_deny", [(quote("0"), "1")], '""', "the fast path's fallback: non-empty when the maps refuse")
    test: linemap.Line | None = None
    if line:
        by_methods = linemap.targets(compiled, console_check(compiled))
        regexes = linemap.regexes(by_methods, _QUERY_PART, quote, linemap.MAX_REGEXES)
        if regexes:
            test = linemap.test(regexes, v, sum(map(len, by_methods.values())))
        elif regexes is None:
            lines.extend((f"# no request-line test: its rules would need more than {linemap.MAX_REGEXES} regexes, tried "
                          "in turn for every request it does not take (linemap.MAX_REGEXES)", ""))
    if test and test.count > 1:
        block("$request", f"{v}_line", [(r, '""') for r in regexes[1:]], f"{v}_deny",
              "the request-line test's second regex (a gate without the fast path tests the first): empty where it "
              "takes the request, else the chain's answer")
    gate, summary = render_gate(compiled, name, status, fast, strict_paths, intercept_errors, line=test)
    return Rendered(maps="\n".join(lines), gate=gate, variable=allow, fast=summary, line=test)


def render_gate(compiled: Compiled, name: str, status: int = 404, fast: FastPath | None = None,
                strict_paths: bool = True, intercept_errors: tuple[str, ...] = (), copy_for: str = "",
                line: linemap.Line | None = None) -> tuple[str, str]:
    """The gate file for the maps file ``name`` (with the fast path if given), and what the fast path covers.

    ``copy_for``: the location a per-location copy of the gate is for (``nginxconf.location_gates``). ``line``: the
    request-line test (``render``'s ``Rendered.line``), which a gate without the fast path makes (``linemap``).
    """
    v = f"$phoenix_{app_id(name)}"
    gate = [
        f"# Phoenix allowlist gate for {name} (generated by nginx_whitelist; edits are overwritten).",
        f"# The copy of the gate for {copy_for}: include it there only." if copy_for else
        "# Include inside every location that passes requests to the app.",
        *intercept_lines(intercept_errors),
    ]
    # with pcre_jit on, one JIT-compiled regex in the location costs less than the nested locations, whose tree
    # NGINX walks and whose own regex it runs: +1.1K instead of +1.2-1.4K instructions per request, and none of
    # their memory (bench/README.md, session 11)
    tested = line is not None and (fast is None or (fast.jit and line.count == 1))
    if tested:
        gate += linemap.gate_lines(line, v, int(status))
    else:
        gate.append(f"if ({v}_allow = 0) {{ return {int(status)}; }}")
    summary = ""
    if tested and fast is not None:
        summary = (f"request-line test: {line.rules} rules in one regex in location {fast.parent} (pcre_jit on: "
                   "cheaper than nested locations)")
    elif fast is not None:
        nested, count, prefixes, exacts, direct = render_locations(compiled, fast, app_id(name), status, quote,
                                                                   console_check(compiled), strict_paths,
                                                                   bool(intercept_errors))
        if count:
            kinds = [f"{n} {kind}" for n, kind in ((prefixes, "prefix"), (exacts, "exact"), (direct, "regex")) if n]
            summary = (f"fast path: {count} rule{'s' if count != 1 else ''} in "
                       f"{', '.join(kinds[:-1]) + ' and ' if len(kinds) > 1 else ''}{kinds[-1]} location"
                       f"{'s' if prefixes + exacts + direct != 1 else ''} inside location {fast.parent}")
            shared = (f"pcre_jit on: up to {GROUP_JIT} rules share a location, static ones too" if fast.jit else
                      f"pcre_jit off: up to {GROUP} dynamic rules share a location (with pcre_jit on, {GROUP_JIT})")
            gate += ["", f"# {summary}; requests with a query string or another method ask the maps", f"# {shared}",
                     *nested]
    return "\n".join(gate) + "\n", summary


#: in the request NGINX's error_page makes after an intercepted 500: answer with NGINX's own page
INTERCEPTED = "if ($status = 500) { return 500; }"


def intercept_lines(directives: tuple[str, ...]) -> list[str]:
    """The gate's lines that make NGINX answer the app's 500s with its own error page.

    ``*_intercept_errors on`` hands an upstream's 500 to ``error_page``; ``error_page 500 $uri``
    redirects internally to the same path, hence the same location, where ``$status`` is 500 (it is
    000 before any answer) and the gate returns NGINX's own 500 before the maps or the app are asked.
    NGINX does not apply error_page twice (``recursive_error_pages off``), so that 500 is NGINX's
    built-in page. The debugger's traceback page, which carries its SECRET, never leaves NGINX.
    """
    if not directives:
        return []
    names = sorted({d.replace("_pass", "_intercept_errors") for d in directives})
    return [*(f"{n} on;" for n in names), "error_page 500 $uri;", INTERCEPTED]


def _console_regex(compiled: Compiled) -> str:
    alts = "|".join(literal(p.lstrip("/")) for p in compiled.console_paths)
    return rf"~^[^ ]+ /+(?:{alts}) [^ ]*\z"
