"""Route table (the extractor's JSON) -> patterns: what NGINX must let through, method by method.

Semantics, with Werkzeug as the oracle: a request may reach the app when the app's ``url_map``
would route it for that method, or answer it with its own strict-slash redirect. One pattern per
rule, either an exact path (hash lookup in NGINX) or an anchored regex body built from Werkzeug's
own parse of the rule (``Rule._trace``) and each converter's regex (see ``converters.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

from .converters import NOT_PLAIN, pcre_fragment, raw_fragment
from .dialect import literal, wire
from .errors import ExtractError, RuleError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: a rule's static text that a raw target holding it would not be its $uri with (the separator aside)
_NOT_PLAIN = re.compile("[" + re.escape("".join(sorted(NOT_PLAIN - {"/"}))) + "]")
#: after the last token: the static text still to be written, then the end
_END = (True, None)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class Pattern(NamedTuple):
    """What one rule lets through (a named tuple: made thousands of times, four times faster than a frozen
    dataclass)."""

    rule: str
    methods: tuple[str, ...] | None
    #: exact paths (fully static rules whose letters are lowercase: NGINX hash lookups ignore case)
    exact: tuple[str, ...] = ()
    #: regex body, no anchors, over the path's UTF-8 bytes (``dialect.py``): PCRE2 without UTF mode
    #: and Python ``re`` over :func:`~phoenix.allowlist.dialect.wire` read it alike (None when ``exact`` is used)
    regex: str | None = None
    #: leading static path segments, used to group regexes behind a hash lookup
    prefix: tuple[str, ...] = ()
    #: ``regex`` narrowed to raw request targets NGINX leaves as they are (``$uri`` is the target itself: no
    #: %-escape, query, dot segment or ``//``), for the fast path's test of the request line; None when
    #: that cannot be shown (``converters.raw_fragment``)
    raw: str | None = None


@dataclass
class Compiled:
    """All patterns of an app, plus what the operator should know."""

    patterns: list[Pattern]
    notes: list[str] = field(default_factory=list)
    console_paths: tuple[str, ...] = ("/console",)

    def python_regex(self, pattern: Pattern) -> re.Pattern[str]:
        """The pattern as a Python regex over :func:`wire` paths (used by tests and the oracle checks)."""
        if pattern.regex is None:
            return re.compile("(?:" + "|".join(literal(p) for p in pattern.exact) + r")\Z")
        return re.compile(pattern.regex + r"\Z")

    def matches(self, pattern: Pattern, path: str) -> bool:
        """Does ``pattern`` take the (decoded) ``path``, as NGINX would?"""
        return self.python_regex(pattern).match(wire(path)) is not None

    def allows(self, method: str, path: str) -> bool:
        """Python model of the decision NGINX makes (for tests; NGINX itself is tested for real)."""
        if "__debugger__" in path.partition("?")[2]:
            return False
        path = path.partition("?")[0]
        if path in self.console_paths:
            return False
        for pattern in self.patterns:
            if pattern.methods is not None and method not in pattern.methods:
                continue
            if self.matches(pattern, path):
                return True
        return False


def compile_routes(table: dict[str, Any], console_paths: Iterable[str] = ("/console",)) -> Compiled:
    """Turn the extractor's route table into patterns.

    Raises :class:`RuleError` for rules NGINX cannot guard exactly (host/subdomain rules, control
    characters, converters whose regex escapes their path segment) and :class:`ExtractError` when
    the app has no rules at all.
    """
    if table.get("host_matching"):
        raise RuleError(
            f"app {table.get('app')!r} uses host_matching: host rules need one allowlist per NGINX "
            "server and are not supported; serve each host's app separately"
        )
    rules = [r for r in table.get("rules", []) if not r.get("build_only")]
    if not rules:
        raise ExtractError(f"app {table.get('app')!r} has no routable rules: the allowlist would refuse every URL")
    paths = tuple(dict.fromkeys(p for p in console_paths if p))
    compiled = Compiled(patterns=[], console_paths=paths)
    fragments: dict[int, tuple[str, str | None]] = {}  # a converter's regexes, once per converter described
    for rule in rules:
        pattern, notes = compile_rule(rule, fragments)
        compiled.patterns.append(pattern)
        compiled.notes.extend(notes)
    return compiled


def compile_rule(rule: dict[str, Any], fragments: dict[int, tuple[str, str | None]] | None = None
                 ) -> tuple[Pattern, list[str]]:
    """One extractor rule -> :class:`Pattern` (and notes on where NGINX differs).

    ``fragments`` caches converter regexes (the rule's and the raw one) by the id of their description: the
    extractor describes each distinct converter once, and thousands of rules share it (the caller keeps the
    table alive).
    """
    text = rule["rule"]
    trace = rule["trace"]
    if trace and trace[0] == [False, "|"]:  # no host part: what every rule of an app without host rules has
        bar = 0
    else:
        bar = next((i for i, (d, s) in enumerate(trace) if not d and s == "|"), None)
    if bar is None:
        raise RuleError(f"rule {text!r}: Werkzeug's parse has no host separator; unsupported Werkzeug version")
    if (bar and any(s for _, s in trace[:bar])) or rule.get("subdomain") or rule.get("host"):
        raise RuleError(
            f"rule {text!r} matches on subdomain/host {rule.get('subdomain') or rule.get('host')!r}: "
            "host rules need one allowlist per NGINX server and are not supported"
        )
    if _CONTROL.search(text):
        raise RuleError(f"rule {text!r} contains a control character, which NGINX cannot match safely")
    tokens = trace[bar + 1 :]
    notes: list[str] = []
    converters = rule["converters"]
    body = static_head = full = static = ""
    raw: str | None = ""  # None once a part cannot be shown to match only targets NGINX leaves as they are
    dynamic = False
    last_final = False
    for is_dynamic, data in (*tokens, _END):
        if not is_dynamic:
            full += data
            static += data  # a run of static tokens is escaped at once
            if data != "/":
                last_final = False
            continue
        if static:
            lit = literal(static)
            body += lit
            raw = raw + lit if raw is not None and not _NOT_PLAIN.search(static) else None
            if not dynamic:
                static_head = static
            static = ""
        if data is None:
            break
        full += data
        dynamic = True
        conv = converters[data]
        known = fragments.get(id(conv)) if fragments is not None else None
        if known is None:
            fragment, conv_notes = pcre_fragment(data, conv, text)
            notes.extend(conv_notes)
            known = fragment, raw_fragment(conv, fragment)
            if fragments is not None and not conv_notes:  # notes name the rule: those are made each time
                fragments[id(conv)] = known
        body += known[0]
        raw = raw + known[1] if raw is not None and known[1] is not None else None
        last_final = not conv.get("part_isolating", True)
    ends_with_slash = full.endswith("/") and len(full) > 1
    methods = tuple(sorted(rule["methods"])) if rule.get("methods") is not None else None
    for seg in full.split("/") if "/." in full or "//" in full else ():
        if seg in (".", "..") or "//" in full:
            notes.append(f"{text}: NGINX normalises '.', '..' and '//' before it decides; this rule cannot be reached")
            raw = None
            break
    if not dynamic:
        variants = [full]
        if ends_with_slash:
            variants.append(full[:-1])  # strict-slash redirect (or a match without strict_slashes)
        elif not rule.get("strict_slashes", True) and full != "/":
            variants.append(full + "/")
        if (all(v == _ascii_lower(v) for v in variants) if len(variants) > 1 else full == _ascii_lower(full)) \
                and all(hash_key_fits(v) for v in variants):
            return Pattern(rule=text, methods=methods, exact=tuple(variants)), notes
        # NGINX's hash lookups ignore ASCII case: mixed-case static rules are matched by regex, and so are paths
        # too long for a key of NGINX's map hash
        body = "(?:" + "|".join(literal(v) for v in variants) + ")"
        return Pattern(rule=text, methods=methods, regex=body, prefix=_prefix(full),
                       raw=body if raw is not None else None), notes
    suffix = ""
    if ends_with_slash:
        body = body[: -len(literal("/"))]
        raw = raw[: -len(literal("/"))] if raw is not None else None
        suffix = "(?<!/)/?" if last_final else "/?"
    elif not rule.get("strict_slashes", True):
        suffix = "/?"
    return Pattern(rule=text, methods=methods, regex=body + suffix, prefix=_prefix(static_head),
                   raw=raw + suffix if raw is not None else None), notes


#: the longest key (bytes) NGINX's map hash holds with its default ``map_hash_bucket_size`` (one cache line, 64
#: bytes on x86-64): an element is a pointer, a length and the key aligned to 8 bytes, and a bucket ends with
#: a NULL pointer. A longer key makes NGINX refuse the whole configuration ("could not build map_hash, you
#: should increase map_hash_bucket_size"), and the allowlist cannot set that in the user's http block.
MAX_HASH_KEY = 46


def hash_key_fits(key: str) -> bool:
    """Can ``key`` be a key of an NGINX map hash whatever the user's ``map_hash_bucket_size``?"""
    return len(key) <= MAX_HASH_KEY and (key.isascii() or len(key.encode("utf-8")) <= MAX_HASH_KEY)


def _prefix(static_head: str) -> tuple[str, ...]:
    """Leading static path segments that are complete (followed by a '/')."""
    return tuple(static_head[1:].split("/")[:-1]) if static_head.startswith("/") else ()


def _ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


__all__ = ["Compiled", "Pattern", "compile_routes", "compile_rule", "hash_key_fits"]
