"""The fast path: nested locations that let the commonest allowed requests skip the map chain.

The gate (``render.py``) decides every request with a chain of maps. For a dynamic route that costs
two regexes, two hash lookups and the building of their subjects, about +4.4K instructions per
request with ``pcre_jit`` (+6.1K without), 0.87 to 0.94 of the baseline throughput. NGINX's own
location tree is cheaper: a ``^~`` prefix location per leading static path (``/users/``), found by
the binary tree NGINX searches for every request anyway, in which one regex on the request line
decides. Measured with callgrind at 1,000 routes: +2.2K (no JIT) / +1.8K (JIT), see bench/README.md.

The fast path only ever *accepts*; it never refuses anything the gate would let through::

    location ^~ "/users" {                           # nested in the app's location, by the gate file
        uninitialized_variable_warn off;
        if ($request !~ "^(?:GET /users/[0-9]+|POST /users/new) HTTP/") { set $phoenix_<app>_fast $phoenix_<app>_deny; }
        if ($phoenix_<app>_fast) { return 404; }
        proxy_pass http://app;                       # the app location's own handler, copied
    }

The prefix is named without its trailing slash: NGINX itself answers ``/users`` with ``301 Location:
/users/`` (and the request's Host) when a prefix location ending in ``/`` holds a ``*_pass``. Without the
slash it takes ``/users`` (and ``/users2``, where no longer prefix does) to the gate like every other path.
(An exact ``location = "/users"`` per prefix did the same at the price of two more configuration blocks,
each about 7 KB of every worker's memory.)

``$request`` is the request line the client sent, ``<method> <raw target> <protocol>``. A request is
accepted without the maps only when its method is a rule's main method (GET when it has GET, any for a
rule that takes any) and its raw target is matched whole by the rule's regex narrowed to raw targets
NGINX leaves as they are (``rules.Pattern.raw``): no query string, so it cannot carry Werkzeug's
``__debugger__``, no %-escape, no dot segment, no ``//``. Such a target is ``$uri`` itself, so the
rule's own regex matches ``$uri`` as well. The match ends at `` HTTP/``, and a space followed by ``H``
always ends the target in NGINX's parser, so the regex has matched the whole target. Any other request
(a query, HEAD, another method, an escape, another path under the prefix) asks the full map chain, so
the decision is the gate's in every case: one regex checks what a nested regex location and three
``if``s checked before, in 3 configuration blocks instead of 6. A fallback sets ``..._fast`` to
``..._deny`` ("1" where the maps refuse, else ""), so the last check is a plain ``if``. Like the maps,
whose values NGINX keeps for the whole request, the test reads the request the client sent: an internal
redirect (``error_page`` to a URI, ``X-Accel-Redirect``) is decided by the original request.

Static rules get an exact ``location = "/path"`` each. There one comparison of the request line with the path
written out checks method and raw target at once: ``if ($request != "GET /path HTTP/1.1")`` (``$request`` is
``<method> <raw target> <protocol>``). A plain string costs no building: +0.0K to +0.7K instructions per request
without JIT, where ``"GET /path $server_protocol"`` cost +0.9K to +1.05K. Where a server may speak HTTP/2 or
HTTP/3 (``listen ... http2``/``quic``, ``http2 on``; ``Inspection.http2``) the protocol is read from NGINX as
before; without, the only other protocol left is HTTP/1.0 (and 0.9), whose requests ask the maps.

Rules share prefix locations (``share``): those whose names have a common prefix go into one location named by
it, ``location ^~ "/d49"`` for ``/d491/<int:id>`` ... ``/d499/<int:id>``, whose request-line regex writes their
common leading literals once (``factored``: ``/d49[13579]/[0-9]+``). Each location is 3 configuration blocks,
about 21 KB of every worker's memory, and a node of the tree NGINX searches for every request; the cost is an
alternation. Without JIT PCRE's interpreter pays for each alternative it tries, so up to 8 rules share a
location and static rules keep their exact ones; with ``pcre_jit on`` (read from the configuration) up to 128,
static rules included, written out in the regex (a path NGINX leaves as it is: no escape, dot segment or ``//``).
At 5,000 routes that is 71 MiB per worker instead of 116 without JIT, 11 instead of 139 with it, and with it
-0.6K instructions per request (bench/README.md). With JIT, rules that fit one regex get none of these locations:
the gate tests the request line itself (``linemap``, ``render.render_gate``), which costs less still (+1.0K to
+1.2K instead of +1.1K to +1.4K) with no nested location's memory.

With a ``proxy_pass`` that has a URI part (``proxy_pass http://app/;``) NGINX allows it in no regex location,
and the prefix locations need none: every nested location gets the target that maps its own name as the
user's maps the parent's (``location /users/`` inside ``location /`` passes to ``http://app/users/``).

NGINX inherits every directive of the app's location into nested locations except its content
handler, its rewrite-module directives, ``limit_except`` and a few others. The handler is copied, and so
are the location's ``if``/``set``/``return``/``break`` and ``limit_except`` blocks, in their order around the
gate's include (``FastPath.before``/``after``). With regex locations in the server (or nested in the app's
location) the prefixes are plain prefix locations, after which NGINX still tries the user's regexes, as it
did after the app's location; exact locations are left out where Python cannot rule out that a user regex
matches them. The few rules directly under the parent's own name (``/item/<int>`` in ``location /item/``,
``MAX_DIRECT``) get a regex location nested in the parent, which NGINX tries before the user's: such a
regex carries a negative lookahead of the user's regexes (``_guard``, tested by PCRE itself; skipped where
every match of the user's regex needs a character the rule never produces, ``_relevant``). Nothing of ours
goes under a location the user nested in the app's (``FastPath.taken``). :func:`choose` says why when the
fast path stays off (several locations reach the app, ``rewrite``, ...); the gate alone then decides, with
the same result, only slower.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import os
import re
import re._constants as _sc  # noqa: PLC2701 - the parser is the only exact way to read a regex
import re._parser as _sre  # noqa: PLC2701
import string
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import crossplane

from .nginxconf import _NUMBERED_CAPTURE, PASS_DIRECTIVES, Inspection, Location, location_gate
from .dialect import literal
from .rules import Compiled, Pattern

#: directives of the app's location that a nested location would not keep, and that cannot be copied into it
#: exactly: ``rewrite`` changes the URI the gate decides on, the others depend on the location itself
NOT_INHERITED = ("rewrite", "try_files", "internal", "alias")
#: directives nested locations do not inherit but that are copied into each of them, in their order around the
#: gate (the rewrite module's, and ``limit_except``, whose methods otherwise ask no gate in NGINX either)
COPIED = ("set", "return", "if", "break", "limit_except")
#: NGINX rejects a config token longer than 4094 bytes
MAX_TOKEN = 3000
#: at most this many rules directly under the parent's own name get a regex location nested in the parent: NGINX
#: tries those in turn for every request no nested prefix location takes
MAX_DIRECT = 4
#: PCRE constructs that would not mean the same inside the fast path's negative lookahead (group numbers,
#: names, verbs, the match start)
_NOT_EMBEDDABLE = re.compile(r"\\[1-9gGkK]|\(\?(?:P|\(|R|&|[0-9+-]|C|'|<(?![=!]))|\(\*")
_ANY_CHAR = re.compile(r"\\[^dws\\.\-/^$|?*+()\[\]{}]")
_ESCAPED = re.compile(r"\\.")
_RANGE = re.compile(r"(.)-(.)")
#: what NGINX sends as it is when it escapes the URI it passes (``ngx_escape_uri``, NGX_ESCAPE_URI: it does when
#: the raw target was %-encoded): a nested location's part of a URI-part target must be written so, or the
#: upstream would get it unescaped where the user's location sends it escaped (``/a/é/`` vs ``/a/%C3%A9/``)
def _uri_kept(text: str) -> bool:
    return all(" " < c < "\x7f" and c not in "#%?" for c in text)


#: a directive argument that crossplane.build writes without quotes (no space, quote, brace, ``;``, ``$`` or ``\\``)
_PLAIN_ARG = re.compile(r"[A-Za-z0-9._~:/@!&()*+,=%?\[\]-]+")
#: an exact location's path written as it is into its request-line comparison (no variables, no quoting)
_LITERAL = re.compile(r"/[A-Za-z0-9._~/-]*")
#: where an exact location's path goes in its body's template (NGINX config text has no NUL)
_PATH_SLOT = "\0"
#: where a location's own handler goes (a ``proxy_pass`` with a URI part maps each location's name)
_HANDLER_SLOT = "\1"
#: PCRE syntax that Python's ``re`` reads differently or not at all: such regexes are never asked in Python
_NOT_PYTHON = re.compile(r"\[:|\\[ZzQEhHvVRXpPecoNKG]|\\x\{|\{,|\(\?\||\(\*")


@dataclass(frozen=True)
class FastPath:
    """Where the fast path goes: inside the prefix location ``parent``, serving with ``handler``."""

    parent: str
    handler: str
    #: the user's regex locations in the server, as (modifier, regex): a rule the fast path answers must not
    #: match one of them, or NGINX would have chosen it
    guard: tuple[tuple[str, str], ...] = ()
    #: names of the user's prefix and exact locations nested in ``parent``: nothing of ours may sit under them
    taken: tuple[str, ...] = ()
    #: the app location's own directives that nested locations would lose, rendered, before and after the gate
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    #: ``proxy_pass``'s target when it has a URI part (``http://app/``): every nested location gets the target
    #: that maps its own name as the parent's target maps the parent's, and no nested regex location is used
    uri_target: str = ""
    #: the configuration has ``pcre_jit on``: static rules join the prefix locations' regexes, and more rules
    #: share one location (``GROUP_JIT``), since a JIT-compiled alternation costs less than a location's memory
    jit: bool = False
    #: no server of the configuration speaks HTTP/2 or HTTP/3 (``Inspection.http2``): an exact location compares
    #: the request line with its HTTP/1.1 form written out, a plain string (-0.35K instructions per request: no
    #: string is built from ``$server_protocol``); an HTTP/1.0 request there asks the maps
    http1: bool = False

    def handler_for(self, name: str) -> str:
        """The handler for a nested location named ``name`` (which starts with ``parent``)."""
        if not self.uri_target:
            return self.handler
        # NGINX replaces the location's name by the URI part: parent + rest -> target + rest, so a nested
        # location parent + x + rest must pass to target + x + rest
        target = self.uri_target + name[len(self.parent):]
        if _PLAIN_ARG.fullmatch(target):  # what crossplane writes as it is: thousands of times, a tenth of the time
            return f"proxy_pass {target};"
        return crossplane.build([{"directive": "proxy_pass", "line": 1, "args": [target]}]).strip()


def _has_uri_part(target: str) -> bool:
    """``proxy_pass http://app/x`` replaces the location prefix: not allowed in a regex location."""
    if "$" in target:
        return False  # with variables NGINX passes the evaluated URI as is, wherever it is
    rest = target.split("://", 1)[1] if "://" in target else target
    if rest.startswith("unix:"):
        return ":" in rest[5:]
    return "/" in rest


