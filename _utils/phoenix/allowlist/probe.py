"""Check a live NGINX against the app: legit samples must reach the app, the rest must be refused.

Samples are generated from the compiled patterns (one valid path per rule, safe methods only) plus
the requests an attacker would try first: the debugger console in several encodings, the
``__debugger__`` query argument, an unknown path, a wrong method. A response is taken as NGINX's own
refusal when it has the refusal status and NGINX's error-page body.
"""

from __future__ import annotations

import http.client
import re
import re._constants as _sc  # noqa: PLC2701
import re._parser as _sp  # noqa: PLC2701
import string
import urllib.parse
from dataclasses import asdict, dataclass
from typing import Any

from .rules import Compiled, Pattern

SAFE = ("GET", "HEAD")
_CANDIDATES = string.ascii_lowercase + string.digits + "-._~"


def sample_path(compiled: Compiled, pattern: Pattern) -> str | None:
    """One path that ``pattern`` accepts (None if the simple sampler finds none)."""
    if pattern.regex is None:
        return pattern.exact[0]
    try:  # the regex is over the path's UTF-8 bytes (dialect.wire): a sample is bytes, read back
        text = _sample(_sp.parse(pattern.regex)).encode("latin-1").decode("utf-8")
    except (ValueError, re.error, UnicodeError):
        return None
    return text if compiled.matches(pattern, text) else None


def _sample(items) -> str:
    out = []
    for op, av in items:
        if op is _sc.LITERAL:
            out.append(chr(av))
        elif op is _sc.IN:
            out.append(_class_char(av))
        elif op is _sc.ANY:
            out.append("a")
        elif op is _sc.NOT_LITERAL:
            out.append("b" if av == ord("a") else "a")
        elif op in (_sc.MAX_REPEAT, _sc.MIN_REPEAT, _sc.POSSESSIVE_REPEAT):
            low, _high, sub = av
            out.append(_sample(sub) * low)
        elif op is _sc.SUBPATTERN:
            out.append(_sample(av[-1]))
        elif op is _sc.ATOMIC_GROUP:
            out.append(_sample(av))
        elif op is _sc.BRANCH:
            out.append(_sample(av[1][0]))
        elif op is _sc.CATEGORY:
            out.append("1" if av is _sc.CATEGORY_DIGIT else "a")
        elif op in (_sc.AT, _sc.ASSERT, _sc.ASSERT_NOT):
            continue
        else:
            raise ValueError(f"cannot sample {op}")
    return "".join(out)


def _class_char(av) -> str:
    negate = bool(av) and av[0][0] is _sc.NEGATE
    members = av[1:] if negate else av

    def member(ch: str) -> bool:
        c = ord(ch)
        for op, a in members:
            if op is _sc.LITERAL and a == c:
                return True
            if op is _sc.RANGE and a[0] <= c <= a[1]:
                return True
            if op is _sc.CATEGORY and (
                (a is _sc.CATEGORY_DIGIT and ch.isdigit()) or (a is _sc.CATEGORY_WORD and (ch.isalnum() or ch == "_"))
            ):
                return True
        return False

    for ch in _CANDIDATES:
        if member(ch) != negate:
            return ch
    raise ValueError("no sample character for class")


@dataclass
class Check:
    method: str
    path: str
    expect: str  # "app" or "refused"
    status: int = 0
    refused: bool = False
    ok: bool = False


def plan_checks(compiled: Compiled, limit: int = 200) -> list[Check]:
    """The requests to send: samples of legit routes, and the attacks that must be refused."""
    checks: list[Check] = []
    for pattern in compiled.patterns:
        methods = [m for m in (pattern.methods or SAFE) if m in SAFE]
        path = sample_path(compiled, pattern)
        if methods and path and compiled.allows(methods[0], path) and len(checks) < limit:
            checks.append(Check(methods[0], urllib.parse.quote(path, safe="/:@!$&'()*+,;=-._~"), "app"))
    attacks = [("GET", c) for c in compiled.console_paths]
    attacks += [("GET", "/%63onsole"), ("GET", "//console"), ("GET", "/static/../console"),
                ("GET", "/?__debugger__=yes&cmd=resource&f=style.css"),
                ("GET", "/?%5f%5fdebugger%5f%5f=yes&cmd=resource&f=debugger.js"),
                ("GET", "/phoenix-probe-unknown-path/x/y/z"), ("TRACE", "/")]
    for method, path in attacks:
        plain = urllib.parse.unquote(path.partition("?")[0])
        if "?" in path or not compiled.allows(method, plain) or plain.lstrip("/") == "console":
            checks.append(Check(method, path, "refused"))
    return checks


def run(url: str, checks: list[Check], status: int = 404, timeout: float = 5.0) -> dict[str, Any]:
    """Send ``checks`` to the NGINX at ``url`` (http://host:port) and judge each response."""
    parsed = urllib.parse.urlsplit(url)
    for check in checks:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=timeout)
        try:
            conn.request(check.method, check.path, headers={"Host": parsed.hostname or "localhost"})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        check.status = resp.status
        # NGINX's own error page: the configured status, or NGINX's parser refusing (400/405)
        check.refused = resp.status in (status, 400, 405) and b"<center>nginx" in body
        check.ok = check.refused if check.expect == "refused" else not check.refused
    bad = [c for c in checks if not c.ok]
    return {"ok": not bad, "checked": len(checks), "failed": [asdict(c) for c in bad],
            "checks": [asdict(c) for c in checks]}
