"""The fast path: nested locations that let the commonest allowed requests skip the map chain.

The gate (``render.py``) decides every request with a chain of maps. For a dynamic route that costs
two regexes, two hash lookups and the building of their subjects, about +4.4K instructions per
request with ``pcre_jit`` (+6.1K without), 0.87 to 0.94 of the baseline throughput. NGINX's own
location tree is cheaper: a ``^~`` prefix location per leading static path (``/users/``), found by
the binary tree NGINX searches for every request anyway, holding one anchored regex location per
rule. Measured with callgrind at 1,000 routes: +1.8K (JIT) / +2.0K (no JIT), see bench/README.md.

The fast path only ever *accepts*; it never refuses anything the gate would let through::

    location ^~ "/users/" {                          # nested in the app's location, by the gate file
        location ~ "^(?:/users/(?:[0-9]+))\\z" {      # one rule
            uninitialized_variable_warn off;
            if ($request_uri != $uri) { set $phoenix_<app>_fast $phoenix_<app>_allow; }
            if ($request_method != GET) { set $phoenix_<app>_fast $phoenix_<app>_allow; }
            if ($phoenix_<app>_fast = 0) { return 404; }
            proxy_pass http://app;                   # the app location's own handler, copied
        }
        if ($phoenix_<app>_allow = 0) { return 404; }   # everything else under /users/: the gate
        proxy_pass http://app;
    }
    location = "/users" { if ($phoenix_<app>_allow = 0) { return 404; } proxy_pass http://app; }

The exact location is there because NGINX itself answers ``/users`` with ``301 Location: /users/`` (and
the request's Host) when a prefix location ending in ``/`` holds a ``*_pass``; the exact one is found
first, so ``/users`` gets the gate's answer like every other path.

A request is accepted without the maps only when its path matches a rule's regex, its method is that
rule's main method (GET when it has GET) and its raw target is its ``$uri``: no query string, so it
cannot carry Werkzeug's ``__debugger__``, and nothing NGINX decoded or normalised (strict paths; with
them off the test is ``if ($args)``). Any other request (a query, HEAD, another method, another path under the prefix)
asks the full map chain, so the decision is the gate's in every case.

NGINX inherits every directive of the app's location into nested locations except its content
handler, its rewrite-module directives and a few others, and a ``^~`` prefix stops NGINX from
trying the server's regex locations. So the fast path is only used when copying the handler is
exact: one location reaches the app, it includes the gate itself, it is a prefix location with one
``*_pass`` directive (a ``proxy_pass`` without a URI part) and nothing that nested locations would
lose, it has no nested locations of its own and its server has no regex locations. Otherwise
:func:`choose` says why and the gate alone decides, with the same result, only slower.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import crossplane

from .nginxconf import PASS_DIRECTIVES, Inspection
from .rules import Compiled, Pattern

#: directives of the app's location that nested locations do not inherit (rewrite module, try_files,
#: internal) or that would mean something else in a regex location (alias); limit_except to be safe
NOT_INHERITED = ("set", "rewrite", "return", "if", "break", "try_files", "limit_except", "internal", "alias")
#: NGINX rejects a config token longer than 4094 bytes
MAX_TOKEN = 3000


@dataclass(frozen=True)
class FastPath:
    """Where the fast path goes: inside the prefix location ``parent``, serving with ``handler``."""

    parent: str
    handler: str


def _has_uri_part(target: str) -> bool:
    """``proxy_pass http://app/x`` replaces the location prefix: not allowed in a regex location."""
    if "$" in target:
        return False  # with variables NGINX passes the evaluated URI as is, wherever it is
    rest = target.split("://", 1)[1] if "://" in target else target
    if rest.startswith("unix:"):
        return ":" in rest[5:]
    return "/" in rest