def _args(directives: list[dict[str, Any]]) -> Iterator[str]:
    for d in directives:
        yield from d.get("args", [])
        yield from _args(d.get("block", []))


def choose(inspection: Inspection) -> tuple[FastPath | None, str]:
    """The fast path for the gate file, or ``None`` and the reason it cannot be used."""
    return choose_each(inspection)[inspection.gate_path]


def choose_each(inspection: Inspection) -> dict[str, tuple[FastPath | None, str]]:
    """For the gate and each of its per-location copies: the fast path in it, or ``None`` and why not.

    A gate file can hold the fast path of one location only: NGINX refuses a nested prefix location
    under a location whose name it does not start with (``/users`` in ``/api/``), and it builds no
    lookup tree for prefix locations nested in a regex location (a shared ``location ~ /`` around the
    fast path left every request to the maps: 16.4K instructions per request against 15.6K for the
    maps alone, see bench/README.md). So several locations get one each through their own copy of
    the gate (``nginxconf.location_gates``).
    """
    out: dict[str, tuple[FastPath | None, str]] = {}
    for path in [inspection.gate_path, *inspection.location_gates]:
        locs = [loc for loc in inspection.locations if loc.gate_file == os.path.abspath(path)]
        if len(locs) == 1:
            fast, why = _one(locs[0])
            if fast is not None:
                fast = dataclasses.replace(fast, taken=fast.taken + _longer(locs[0], fast.parent, inspection),
                                           jit=inspection.pcre_jit, http1=not inspection.http2)
            out[path] = fast, why
        elif not locs and len(inspection.locations) == 1:
            out[path] = _one(inspection.locations[0])  # why it does not include the gate itself
        elif not locs:
            out[path] = None, f"no location includes {path} itself"
        else:
            example = location_gate(inspection.gate_path, "api")
            out[path] = None, (f"{len(locs)} locations include {os.path.basename(path)} (the fast path needs one "
                               f"location per gate file: include a copy such as {example} in each further location, "
                               "the state writes it)")
    return out


