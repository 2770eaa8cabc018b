"""Generated converter regexes (Python's dialect) and subjects, for the dialect's differential tests."""

from __future__ import annotations

from hypothesis import strategies as st

#: single-character items where the dialects differ: non-ASCII members, negation, POSIX look-alikes,
#: ASCII-mode categories, escapes; none can match "/" (a converter inside one segment)
ATOMS = st.sampled_from([
    "a", "b", "é", "ü", "€", "😀", "-", r"\.", "[a-c]", "[^a/]", "[^/]", "[éè]", "[^é/]", "[a-zé]", r"(?a:\d)",
    r"(?a:\w)", r"[^\x00-\x7f]", r"[\u00e0-\u00ff]", "[[:digit:]]", "[[:alpha:]]", "x", r"\u20ac",
])
QUANTIFIERS = st.sampled_from(["", "", "", "*", "+", "?", "{2}", "{1,3}", "{,2}", "{2,}", "*?", "++", "{0,1}", "+?"])


@st.composite
def converter_regexes(draw, depth: int = 0) -> str:
    """A Python regex for a custom converter: sequences, alternations and repeats of :data:`ATOMS`."""
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.integers(0, 9)) if depth < 2 else 9
        if kind == 0:
            alts = draw(st.lists(converter_regexes(depth + 1), min_size=1, max_size=3))
            item = "(?:" + "|".join(alts) + ")"
        elif kind == 1:
            item = "(?:" + draw(converter_regexes(depth + 1)) + ")"
        else:
            item = draw(ATOMS)
            if item.endswith("}") or item.endswith("]") and item.startswith("[["):
                item = "(?:" + item + ")"
        parts.append(item + draw(QUANTIFIERS))
    return "".join(parts)


#: characters of subjects: what the atoms name, and their neighbours (no "/": one segment)
SUBJECT_CHARS = ["a", "b", "c", "é", "è", "ü", "€", "😀", "1", "-", ".", "x", ":", "d", "[", "]", "g", "ÿ"]
subjects = st.lists(st.sampled_from(SUBJECT_CHARS), min_size=0, max_size=5).map("".join)
#: byte strings that are not (all) UTF-8, with the pieces that make decoders disagree
BYTE_PIECES = [b"a", b"\xff", b"\xfe", b"\x80", b"\xc3", b"\xc3\xa9", b"\xe2\x82", b"\xe2\x82\xac", b"\xf0\x9f",
               b"1", b"\xa9", b"-"]
byte_subjects = st.lists(st.sampled_from(BYTE_PIECES), min_size=1, max_size=4).map(b"".join)
