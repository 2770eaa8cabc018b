"""Python's ``re`` (what Werkzeug matches with) -> the PCRE2 NGINX runs: translated exactly, or refused.

A converter's ``regex`` is Python's. NGINX compiles regexes with PCRE2 *without* UTF mode: a pattern
and the decoded ``$uri`` are strings of bytes. Read as they are, the two dialects differ: ``{,3}`` is
a bounded repeat in Python and literal text in PCRE2 10.42, ``[[:digit:]]`` a POSIX class in PCRE2 and
a set of characters in Python, ``[éè]`` a set of four bytes in PCRE2, ``\\w``/``\\d``/``\\s`` Unicode
classes in Python and ASCII ones in PCRE2, ``[^/]{2}`` two characters in Python and two bytes in PCRE2.

So no converter regex reaches NGINX as written. :func:`translate` reads it with Python's own parser
(``re._parser``, the only exact reading of what Python will do) and writes it again in a small
subset that PCRE2 and Python read alike, over the UTF-8 bytes of the path:

* every character class becomes a set of code points, written as ASCII bytes plus the UTF-8 byte
  sequences of its non-ASCII members, so a repeat counts characters, as Werkzeug does;
* ``{,n}`` is written ``{0,n}``; escapes are written ``\\xHH``; groups become non-capturing;
* a repeat of a class holding every non-ASCII character (``[^/]+``, ``.*``) stays a plain byte class
  that may not stop inside a character (``[^/]+(?![\x80-\xbf])``): exact, and nearly as cheap.

PCRE2 never runs in UTF mode, so no path, however malformed, makes ``pcre2_match()`` fail (it did:
``(*UTF)`` and ``/x/%FF%FE`` gave NGINX a 500 and an ``[alert]``). Bytes that are not UTF-8 never
match a single character that could be non-ASCII (Werkzeug would read them as U+FFFD): NGINX refuses
there; they pass where a repeat of a class that holds every non-ASCII character takes them, as in
Werkzeug. On valid UTF-8 the translation is exact.

What cannot be translated exactly is refused with :class:`RuleError` naming the converter, the
construct and the fix: ``\\d``/``\\w``/``\\s`` outside ASCII mode, case-insensitive matching, anchors
and word boundaries, lookarounds, back references, atomic groups and possessive repeats (the last
three would see past the converter: NGINX's subjects go on with the path and the query).

The output is also a valid Python regex with the same meaning over the path's UTF-8 bytes read as
Latin-1 (:func:`wire`): that is how the Python model in ``rules.py`` and the tests use it.
"""

from __future__ import annotations

import re
import warnings
import re._constants as _sc  # noqa: PLC2701 - the parser is the only exact way to read a regex
import re._parser as _sp  # noqa: PLC2701

from .errors import RuleError