def _longer(loc: Location, parent: str, inspection: Inspection) -> tuple[str, ...]:
    """The names of the app's other prefix locations in ``loc``'s server that start with ``parent``: the server
    gives the paths under them to those, so the fast path in ``loc`` holds none of them."""
    return tuple(other.args[-1] for other in inspection.locations
                 if other is not loc and other.server == loc.server and other.args
                 and other.args[0] not in ("~", "~*") and other.args[-1].startswith(parent)
                 and other.args[-1] != parent)


def _one(loc: Location) -> tuple[FastPath | None, str]:
    """The fast path nested in the one location ``loc`` (or ``None`` and why not)."""
    where = loc.where()
    if not loc.gate_here:
        return None, f"{where} does not include the gate itself (its server does)"
    args = loc.args[1:] if loc.args[:1] == ["^~"] else loc.args
    if len(args) != 1 or args[0].startswith(("=", "~", "@")) or loc.args[0] in ("=", "~", "~*"):
        return None, f"{where} is not a prefix location"
    for (_, regex), text in zip(loc.regexes, loc.server_regex):
        if _NOT_EMBEDDABLE.search(regex):
            return None, (f"its server has the regex {text}, which uses back-references, names or verbs that "
                          "the fast path cannot test for")
    lost = sorted({name for name, _, _ in loc.own if name in NOT_INHERITED})
    if lost:
        return None, f"{where} uses {', '.join(lost)}, which nested locations would not keep as they are"
    handlers = [(name, a, in_if) for name, a, in_if in loc.own if name in PASS_DIRECTIVES]
    if len(handlers) != 1 or handlers[0][2]:
        return None, f"{where} needs exactly one {'/'.join(PASS_DIRECTIVES)} outside any if"
    name, handler_args, _ = handlers[0]
    uri_target = handler_args[0] if name == "proxy_pass" and _has_uri_part(handler_args[0]) else ""
    # what nested locations would lose is copied into them, from the block itself (not through an include)
    copied = [d for d in loc.block if d["directive"] in COPIED]
    if len(copied) != sum(1 for n, _, in_if in loc.own if n in COPIED and not in_if):
        return None, f"{where} has {'/'.join(COPIED)} directives from an include, which the fast path cannot copy"
    texts = list(_args(copied))
    if any(_NUMBERED_CAPTURE.search(t) or "\\" in t or '"' in t or "'" in t for t in texts):
        return None, f"{where} has if/set/return arguments with $1..$9, quotes or backslashes, which are not copied"
    gate_at = loc.gate_at
    before = tuple(crossplane.build([d]).strip() for d in loc.block[:gate_at] if d["directive"] in COPIED)
    after = tuple(crossplane.build([d]).strip() for d in loc.block[gate_at:] if d["directive"] in COPIED)
    taken = tuple(a[-1] for a in loc.nested_args if a and a[0] not in ("~", "~*"))
    handler = crossplane.build([{"directive": name, "args": handler_args, "line": 1}]).strip()
    return FastPath(parent=args[0], handler=handler, guard=tuple(loc.regexes), taken=taken,
                    before=before, after=after, uri_target=uri_target), ""


