"""The one table of Flask/Werkzeug converters: how each one's value is matched in NGINX (PCRE).

Werkzeug's converter objects carry their own ``regex``; most can be used as they are. The table
records what the regex alone does not say (``fixed_digits`` lives in ``to_python``) and where NGINX
is knowingly looser or stricter than Werkzeug, so those differences are written down in one place.
A converter that is not in the table is a custom converter: its own ``regex`` is used, after a check
that a converter Werkzeug matches inside one path segment cannot swallow a ``/`` in NGINX. Every
regex, the table's too, reaches NGINX through ``dialect.translate`` (Python's dialect -> PCRE2's).
"""

from __future__ import annotations

import functools
import re
import re._constants as _sc  # noqa: PLC2701 - the parser is the only exact way to read a regex
import re._parser as _sp  # noqa: PLC2701
from dataclasses import dataclass
from typing import Any, Callable

from .dialect import translate
from .errors import RuleError


@dataclass(frozen=True)
class ConverterSpec:
    """How one Werkzeug converter class becomes a PCRE fragment."""

    name: str
    regex: Callable[[dict[str, Any]], str]
    #: differences to Werkzeug that NGINX cannot express (shown in the state's comment)
    note: str = ""


def _given(conv: dict[str, Any]) -> str:
    return conv["regex"]


def _integer(conv: dict[str, Any]) -> str:
    args = conv.get("args", {})
    digits = args.get("fixed_digits") or 0
    sign = "-?" if args.get("signed") else ""
    # Werkzeug checks fixed_digits in to_python; NGINX checks it in the regex (same effect)
    return f"{sign}[0-9]{{{int(digits)}}}" if digits else f"{sign}[0-9]+"


#: class name (Werkzeug's own classes only) -> spec
CONVERTERS: dict[str, ConverterSpec] = {
    "UnicodeConverter": ConverterSpec(
        "string", _given, "length/minlength/maxlength count characters (UTF-8 sequences, see dialect.py)"
    ),
    "PathConverter": ConverterSpec("path", _given),
    "IntegerConverter": ConverterSpec(
        "int", _integer, "min/max are checked by the app, not NGINX; only ASCII digits pass NGINX"
    ),
    "FloatConverter": ConverterSpec(
        "float",
        lambda c: ("-?" if c.get("args", {}).get("signed") else "") + r"[0-9]+\.[0-9]+",
        "min/max are checked by the app, not NGINX; only ASCII digits pass NGINX",
    ),
    "UUIDConverter": ConverterSpec("uuid", _given),
    "AnyConverter": ConverterSpec("any", _given),
}


def pcre_fragment(variable: str, conv: dict[str, Any], rule: str) -> tuple[str, list[str]]:
    """Return ``(regex, notes)`` for one converter of ``rule`` as reported by the extractor.

    The regex is Python's, translated for PCRE2 (``dialect.py``): exactly, or refused with a
    :class:`RuleError` that names the converter, the construct and the fix.
    """
    notes: list[str] = []
    spec = CONVERTERS.get(conv["class"]) if conv.get("module", "").startswith("werkzeug.") else None
    if spec is not None:
        regex = spec.regex(conv)
        args = conv.get("args", {})
        if spec.note and (args.get("min") is not None or args.get("max") is not None):
            notes.append(f"{rule}: <{variable}> min/max are enforced by the app only")
    else:
        regex = conv["regex"]
        if conv.get("part_isolating", True) and can_match_slash(regex):
            raise RuleError(
                f"rule {rule!r}: converter {conv['class']} for <{variable}> has regex {regex!r}, which can "
                "match '/', but Werkzeug matches it inside one path segment; NGINX would let more "
                "through. Give the converter a regex without '/' (e.g. [^/]+) or part_isolating = False."
            )
    what = f"rule {rule!r}: converter {conv['class']} for <{variable}>"
    try:
        pcre, translation_notes = _translate_once(regex)
    except RuleError:
        pcre, translation_notes = translate(regex, what)  # raises again, naming this rule and converter
    return _group(pcre), notes + [n.replace(_WHAT, what) for n in translation_notes]


#: what a raw request target never holds where NGINX's ``$uri`` is the target itself: a %-escape, a query, a
#: fragment, a space (the maps' own class for a raw segment, ``render.py``); and the path separator
NOT_PLAIN = frozenset("/%#? ")
#: a default string converter's value in such a target: not a dot segment (``.``, ``..``), which NGINX
#: resolves, and none of those characters; on a UTF-8 character boundary like the converter's own regex
_RAW_SEGMENT = "[^./%#? ][^/%#? ]*(?![\\x80-\\xbf])"
#: a default path converter's value in such a target: segments as above (so no ``//`` either), the first
#: character ASCII (the converter's regex insists on a whole UTF-8 character there)
_RAW_PATH = "[^./%#? \\x80-\\xff][^/%#? \\x0a]*(?:/[^./%#? \\x0a][^/%#? \\x0a]*)*(?![\\x80-\\xbf])"
#: Werkzeug's regexes of its default string and path converters (``[^/]+`` before Werkzeug 2.2)
_DEFAULT = {"string": ("[^/]{1,}", "[^/]+"), "path": ("[^/].*?",)}