MAX_CODE = 0x10FFFF
#: PCRE2's largest repeat count
MAX_REPEAT = 65535
#: a regex that never matches, in both dialects (every byte is in \x00-\xff)
NEVER = r"[^\x00-\xff]"
#: after a run of bytes: the next byte starts a character (UTF-8 continuation bytes are \x80-\xbf)
_NO_CONTINUATION = r"(?![\x80-\xbf])"
_NON_ASCII = [(0x80, 0xD7FF), (0xE000, MAX_CODE)]  # surrogates never come out of a UTF-8 decoder
_CLASS_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_.,:@!~%&=+'")
_TEXT_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_,:@!~%&='<>-")
_ALL_TEXT_SAFE = re.compile("[" + re.escape("".join(sorted(_TEXT_SAFE))) + "]*\\Z")
_ASCII_CATEGORY = {
    _sc.CATEGORY_DIGIT: [(0x30, 0x39)],
    _sc.CATEGORY_WORD: [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    _sc.CATEGORY_SPACE: [(0x09, 0x0D), (0x20, 0x20)],
}
_NEGATED_CATEGORY = {
    _sc.CATEGORY_NOT_DIGIT: _sc.CATEGORY_DIGIT,
    _sc.CATEGORY_NOT_WORD: _sc.CATEGORY_WORD,
    _sc.CATEGORY_NOT_SPACE: _sc.CATEGORY_SPACE,
}
_CATEGORY_NAME = {
    _sc.CATEGORY_DIGIT: r"\d", _sc.CATEGORY_NOT_DIGIT: r"\D", _sc.CATEGORY_WORD: r"\w",
    _sc.CATEGORY_NOT_WORD: r"\W", _sc.CATEGORY_SPACE: r"\s", _sc.CATEGORY_NOT_SPACE: r"\S",
}
_CATEGORY_FIX = {r"\d": "[0-9]", r"\w": "[A-Za-z0-9_]", r"\s": r"[ \t\n\r\f\v]"}
_POSIX = re.compile(r"\[\[?:(alnum|alpha|ascii|blank|cntrl|digit|graph|lower|print|punct|space|upper|word|xdigit):")
_REPEATS = (_sc.MAX_REPEAT, _sc.MIN_REPEAT)
_SINGLE = (_sc.LITERAL, _sc.NOT_LITERAL, _sc.ANY, _sc.IN, _sc.CATEGORY)

Ranges = list[tuple[int, int]]


def wire(text: str) -> str:
    """``text`` as NGINX's regexes see it: its UTF-8 bytes, one Latin-1 character per byte."""
    return text.encode("utf-8").decode("latin-1")


def literal(text: str) -> str:
    """A regex matching exactly ``text`` (its UTF-8 bytes), in the subset both dialects share."""
    if _ALL_TEXT_SAFE.match(text):  # the common case, thousands of times for a big app: as it is
        return text
    return "".join(_text_byte(b) for b in text.encode("utf-8"))


def translate(regex: str, what: str) -> tuple[str, list[str]]:
    """``(pcre, notes)``: Python regex ``regex`` in the shared subset; ``what`` names it in errors.

    Raises :class:`RuleError` when a construct has no exact translation.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "possible nested set": see the note below
            tree = _sp.parse(regex)
    except re.error as exc:
        raise RuleError(f"{what}: regex {regex!r} does not compile in Python: {exc}") from None
    notes = []
    posix = _POSIX.search(regex)
    if posix:
        notes.append(f"{what}: regex {regex!r} has '[:{posix.group(1)}:' inside a set, which Python (and so "
                     f"Werkzeug) reads as the characters ':{posix.group(1)}:', not as a POSIX class; NGINX does "
                     f"the same as Werkzeug. Write [0-9], [A-Za-z] ... if a POSIX class was meant")
    return _Translator(regex, what).items(tree, tree.state.flags), notes


class _Translator:
    def __init__(self, regex: str, what: str) -> None:
        self.regex, self.what = regex, what

    def refuse(self, construct: str, fix: str) -> RuleError:
        return RuleError(f"{self.what}: regex {self.regex!r} uses {construct}, which NGINX's PCRE2 cannot match "
                         f"the way Python's re does. {fix}")

    def items(self, items, flags: int) -> str:
        return "".join(self.item(op, av, flags) for op, av in items)

    def item(self, op, av, flags: int) -> str:
        if op in _SINGLE:
            return _atom(self.charset(op, av, flags))
        if op in _REPEATS:
            return self.repeat(op, av, flags)
        if op is _sc.SUBPATTERN:
            _group, add, remove, sub = av
            return "(?:" + self.items(sub, (flags | add) & ~remove) + ")"
        if op is _sc.BRANCH:
            return "(?:" + "|".join(self.items(alt, flags) for alt in av[1]) + ")"
        if op is _sc.ATOMIC_GROUP or op is _sc.POSSESSIVE_REPEAT:
            return self._raise(self.refuse(
                "an atomic group or possessive repeat ((?>...), *+, ++, ?+, {m,n}+)",
                "Werkzeug runs it on one path segment, NGINX on the path and the query after it, where it "
                "does not give back what it took. Use the plain repeat (*, +, ?, {m,n}) instead."))
        if op is _sc.AT:
            return self._raise(self.refuse(
                "an anchor or word boundary (^, $, \\A, \\Z, \\b, \\B)",
                "Remove it: Werkzeug and NGINX both anchor the converter between the rule's static parts."))
        if op in (_sc.ASSERT, _sc.ASSERT_NOT):
            return self._raise(self.refuse(
                "a lookahead or lookbehind ((?=...), (?!...), (?<=...), (?<!...))",
                "In NGINX it would see past the converter (into the rest of the path and the query). "
                "Write the condition as a character class or alternatives instead."))
        if op in (_sc.GROUPREF, _sc.GROUPREF_EXISTS):
            return self._raise(self.refuse("a back reference (\\1, (?P=name), (?(1)...))",
                                           "Write the alternatives out instead."))
        return self._raise(self.refuse(f"the construct {op}", "Rewrite the converter's regex without it."))

    @staticmethod
    def _raise(exc: RuleError) -> str:
        raise exc

    def charset(self, op, av, flags: int) -> Ranges:
        """The code points one single-character item matches."""
        if flags & re.IGNORECASE:
            raise self.refuse("case-insensitive matching ((?i))",
                              "Python folds Unicode case (k also matches the Kelvin sign); spell the cases "
                              "out instead, e.g. [Aa].")
        if op is _sc.LITERAL:
            return [(av, av)]
        if op is _sc.NOT_LITERAL:
            return _complement([(av, av)])
        if op is _sc.ANY:
            return [(0, MAX_CODE)] if flags & re.DOTALL else _complement([(10, 10)])
        if op is _sc.CATEGORY:
            return self.category(av, flags)
        negate = bool(av) and av[0][0] is _sc.NEGATE
        out: Ranges = []
        for o, a in av[1:] if negate else av:
            if o is _sc.LITERAL:
                out.append((a, a))
            elif o is _sc.RANGE:
                out.append((a[0], a[1]))
            elif o is _sc.CATEGORY:
                out.extend(self.category(a, flags))
            else:
                raise self.refuse(f"the set member {o}", "Rewrite the set with characters and ranges.")
        out = _normalise(out)
        return _complement(out) if negate else out

    def category(self, cat, flags: int) -> Ranges:
        if not flags & re.ASCII:
            name = _CATEGORY_NAME.get(cat, str(cat))
            plain = name.lower()
            kind = "digits" if plain == "\\d" else "characters"
            negated = " negated" if name != plain else ""
            raise self.refuse(
                f"{name}, which in Python also matches non-ASCII {kind} (PCRE2 in NGINX: ASCII only)",
                f"Write {_CATEGORY_FIX.get(plain, 'an explicit set')}{negated}, or (?a:{name}) if ASCII is "
                "what you mean.")
        if cat in _NEGATED_CATEGORY:
            return _complement(_ASCII_CATEGORY[_NEGATED_CATEGORY[cat]])
        if cat in _ASCII_CATEGORY:
            return _ASCII_CATEGORY[cat]
        raise self.refuse(f"the category {cat}", "Write an explicit set instead.")

    def repeat(self, op, av, flags: int) -> str:
        low, high, sub = av
        high = None if high is _sc.MAXREPEAT else high
        if low > MAX_REPEAT or (high or 0) > MAX_REPEAT:
            raise self.refuse(f"a repeat count above {MAX_REPEAT}", "Use a smaller count.")
        lazy = "?" if op is _sc.MIN_REPEAT else ""  # greedy or lazy: the same strings match
        out = None
        if len(sub) == 1 and sub[0][0] in _SINGLE:
            chars = self.charset(sub[0][0], sub[0][1], flags)
            if high is None and _covers_non_ascii(chars):
                # a run of bytes: exact (also on bytes that are not UTF-8: Werkzeug reads them as U+FFFD,
                # which such a class holds), and as cheap as the original
                run = _byte_class(_bytes_of_run(chars))
                # the run may not stop inside a character: what follows must not be a continuation byte
                end = _NO_CONTINUATION
                if low <= 1:
                    out = run + _quantifier(low, None) + lazy + end
                else:
                    out = _group(_atom(chars)) + _quantifier(low - 1, low - 1) + run + "+" + lazy + end
        if out is None:
            out = _group(self.items(sub, flags)) + _quantifier(low, high) + lazy
        return out


# --- sets of code points ------------------------------------------------------------------------
def _normalise(ranges: Ranges) -> Ranges:
    out: Ranges = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _complement(ranges: Ranges) -> Ranges:
    out: Ranges = []
    nxt = 0
    for lo, hi in _normalise(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CODE:
        out.append((nxt, MAX_CODE))
    return out


def _intersect(a: Ranges, b: Ranges) -> Ranges:
    out = [(max(x, y), min(xh, yh)) for x, xh in a for y, yh in b if max(x, y) <= min(xh, yh)]
    return _normalise(out)


def _covers_non_ascii(ranges: Ranges) -> bool:
    return _intersect(ranges, _NON_ASCII) == _NON_ASCII


def _bytes_of_run(ranges: Ranges) -> Ranges:
    """The bytes of a run of characters from ``ranges`` (which holds every non-ASCII character)."""
    return _normalise(_intersect(ranges, [(0, 0x7F)]) + [(0x80, 0xFF)])


# --- writing ------------------------------------------------------------------------------------
def _text_byte(b: int) -> str:
    ch = chr(b)
    if ch in _TEXT_SAFE:
        return ch
    if ch in ".*+?()[]{}|^\\":
        return "\\" + ch
    return f"\\x{b:02x}"


def _class_byte(b: int) -> str:
    return chr(b) if chr(b) in _CLASS_SAFE else f"\\x{b:02x}"


def _byte_class(ranges: Ranges) -> str:
    """A class of bytes, negated when that is shorter."""
    ranges = _normalise(ranges)
    if not ranges:
        return NEVER

    def body(rs: Ranges) -> str:
        parts = []
        for lo, hi in rs:
            if hi == lo:
                parts.append(_class_byte(lo))
            elif hi == lo + 1:
                parts.append(_class_byte(lo) + _class_byte(hi))
            else:
                parts.append(f"{_class_byte(lo)}-{_class_byte(hi)}")
        return "".join(parts)

    inverse = [r for r in _complement(ranges) if r[0] <= 0xFF]
    inverse = [(lo, min(hi, 0xFF)) for lo, hi in inverse]
    if not inverse:
        return r"[\x00-\xff]"
    positive, negative = body(ranges), body(inverse)
    if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return _text_byte(ranges[0][0])
    return f"[^{negative}]" if len(negative) < len(positive) else f"[{positive}]"


def _utf8_sequences(lo: int, hi: int) -> list[list[tuple[int, int]]]:
    """Byte-range sequences matching exactly the UTF-8 encodings of ``lo..hi`` (no surrogates)."""
    for top in (0x7F, 0x7FF, 0xFFFF):
        if lo <= top < hi:
            return _utf8_sequences(lo, top) + _utf8_sequences(top + 1, hi)
    if hi <= 0x7F:
        return [[(lo, hi)]]
    n = len(chr(lo).encode("utf-8"))
    for i in range(1, n):
        mask = (1 << (6 * i)) - 1
        if lo & ~mask != hi & ~mask:
            if lo & mask:
                return _utf8_sequences(lo, lo | mask) + _utf8_sequences((lo | mask) + 1, hi)
            if hi & mask != mask:
                return _utf8_sequences(lo, (hi & ~mask) - 1) + _utf8_sequences(hi & ~mask, hi)
    a, b = chr(lo).encode("utf-8"), chr(hi).encode("utf-8")
    return [[(a[i], b[i]) for i in range(n)]]


def _atom(chars: Ranges) -> str:
    """One character from ``chars``: an ASCII byte class and the UTF-8 sequences of the rest."""
    ascii_part = _intersect(chars, [(0, 0x7F)])
    alternatives = [_byte_class(ascii_part)] if ascii_part else []
    for lo, hi in _intersect(chars, _NON_ASCII):
        for seq in _utf8_sequences(lo, hi):
            alternatives.append("".join(_byte_class([r]) for r in seq))
    if not alternatives:
        return NEVER
    return alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"


def _group(text: str) -> str:
    """``text`` as one unit for a quantifier."""
    simple = len(text) == 1 or re.fullmatch(r"\\x[0-9a-f]{2}|\\.|\[(?:[^\]\\]|\\x[0-9a-f]{2})*\]", text)
    return text if simple or _one_group(text) else "(?:" + text + ")"


def _one_group(text: str) -> bool:
    """Is ``text`` a single ``(?:...)`` or ``(?>...)`` group (what this module writes: escapes, classes)?"""
    if not text.startswith(("(?:", "(?>")):
        return False
    depth, i, in_class = 0, 0, False
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if text[i + 1:i + 2] == "^":
                i += 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i == len(text) - 1
        i += 1
    return False


def _quantifier(low: int, high: int | None) -> str:
    if high is None:
        return {0: "*", 1: "+"}.get(low, f"{{{low},}}")
    if (low, high) == (0, 1):
        return "?"
    if low == high:
        return "" if low == 1 else f"{{{low}}}"
    return f"{{{low},{high}}}"


__all__ = ["NEVER", "literal", "translate", "wire"]