def _sequence(regex: str) -> str:
    """``regex`` ready to be written between ``^`` and ``\\z``: in a group only if it has a top-level ``|``.

    A group costs PCRE's interpreter on every match (see ``converters._group``).
    """
    if "|" not in regex:
        return regex
    depth, escaped, opened = 0, False, -1  # opened: where the class being read starts its items, or -1
    for i, c in enumerate(regex):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif opened >= 0:
            if c == "]" and i > opened:  # a "]" first in a class is one of its characters
                opened = -1
        elif c == "[":
            opened = i + 2 if regex[i + 1:i + 2] == "^" else i + 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            return "(?:" + regex + ")"
    return regex


def _main_method(methods: set[str]) -> str:
    """The method the fast path accepts: GET if there is one, else the rule's own (not HEAD/OPTIONS)."""
    if "GET" in methods:
        return "GET"
    return sorted(methods, key=lambda m: (m in ("HEAD", "OPTIONS"), m))[0]


#: what follows the raw target in the request line: NGINX (1.21.1 and later) refuses a space in the target, and
#: in any version a space followed by "H" ends it, so a regex whose match ends here matched the whole target;
#: HTTP/2 and HTTP/3 requests have the line "<method> <:path> HTTP/2.0" made for them
_PROTOCOL = " HTTP/"


def _method_regex(methods: set[str] | None) -> str:
    """The request line's method for a rule: its main one (``_main_method``), any for a rule that takes any."""
    return "[^ ]+" if methods is None else re.escape(_main_method(methods))


#: at most this many rules share one prefix location (its name their common prefix, ``share``). Each location is
#: 3 configuration blocks, about 21 KB of every worker's memory, and a node of the tree NGINX searches for every
#: request; its rules are one regex. PCRE's interpreter pays for each alternative it tries, so without JIT few
#: rules share a location and static rules keep an exact location each; JIT-compiled, an alternation is cheap
#: and a location's memory is not (5,000 routes with JIT: 23 instead of 139 MiB per worker, -0.5K instructions
#: per request and 1.01-1.035 instead of 1.04-1.07 times the CPU; bench/README.md). With JIT the token's length
#: (``MAX_TOKEN``) is the usual limit: 128 rather than 32 took the benchmark's 5,000 routes from 452 to 80
#: locations, the worker from 22.6 to 10.9 MiB and a request from +1.38K to +1.24K instructions (static) and
#: +1.44K to +1.39K (dynamic); for 5,000 routes of random words -0.04K to +0.10K (a longer alternation at a
#: trie level against a shorter walk of NGINX's tree: bench/README.md, session 11)
GROUP = 8
GROUP_JIT = 128
#: a literal atom at the start of a raw regex: a character PCRE reads as itself, an escaped punctuation
#: character or a ``\xHH`` byte (``dialect.literal``); anything else ends the literal head
_HEAD_ATOM = re.compile(r"\\x[0-9a-fA-F]{2}|\\[^0-9A-Za-z]|[^\\\[\](){}.*+?|^$]")
_HEAD = re.compile("(?:" + _HEAD_ATOM.pattern + ")*")
_QUANTIFIERS = frozenset("*+?{")
#: the first character the heads' escapes stand in as (``factored``); no raw regex holds one (they are ASCII)
_PRIVATE = "\ue000"
#: a head atom as a character of a class (the others are written as they are: letters, digits, \\. and \\xHH)
_CLASS_ESCAPE = {"-": "\\-", "]": "\\]", "^": "\\^"}
#: a static path that one of the request line's regexes may hold written out: NGINX's ``$uri`` of a raw target
#: that is this path is the path itself (no %-escape, no dot segment, no ``//``)
_GROUPABLE = re.compile(r"(?!.*//)(?!.*/\.\.?(?:/|\Z))" + _LITERAL.pattern + r"\Z")