def raw_fragment(conv: dict[str, Any], fragment: str) -> str | None:
    """The converter's ``fragment`` narrowed to raw request targets that NGINX leaves as they are, or None.

    The fast path compares the request line itself (``$request``) with a rule: where this regex matches
    the raw target, that target is ``$uri`` (nothing to decode, no query, no dot segment, no ``//``), so
    the rule's own regex matches ``$uri`` too. Every value it matches is one ``fragment`` matches. None when
    that cannot be shown from the regex: such rules ask the maps.
    """
    spec = CONVERTERS.get(conv["class"]) if conv.get("module", "").startswith("werkzeug.") else None
    if spec is not None and spec.name in ("int", "float", "uuid"):
        return fragment  # digits, hex, "-" and a "." between digits: never a dot segment
    if spec is not None and conv.get("regex") in _DEFAULT.get(spec.name, ()):
        return _RAW_SEGMENT if spec.name == "string" else _RAW_PATH
    return fragment if _plain(conv.get("regex", "")) else None


@functools.lru_cache(maxsize=1024)
def _plain(regex: str) -> bool:
    """True when the (Python) ``regex`` matches no empty value and no ``.``, ``/``, ``%``, ``#``, ``?``, space."""
    try:
        if re.fullmatch(regex, ""):
            return False
        tree = _sp.parse(regex)
    except (re.error, OverflowError, RecursionError):
        return False
    return not any(_items_can_match(tree, ord(c)) for c in NOT_PLAIN | {"."})


#: one character class, once or repeated: the same regex with or without a group around it, in any sequence
_ONE_CLASS = re.compile(r"\[\^?\]?[^\]\\\[]*\][+*?]?\+?")


def _group(pcre: str) -> str:
    """``pcre`` as one item of a sequence: bare when it is one class (``[0-9]+``), else in ``(?:...)``.

    PCRE's interpreter pays for every group on every match (about 70 instructions per request for the
    fast path's ``^/users/[0-9]+\\z`` against ``^/users/(?:[0-9]+)\\z``, see bench/README.md).
    """
    return pcre if _ONE_CLASS.fullmatch(pcre) else f"(?:{pcre})"


#: stands for the rule and converter in the notes of a translation made once for every rule that uses it
_WHAT = "\x00converter\x00"


@functools.lru_cache(maxsize=1024)
def _translate_once(regex: str) -> tuple[str, tuple[str, ...]]:
    """``translate`` once per converter regex: an app's thousands of rules share a handful of them."""
    pcre, notes = translate(regex, _WHAT)
    return pcre, tuple(notes)


@functools.lru_cache(maxsize=1024)
def can_match_slash(regex: str) -> bool:
    """True when ``regex`` could consume a ``/`` (read from Python's own regex parser)."""
    try:
        tree = _sp.parse(regex)
    except re.error:
        return True
    return _items_can_match(tree, _SLASH)


_SLASH = ord("/")
#: what each of Python's categories can match, for the few ASCII punctuation characters asked about
_CATEGORY = {_sc.CATEGORY_DIGIT: str.isdigit, _sc.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
             _sc.CATEGORY_SPACE: str.isspace}
_NOT_CATEGORY = {_sc.CATEGORY_NOT_DIGIT: _sc.CATEGORY_DIGIT, _sc.CATEGORY_NOT_WORD: _sc.CATEGORY_WORD,
                 _sc.CATEGORY_NOT_SPACE: _sc.CATEGORY_SPACE}


def _class_item_has(op, av, char: int) -> bool:
    if op is _sc.LITERAL:
        return av == char
    if op is _sc.RANGE:
        return av[0] <= char <= av[1]
    if op is _sc.CATEGORY:
        if av in _NOT_CATEGORY:
            return not _CATEGORY[_NOT_CATEGORY[av]](chr(char))
        return av not in _CATEGORY or _CATEGORY[av](chr(char))
    return False


def _items_can_match(items, char: int) -> bool:
    """Could the parsed regex ``items`` consume the character ``char``? (True when unsure; a back-reference
    matches what its group did, and the group is asked itself.)"""
    for op, av in items:
        if op is _sc.ANY:
            return True
        if op is _sc.LITERAL and av == char:
            return True
        if op is _sc.NOT_LITERAL and av != char:
            return True
        if op is _sc.IN:
            negate = bool(av) and av[0][0] is _sc.NEGATE
            members = av[1:] if negate else av
            has = any(_class_item_has(o, a, char) for o, a in members)
            if has != negate:
                return True
        if op is _sc.CATEGORY and _class_item_has(op, av, char):
            return True
        if op in (_sc.MAX_REPEAT, _sc.MIN_REPEAT, getattr(_sc, "POSSESSIVE_REPEAT", None)):
            if _items_can_match(av[2], char):
                return True
        if op is _sc.SUBPATTERN and _items_can_match(av[-1], char):
            return True
        if op is _sc.BRANCH and any(_items_can_match(b, char) for b in av[1]):
            return True
        if op is getattr(_sc, "ATOMIC_GROUP", None) and _items_can_match(av, char):
            return True
    return False