def choose(inspection: Inspection) -> tuple[FastPath | None, str]:
    """The fast path for this configuration, or ``None`` and the reason it cannot be used."""
    if len(inspection.locations) != 1:
        return None, f"{len(inspection.locations)} locations reach the app (the fast path needs exactly one)"
    loc = inspection.locations[0]
    where = loc.where()
    if not loc.gate_here:
        return None, f"{where} does not include the gate itself (its server does)"
    args = loc.args[1:] if loc.args[:1] == ["^~"] else loc.args
    if len(args) != 1 or args[0].startswith(("=", "~", "@")) or loc.args[0] in ("=", "~", "~*"):
        return None, f"{where} is not a prefix location"
    if loc.nested:
        return None, f"{where} has nested locations of its own ({loc.nested[0]})"
    if loc.server_regex:
        return None, (f"its server has regex locations ({loc.server_regex[0]}), which ^~ prefix locations "
                      "would take requests from")
    lost = sorted({name for name, _, _ in loc.own if name in NOT_INHERITED})
    if lost:
        return None, f"{where} uses {', '.join(lost)}, which nested locations would not keep as they are"
    handlers = [(name, a, in_if) for name, a, in_if in loc.own if name in PASS_DIRECTIVES]
    if len(handlers) != 1 or handlers[0][2]:
        return None, f"{where} needs exactly one {'/'.join(PASS_DIRECTIVES)} outside any if"
    name, handler_args, _ = handlers[0]
    if name == "proxy_pass" and _has_uri_part(handler_args[0]):
        return None, f"{where}: proxy_pass {handler_args[0]} has a URI part, which regex locations cannot use"
    handler = crossplane.build([{"directive": name, "args": handler_args, "line": 1}]).strip()
    return FastPath(parent=args[0], handler=handler), ""


def _main_method(methods: set[str]) -> str:
    """The method the fast path accepts: GET if there is one, else the rule's own (not HEAD/OPTIONS)."""
    if "GET" in methods:
        return "GET"
    return sorted(methods, key=lambda m: (m in ("HEAD", "OPTIONS"), m))[0]


def render_locations(compiled: Compiled, fast: FastPath, aid: str, status: int,
                     quote: Callable[[str], str], console: Callable[[Pattern], bool],
                     strict_paths: bool = True, intercept: bool = False) -> tuple[list[str], int, int]:
    """The nested locations (lines), with the number of regex locations and of prefixes.

    ``console(pattern)`` is true for patterns that could let a console path through: they stay with the maps.
    With ``strict_paths`` a request is taken here only when its raw target is its ``$uri`` (no query, no
    %-encoding, nothing NGINX normalised); any other asks the maps, which check the raw path.
    With ``intercept`` every location first answers NGINX's own 500 in the request that error_page
    makes after the app's 500 (``render.intercept_lines``): the copied handler would ask the app again.
    """
    v = f"$phoenix_{aid}"
    groups: dict[str, dict[str, set[str] | None]] = defaultdict(dict)
    for p in compiled.patterns:
        if p.regex is None or not p.prefix or len(p.regex) > MAX_TOKEN:
            continue
        head = "/" + "/".join(p.prefix) + "/"
        if not head.startswith(fast.parent) or head == fast.parent or console(p):
            continue
        known = groups[head].get(p.regex, set())
        groups[head][p.regex] = None if p.methods is None or known is None else known | set(p.methods)
    gate = f"if ({v}_allow = 0) {{ return {int(status)}; }}"
    if intercept:
        gate = "if ($status = 500) { return 500; } " + gate
    lines: list[str] = []
    count = 0
    for head in sorted(groups):
        lines.append(f"location ^~ {quote(head)} {{")
        for regex, methods in groups[head].items():
            anchored = "^(?:" + regex + r")\z"
            lines.append(f"    location ~ {quote(anchored)} {{")
            lines.append("        uninitialized_variable_warn off;")
            if intercept:
                lines.append("        if ($status = 500) { return 500; }")
            if strict_paths:  # the same one if as $args: a query makes them differ too
                lines.append(f"        if ($request_uri != $uri) {{ set {v}_fast {v}_allow; }}")
            else:
                lines.append(f"        if ($args) {{ set {v}_fast {v}_allow; }}")
            if methods is not None:
                main = _main_method(methods)
                lines.append(f"        if ($request_method != {main}) {{ set {v}_fast {v}_allow; }}")
            lines.append(f"        if ({v}_fast = 0) {{ return {int(status)}; }}")
            lines.append(f"        {fast.handler}")
            lines.append("    }")
            count += 1
        lines.append(f"    {gate}")
        lines.append(f"    {fast.handler}")
        lines.append("}")
        # NGINX answers the prefix without its slash (/users) with its own 301 to /users/ when a
        # prefix location ending in "/" holds a *_pass; an exact location is found first and stops that
        lines.append(f"location = {quote(head[:-1])} {{ {gate} {fast.handler} }}")
    return lines, count, len(groups)


__all__ = ["FastPath", "choose", "render_locations"]