def factored(alternatives: list[str]) -> str:
    """The alternatives as one regex, their common leading literals written once (a trie).

    PCRE tries alternatives in turn, each from its start: ``/d4991/[0-9]+|/d4993/[0-9]+`` reads ``/d499`` twice
    before the second matches, ``/d499(?:1/[0-9]+|3/[0-9]+)`` once, and letters followed by the same are one
    class: ``/d499[13]/[0-9]+``. The language is the same. Each literal head is read as one string (an escape
    such as ``\\.`` or ``\\xc3`` stands in it as one private-use character) and the sorted heads are split where
    they part, at C speed: thousands of rules, every time the state runs.
    """
    codes: dict[str, str] = {}  # a multi-character atom -> the character that stands for it
    entries: list[tuple[str, str]] = []
    for alternative in alternatives:
        if _sequence(alternative) != alternative or max(alternative, default="") >= _PRIVATE:
            entries.append(("", alternative))  # a "|" of its own at the top (or a private character): whole
            continue
        head = _HEAD.match(alternative).group()
        rest = alternative[len(head):]
        if "\\" in head:
            atoms = _HEAD_ATOM.findall(head)
            if rest[:1] in _QUANTIFIERS:  # the last atom is repeated: it belongs to the rest
                rest = atoms.pop() + rest
            head = "".join(a if len(a) == 1 else codes.setdefault(a, chr(0xE000 + len(codes))) for a in atoms)
        elif rest[:1] in _QUANTIFIERS:
            head, rest = head[:-1], head[-1:] + rest
        entries.append((head, rest))
    entries.sort()
    text = _tree(entries, 0, len(entries), 0)
    return text.translate({ord(c): atom for atom, c in codes.items()}) if codes else text


def _tree(entries: list[tuple[str, str]], lo: int, hi: int, off: int) -> str:
    """Sorted (head, rest) pairs ``entries[lo:hi]``, alike in their heads up to ``off`` -> the alternation of
    what follows, the common head written once (read in place: no list or string is cut for a level)."""
    first = entries[lo][0]
    if hi - lo == 1:
        return first[off:] + _sequence(entries[lo][1])
    last = entries[hi - 1][0]
    at, end = off, min(len(first), len(last))
    while at < end and first[at] == last[at]:
        at += 1
    parts: list[str] = []
    after: dict[str, list[str]] = {}  # what follows each next character -> those characters
    i = lo
    while i < hi and len(entries[i][0]) == at:  # heads that end here (they sort first)
        parts.append(_sequence(entries[i][1]))
        i += 1
    while i < hi:
        head = entries[i][0]
        char = head[at]
        j = i + 1
        while j < hi and entries[j][0][at] == char:
            j += 1
        text = head[at + 1:] + _sequence(entries[i][1]) if j - i == 1 else _tree(entries, i, j, at + 1)
        after.setdefault(text, []).append(char)
        i = j
    for rest, chars in after.items():
        # characters followed by the same: one class (/d[13579]/[0-9]+), which PCRE's interpreter tests at once
        parts.append((chars[0] if len(chars) == 1 else "[" + "".join(_CLASS_ESCAPE.get(c, c) for c in chars) + "]")
                     + rest)
    return first[off:at] + (parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")")


def _cost(raw: str) -> int:
    """What a rule adds to a location's request-line token once quoted (``render.quote`` doubles backslashes):
    the regex, its method and the separators."""
    return len(raw) + raw.count("\\") + 12


def share(names: list[str], rules: Callable[[str], dict[str, Any]], size: int,
          usable: Callable[[str], bool], floor: int) -> list[tuple[str, list[str]]]:
    """Sorted location names -> (the location that holds them, names), at most ``size`` rules (and what
    fits in one NGINX token) per location.

    Names that share a prefix share the location named by it (without a trailing slash, which would make
    NGINX answer the bare path with a 301): ``/d4991`` and ``/d4993`` go into ``location /d499``, which NGINX
    finds in its tree as it found each of them (a longer prefix location, the user's or ours, still wins for
    the paths under it). ``usable(name)`` says whether a location may have that name (``floor``: the names of
    the parent and shorter ones may not); where the rules under a prefix are too many, the biggest groups of
    them get locations of their own, by the next character. A name alone keeps its own location.
    """
    out: list[tuple[str, list[str]]] = []
    used: set[str] = set()  # a name is given once: "/a/" and "/a" both make a location named /a
    # the names' rules and costs summed from the first name on: a run of names weighs two subtractions
    counts, costs = [0], [0]
    for n in names:
        held = rules(n)
        counts.append(counts[-1] + len(held))
        costs.append(costs[-1] + sum(_cost(raw) for raw in held))

    def load(lo: int, hi: int) -> tuple[int, int]:  # names[lo:hi]: their rules, their share of a token
        return counts[hi] - counts[lo], costs[hi] - costs[lo]

    def fits(weight: tuple[int, int]) -> bool:
        return weight[0] <= size and weight[1] <= MAX_TOKEN

    def runs(lo: int, hi: int, at: int) -> list[tuple[int, int]]:
        """names[lo:hi] (sorted, alike up to ``at``) in runs by their next character, found by bisection."""
        out_: list[tuple[int, int]] = []
        if len(names[lo]) == at:  # the common prefix itself sorts first
            out_.append((lo, lo + 1))
            lo += 1
        while lo < hi:
            stop = bisect.bisect_left(names, names[lo][:at] + chr(ord(names[lo][at]) + 1), lo, hi)
            out_.append((lo, stop))
            lo = stop
        return out_

    def split(lo: int, hi: int) -> None:
        if hi - lo == 1:
            out.append((names[lo], names[lo:hi]))
            return
        common = os.path.commonprefix([names[lo], names[hi - 1]])
        name = common.rstrip("/")
        ok = len(name) > floor and name not in used and usable(name)
        if ok and fits(load(lo, hi)):
            used.add(name)
            out.append((name, names[lo:hi]))
            return
        buckets = runs(lo, hi, len(common))
        if not ok:
            for bucket in buckets:
                split(*bucket)
            return
        used.add(name)  # before the buckets get theirs
        # the name's own rules are in its location whatever they weigh; the smallest buckets join them
        rest = [b for b in buckets if names[b[0]] == name]
        held = load(*rest[0]) if rest else (0, 0)
        for weight, _, (a, b) in sorted((load(a, b), names[a], (a, b)) for a, b in buckets if names[a] != name):
            joined = (held[0] + weight[0], held[1] + weight[1])
            if fits(joined):
                rest.append((a, b))
                held = joined
            else:
                split(a, b)
        if rest:
            members = [n for a, b in sorted(rest) for n in names[a:b]]
            out.append((members[0] if len(members) == 1 else name, members))

    if names:
        split(0, len(names))
    return out


def request_line(rules: dict[str, set[str] | None]) -> tuple[str, int]:
    """One regex on ``$request`` for a prefix location's rules (raw regexes -> methods), and how many it holds.

    ``^<main method> <raw regex> HTTP/``: the method is each rule's main one (``_main_method``; any, for a
    rule that takes any method), the target is matched whole (``_PROTOCOL``) by the rule's regex narrowed to
    targets NGINX leaves as they are (``Pattern.raw``), so one regex checks what three ``if``s and a nested
    regex location checked before (method, raw target is ``$uri``, the rule): 3 configuration blocks per
    prefix instead of 6, and -0.4K / -0.6K instructions per request without / with JIT (bench/README.md).
    Rules beyond NGINX's token length ask the maps.
    """
    if len(rules) == 1:  # the common case, thousands of times
        ((raw, methods),) = rules.items()
        if _cost(raw) <= MAX_TOKEN:
            return "^" + _method_regex(methods) + " " + _sequence(raw) + _PROTOCOL, 1
    mains: dict[str, list[str]] = defaultdict(list)
    size = 0
    for raw, methods in rules.items():
        size += _cost(raw)
        if size > MAX_TOKEN:
            break
        mains[_method_regex(methods)].append(raw)
    if not mains:
        return "", 0
    # GET first: PCRE tries the alternatives in order, and most requests are GETs
    alts = [f"{m} {_sequence(rs[0]) if len(rs) == 1 else factored(rs)}"
            for m, rs in sorted(mains.items(), key=lambda kv: (kv[0] != "GET", kv[0]))]
    line = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
    return "^" + line + _PROTOCOL, sum(len(rs) for rs in mains.values())


def _guard(guard: tuple[tuple[str, str], ...]) -> str:
    """A negative lookahead: the URI matches none of the user's regex locations (PCRE itself decides)."""
    if not guard:
        return ""
    alts = "|".join(("(?i:" if mod == "~*" else "(?:") + regex + ")" for mod, regex in guard)
    return "(?!(?s:.*?)(?:" + alts + "))"


@functools.lru_cache(maxsize=256)
def _requires(regex: str) -> list[frozenset[str]] | None:
    """Sets of characters such that every match of the user's ``regex`` contains one of each (None: unknown).

    Read with Python's parser, and only for regexes it reads as PCRE does (``_NOT_PYTHON``); both cases of
    every letter are counted, whatever the modifier, so the sets only ever err on the large side.
    """
    if _NOT_PYTHON.search(regex):
        return None
    try:
        parsed = _sre.parse(regex)
    except (re.error, OverflowError, RecursionError):
        return None

    def seq(items) -> list[frozenset[str]]:
        return [r for op, av in items for r in node(op, av)]

    def node(op, av) -> list[frozenset[str]]:
        if op is _sc.LITERAL:
            return [frozenset({chr(av)})]
        if op is _sc.IN and av and av[0][0] is not _sc.NEGATE:
            chars: set[str] = set()
            for kind, value in av:
                if kind is _sc.LITERAL:
                    chars.add(chr(value))
                elif kind is _sc.RANGE and value[1] - value[0] < 128:
                    chars.update(chr(c) for c in range(value[0], value[1] + 1))
                else:
                    return []
            return [frozenset(chars)]
        if op is _sc.SUBPATTERN:
            return seq(av[-1])
        if op is _sc.ATOMIC_GROUP:
            return seq(av)
        if op in (_sc.MAX_REPEAT, _sc.MIN_REPEAT, _sc.POSSESSIVE_REPEAT) and av[0] >= 1:
            return seq(av[2])
        if op is _sc.BRANCH:  # one of the branches: the union of each branch's first set
            firsts = [seq(branch)[:1] for branch in av[1]]
            return [] if not all(firsts) else [frozenset().union(*(f[0] for f in firsts))]
        return []

    sets = seq(parsed)
    if not all(c.isascii() for found in sets for c in found):
        return None
    return [frozenset(found | {c.swapcase() for c in found}) for found in sets]


def _produces(regex: str) -> frozenset[str] | None:
    """A superset of the characters a rule's regex can match (None: any character, or not known).

    Read from the text, which is cheap for thousands of rules: every character written in it (literals and
    some syntax), the ranges of its classes expanded, ``\\d``/``\\w``/``\\s`` expanded. Anything that could
    match more (``.``, a negated class, other escapes, inline flags, non-ASCII) gives up.
    """
    if not regex.isascii() or "[^" in regex or "(?i" in regex or _ANY_CHAR.search(regex):
        return None
    if "." in _ESCAPED.sub("", regex):
        return None
    out = set(regex)
    for low, high in _RANGE.findall(regex):
        out.update(chr(c) for c in range(ord(low), ord(high) + 1))
    for escape, chars in (("\\d", string.digits), ("\\w", string.ascii_letters + string.digits + "_"),
                          ("\\s", string.whitespace)):
        if escape in regex:
            out.update(chars)
    return frozenset(out)


def _relevant(guard: tuple[tuple[str, str], ...], regex: str) -> tuple[tuple[str, str], ...]:
    """The user's regexes that could match a URI the rule's ``regex`` matches (the others need no lookahead)."""
    if not guard:
        return guard
    made = _produces(regex)
    if made is None:
        return guard
    return tuple(g for g in guard if (need := _requires(g[1])) is None or all(found & made for found in need))


@functools.lru_cache(maxsize=256)
def _python_regex(mod: str, regex: str) -> re.Pattern[bytes] | None:
    if _NOT_PYTHON.search(regex):
        return None
    try:
        return re.compile(regex.encode("utf-8", "surrogateescape"), re.IGNORECASE if mod == "~*" else 0)
    except (re.error, OverflowError):
        return None


def _python_may_match(guard: tuple[tuple[str, str], ...], path: str) -> bool:
    """Could one of the user's regexes match the fixed ``path``? True when Python cannot tell for sure."""
    for mod, regex in guard:
        compiled = _python_regex(mod, regex)
        if compiled is None or compiled.search(path.encode("utf-8")):
            return True
    return False


def render_locations(compiled: Compiled, fast: FastPath, aid: str, status: int,
                     quote: Callable[[str], str], console: Callable[[Pattern], bool],
                     strict_paths: bool = True, intercept: bool = False) -> tuple[list[str], int, int, int, int]:
    """The nested locations (lines, after a comment on how exact locations compare the request line where one
    does), with the number of rules they take, of prefix locations, of exact locations and of regex locations
    nested in the parent itself.

    ``console(pattern)`` is true for patterns that could let a console path through: they stay with the maps.
    With ``strict_paths`` a request is taken here only when its raw target is its ``$uri`` (no query, no
    %-encoding, nothing NGINX normalised); any other asks the maps, which check the raw path.
    With ``intercept`` every location first answers NGINX's own 500 in the request that error_page
    makes after the app's 500 (``render.intercept_lines``): the copied handler would ask the app again.
    """
    v = f"$phoenix_{aid}"
    guard = _guard(fast.guard)
    # the protocol an exact location's request line ends with: written out where HTTP/1.1 is the only one it can be
    # on the fast path (HTTP/1.0 asks the maps), else read from NGINX
    protocol = "HTTP/1.1" if fast.http1 else "$server_protocol"

    def anchored(regex: str) -> str:  # a rule's regex location: the whole $uri, none of the user's regexes
        return "^" + _guard(_relevant(fast.guard, regex)) + _sequence(regex) + r"\z"

    parent, taken, uri_target = fast.parent, fast.taken, fast.uri_target

    def free(path: str) -> bool:  # no user location nested in the parent would have taken it
        return path.startswith(parent) and not (taken and any(path.startswith(t) for t in taken)) and \
            (not uri_target or _uri_kept(path[len(parent):]))

    def add(store: dict[str, set[str] | None], key: str, methods: Iterable[str] | None) -> None:
        """A location's methods: the union of its rules' (None: any method)."""
        known = store.get(key, set())
        store[key] = None if methods is None or known is None else known | set(methods)

    groups: dict[str, dict[str, set[str] | None]] = defaultdict(dict)
    # rules whose prefix is the parent's own name (/api/<int:id> in location /api/): a regex location each, nested
    # directly in the parent, where NGINX tries them one after the other for every path no nested prefix takes
    direct: dict[str, set[str] | None] = {}
    for p in compiled.patterns:
        if p.regex is None or not p.prefix or console(p):
            continue
        name = "/" + "/".join(p.prefix)  # the prefix location, without its trailing slash (module docstring)
        if fast.parent in (name, name + "/"):  # no prefix location of that name fits in the parent: its own regex
            if not fast.uri_target and free(name + "/") and len(p.regex) + len(guard) <= MAX_TOKEN \
                    and (p.regex in direct or len(direct) < MAX_DIRECT):
                add(direct, p.regex, p.methods)
            continue
        if p.raw is not None and free(name + "/"):  # its rules' paths all start with name + "/" (so name is free)
            add(groups[name], p.raw, p.methods)
    exact: dict[str, set[str] | None] = {}
    for p in compiled.patterns:
        for path in p.exact if p.regex is None else ():
            if path not in compiled.console_paths and free(path) and path not in fast.taken:
                add(exact, path, p.methods)
    if fast.guard:
        exact = {path: m for path, m in exact.items() if not _python_may_match(fast.guard, path)}
        # a prefix one of the user's regexes may match stays with the maps (as its exact twin did before)
        groups = defaultdict(dict, {n: g for n, g in groups.items() if not _python_may_match(fast.guard, n)})
    bodies: dict[tuple[str | None, str, bool, str, bool], str] = {}

    def body(methods: set[str] | None, indent: str, path: str = "", handler: str = "", line: str = "") -> str:
        """The same few lines (one string) for every rule with the same main method: made once each; an exact
        location's path, a prefix's test of the request line is put into its template."""
        main = None if methods is None else _main_method(methods)
        written = bool(strict_paths and main is not None and path and _LITERAL.fullmatch(path))
        own = bool(uri_target and handler)  # a handler of its own (a URI part): put in like the path
        key = (main, indent, written, _HANDLER_SLOT if own else handler or fast.handler, bool(line))
        text = bodies.get(key)
        if text is None:
            slot = _PATH_SLOT if line else ""
            text = bodies[key] = "\n".join(_body(main, indent, _PATH_SLOT if written else "", key[3], slot))
        if written or line:
            text = text.replace(_PATH_SLOT, quote(line) if line else path)
        return text.replace(_HANDLER_SLOT, handler) if own else text

    def _body(main: str | None, indent: str, path: str, handler: str, line: str) -> list[str]:
        # the gate's place among the location's own directives: the copies before it, then the checks
        out = [f"{indent}uninitialized_variable_warn off;", *(indent + d for d in fast.before)]
        if intercept:
            out.append(f"{indent}if ($status = 500) {{ return 500; }}")
        if line:
            # a prefix location: one regex on the request line for method and raw target at once (request_line)
            out.append(f"{indent}if ($request !~ {line}) {{ set {v}_fast {v}_deny; }}")
        elif strict_paths and main is not None and path:
            # an exact location: one comparison for method, raw target and $uri, the path written out: the
            # request line is "<main> <path> <protocol>" only when the method is main and the raw target is
            # the path (no query, nothing NGINX decoded or normalised); any other (another method, a query, an
            # absolute target) asks the maps. Where $uri would have to be read too, two plain ifs cost less.
            out.append(f'{indent}if ($request != "{main} {path} {protocol}") {{ set {v}_fast {v}_deny; }}')
        else:
            if strict_paths:  # the same one if as $args: a query makes them differ too
                out.append(f"{indent}if ($request_uri != $uri) {{ set {v}_fast {v}_deny; }}")
            else:
                out.append(f"{indent}if ($args) {{ set {v}_fast {v}_deny; }}")
            if main is not None:
                out.append(f"{indent}if ($request_method != {main}) {{ set {v}_fast {v}_deny; }}")
        out.append(f"{indent}if ({v}_fast) {{ return {int(status)}; }}")
        return out + [*(indent + d for d in fast.after), f"{indent}{handler}"]

    # NGINX sorts each level's locations with an insertion sort (ngx_queue_sort): in its own order
    # (name bytes, exact before prefix) that is one step per location, in any other thousands each
    # a block is a list of strings, each one or more lines (joined with newlines like the lines)
    blocks: list[tuple[bytes, int, list[str]]] = []
    count = exacts = prefixes = 0

    def exact_location(path: str) -> None:
        nonlocal count, exacts
        blocks.append((path.encode(), 0, [f"location = {quote(path)} {{",
                                          body(exact[path], "    ", path, fast.handler_for(path)), "}"]))
        count += 1
        exacts += 1

    # with JIT, static rules join the prefix locations' regexes, written out (GROUP_JIT)
    statics = {path for path in exact if fast.jit and _GROUPABLE.match(path)}
    for path in exact:
        if path in statics:
            add(groups[path], literal(path), exact[path])
        else:
            exact_location(path)

    def usable(name: str) -> bool:  # a shared location's name: where the parent's paths may go, no user regex's
        return free(name) and not (fast.guard and _python_may_match(fast.guard, name))

    keyword = "^~ " if not fast.guard else ""  # a plain prefix lets the user's regexes be tried after ours
    for name, members in share(sorted(groups), groups.__getitem__, GROUP_JIT if fast.jit else GROUP, usable,
                               len(parent)):
        if members == [name] and name in statics and len(groups[name]) == 1:
            exact_location(name)  # a static rule alone: its exact location costs least
            continue
        rules: dict[str, set[str] | None] = {}
        for member in members:  # a raw regex holds its rule's path: two names never have the same
            rules.update(groups[member])
        line, taken = request_line(rules)
        if not taken:
            continue
        blocks.append((name.encode(), 1, [f"location {keyword}{quote(name)} {{",
                                          body(None, "    ", handler=fast.handler_for(name), line=line), "}"]))
        count += taken
        prefixes += 1
    blocks.sort()  # (name, exact first): no two blocks have both the same
    lines = [line for _, _, block in blocks for line in block]
    if any(written for _, _, written, _, _ in bodies):  # an exact location compares the request line: say how
        lines.insert(0, "# exact locations compare the request line with its HTTP/1.1 form: no server of the "
                        "configuration speaks HTTP/2 or HTTP/3 (HTTP/1.0 requests ask the maps)" if fast.http1 else
                        "# exact locations compare the request line with $server_protocol: a server of the "
                        "configuration may speak HTTP/2 or HTTP/3")
    for regex, methods in direct.items():
        lines += [f"location ~ {quote(anchored(regex))} {{", body(methods, "    "), "}"]
        count += 1
    return lines, count, prefixes, exacts, len(direct)


__all__ = ["FastPath", "choose", "choose_each", "render_locations"]
