"""Read the NGINX configuration (crossplane) and find where the app is reached and what guards it.

Rules checked here (each failure names file:line and what to change):

* the maps file is included in the ``http`` context;
* every location that passes requests to the app (``proxy_pass``/``uwsgi_pass``/``fastcgi_pass``/
  ``scgi_pass``/``grpc_pass``, directly or inside an ``if``) includes the gate itself, or its
  ``server`` does. A gate in an enclosing location does not count: NGINX runs the rewrite-phase
  ``if`` of the final location only;
* a regex location that reaches the app may not use ``$1``..``$9`` (the allowlist's regexes
  overwrite numbered captures): named captures are fine.

Locations inside the gate file are the allowlist's own (its fast path, see ``fastpath.py``): they are
not the user's and are skipped here. What the fast path needs to know about the app's location (its
own directives, nested locations, the regex locations of its server) is recorded on ``Location``.
"""

from __future__ import annotations

import fnmatch
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator

import crossplane
import crossplane.parser

from .errors import ConfigError

_skipping = threading.local()
_lex = crossplane.parser.lex


def _lex_unless_skipped(filename: str, *args: Any, **kwargs: Any) -> Any:
    """crossplane's lexer, except for the allowlist's own files: those read as empty.

    The gate file holds the fast path, thousands of directives for a big app, which the inspection
    never needs (its locations are skipped anyway) and which took crossplane 0.3 s to parse at 1,000
    routes. crossplane 0.5.14 (pinned) reads every file through ``crossplane.parser.lex``.
    """
    path = os.path.abspath(filename)
    pattern = getattr(_skipping, "pattern", None)
    if path in getattr(_skipping, "files", ()) or (pattern is not None and pattern.fullmatch(path)):
        return iter(())
    return _lex(filename, *args, **kwargs)


crossplane.parser.lex = _lex_unless_skipped

#: the first line of every file Phoenix generates (render.py)
GENERATED_MARK = "# Phoenix allowlist"


def location_gates(gate_path: str) -> re.Pattern[str]:
    """The absolute paths of the gate's per-location copies: ``app.allowlist.gate`` -> ``app.allowlist.<tag>.gate``.

    One gate file included in several locations can hold no fast path (``fastpath.choose``): NGINX
    allows a nested prefix location only under a location whose name it starts with. A location that
    includes its own copy instead (``app.allowlist.api.gate``, the tag is the user's: letters, digits,
    ``_``, ``-``) gets one, written by the state like the gate itself.
    """
    return re.compile(re.escape(location_gate(gate_path, "\0")).replace("\0", "[A-Za-z0-9_-]+"))


def location_gate(gate_path: str, tag: str) -> str:
    """The per-location copy of the gate tagged ``tag`` (see ``location_gates``)."""
    base = os.path.abspath(gate_path)
    return f"{base[: -len('.gate')] if base.endswith('.gate') else base}.{tag}.gate"
PASS_DIRECTIVES = ("proxy_pass", "uwsgi_pass", "fastcgi_pass", "scgi_pass", "grpc_pass")
_NUMBERED_CAPTURE = re.compile(r"\$[1-9]")


@dataclass
class Location:
    """One location block that passes requests to the app."""

    file: str
    line: int
    args: list[str]
    server: str
    targets: list[str]
    gated: bool
    #: the gate is included in this location itself (not only in its server)
    gate_here: bool = False
    #: which gate file it includes: the gate, one of its per-location copies (``location_gates``), or ""
    gate_file: str = ""
    #: the block's own directives, includes expanded, the gate's excluded: (directive, args, inside an ``if``)
    own: list[tuple[str, list[str], bool]] = field(default_factory=list)
    #: the user's locations nested in this one
    nested: list[str] = field(default_factory=list)
    #: the user's regex locations anywhere in the same server (file:line)
    server_regex: list[str] = field(default_factory=list)
    #: the same, as (modifier, regex exactly as NGINX reads it)
    regexes: list[tuple[str, str]] = field(default_factory=list)
    #: the arguments of the user's locations nested directly in this one
    nested_args: list[list[str]] = field(default_factory=list)
    #: the block's own directives as crossplane parsed them, includes not expanded
    block: list[dict[str, Any]] = field(default_factory=list)
    #: the position of the gate's include in ``block`` (0 when it is not there)
    gate_at: int = 0
    #: the block's ``limit_except`` blocks, includes expanded: (args, their directives as crossplane parsed them)
    limits: list[tuple[list[str], list[dict[str, Any]]]] = field(default_factory=list)

    def where(self) -> str:
        return f"location {' '.join(self.args)} ({self.file}:{self.line}, server {self.server})"


#: how many items an error lists before "and N more"
BRIEF = 3


def brief(items: list[str], limit: int = BRIEF) -> str:
    """``a, b, c and 4 more``: error messages stay one readable line however big the config is."""
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f" and {len(items) - limit} more"


@dataclass
class Inspection:
    """What the configuration says about the app and the allowlist files."""

    config: str
    files: list[str]
    maps_included: list[str] = field(default_factory=list)
    locations: list[Location] = field(default_factory=list)
    #: every ``*_pass`` of the user's locations: (directive, target, file:line)
    targets: list[tuple[str, str, str]] = field(default_factory=list)
    #: files included in the http context (what the maps include was looked for among)
    http_includes: list[str] = field(default_factory=list)
    maps_path: str = ""
    gate_path: str = ""
    #: the gate's per-location copies that locations include (``location_gates``), in the order found
    location_gates: list[str] = field(default_factory=list)
    upstream: str | None = None
    #: ``satisfy any`` appears somewhere in the configuration (file:line), or ""
    satisfy_any: str = ""
    #: ``pcre_jit on`` in the main context: NGINX JIT-compiles every regex, so the fast path puts many rules in
    #: one location's regex (``fastpath.render_locations``)
    pcre_jit: bool = False
    #: where a server may speak HTTP/2 or HTTP/3 (file:line of the first ``listen ... http2``/``quic`` or ``http2 on``/
    #: ``http3 on``), or "": without, the fast path's exact locations compare the request line with its HTTP/1.1 form
    #: written out (``fastpath.FastPath.http1``). The whole configuration counts: listen options are the socket's,
    #: so ``http2`` on one server's ``listen`` is every server's on that address.
    http2: str = ""
    #: where ``merge_slashes off`` is (file:line), or "": then ``$uri`` may hold ``//`` as the raw path does, and the
    #: maps test every raw path itself (``render.render(merge_slashes=False)``)
    merge_slashes_off: str = ""

    def problems(self) -> list[str]:
        """Why the allowlist would not protect the app (empty when it does), one short sentence each."""
        out: list[str] = []
        if not self.maps_included:
            found = f"the http context includes {brief(self.http_includes)}" if self.http_includes else \
                "the http context includes no file"
            out.append(f"the maps file {self.maps_path} is not included in the http context ({found}"
                       f"{self._did_you_mean()})")
        if not self.locations:
            out.append("no location passes requests to the app")
        ungated = [loc.where() for loc in self.locations if not loc.gated]
        if ungated:
            out.append(f"{len(ungated)} of {len(self.locations)} location(s) passing requests to the app do not "
                       f"include the gate {self.gate_path}: {brief(ungated)}")
        return out

    def limit_problems(self) -> list[str]:
        """``limit_except`` blocks through which requests would reach the app without the gate.

        For the methods a ``limit_except`` restricts, NGINX serves the request with the limit_except block's
        configuration, which inherits everything of the location except its rewrite-module directives: the
        gate's ``if`` is never run for them, and whatever the block lets through (``allow``, ``auth_basic``,
        ``satisfy any``) is passed to the app unchecked. A block of ``deny all;`` alone lets nothing through.
        """
        out = []
        for loc in self.locations:
            for args, block in loc.limits:
                deny_all = bool(block) and all(d["directive"] == "deny" and d.get("args") == ["all"] for d in block)
                if deny_all and not self.satisfy_any:
                    continue
                allowed = " ".join(args)
                why = (f"with satisfy any ({self.satisfy_any}) its deny all does not refuse" if deny_all
                       else "what its block allows goes to the app")
                out.append(
                    f"{loc.where()} has limit_except {allowed}: NGINX does not run the location's if/return "
                    f"directives, so not the gate either, for the other methods, and {why} without the "
                    f"allowlist's check; make that block 'deny all;' alone (those methods are then refused on "
                    f"every path) or restrict the methods in the app instead of limit_except")
        return out

    def meant(self) -> str | None:
        """The file included in the http context that the maps path is probably a typo of, if any."""
        import difflib

        if self.maps_included:
            return None
        close = difflib.get_close_matches(self.maps_path, self.http_includes, n=1, cutoff=0.8)
        return close[0] if close else None

    def _did_you_mean(self) -> str:
        meant = self.meant()
        return f"; did you mean {meant}?" if meant else ""

    def upstream_not_found(self) -> str | None:
        """The error for an ``upstream`` that no ``*_pass`` names while others exist (a typo), else None."""
        if self.upstream is None or self.locations or not self.targets:
            return None
        found = brief([f"{d} {t} ({where})" for d, t, where in self.targets])
        hosts = sorted({_target_host(t) for _, t, _ in self.targets})
        return (f"upstream {self.upstream!r} is not passed to by any location in {self.config} (looked for "
                f"{'/'.join(PASS_DIRECTIVES)} to that address, or to an upstream block listing it); found "
                f"{found}. Set upstream (--upstream) as written there, e.g. {hosts[0]}, or leave it out to gate "
                "every location that passes requests somewhere")


def unescape(token: str) -> str:
    """A config token as NGINX reads it, from crossplane's text of it.

    crossplane keeps backslashes; NGINX turns ``\\"``, ``\\'`` and ``\\\\`` into the character and
    ``\\t``, ``\\r``, ``\\n`` into the control character (``ngx_conf_read_token``).
    """
    return re.sub(r"\\([\"'\\trn])", lambda m: {"t": "\t", "r": "\r", "n": "\n"}.get(m.group(1), m.group(1)), token)


def _resolve(arg: str, prefix: str) -> str:
    return arg if os.path.isabs(arg) else os.path.normpath(os.path.join(prefix, arg))


def _target_host(target: str) -> str:
    rest = target.split("://", 1)[1] if "://" in target else target
    if rest.startswith("unix:"):  # unix:/run/app.sock or unix:/run/app.sock:/uri
        return "unix:" + rest[5:].split(":", 1)[0]
    return rest.split("/", 1)[0]


def is_generated(path: str) -> bool:
    """True for a file Phoenix wrote (its first line is :data:`GENERATED_MARK`)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.readline().startswith(GENERATED_MARK)
    except OSError:
        return False


def parse(config: str, skip: tuple[str, ...] = (), skip_pattern: re.Pattern[str] | None = None) -> dict[str, Any]:
    """crossplane's parse of ``config``; a missing or unparseable file is a :class:`ConfigError`.

    Files in ``skip`` (the allowlist's own) or whose absolute path matches ``skip_pattern`` are listed
    with their includes but not read.
    """
    if not os.path.isfile(config):
        raise ConfigError(f"NGINX config {config!r} does not exist")
    _skipping.files = {os.path.abspath(f) for f in skip}
    _skipping.pattern = skip_pattern
    try:
        return crossplane.parse(config, catch_errors=True, comments=False)
    except Exception as exc:  # crossplane raises its own errors for broken files in some paths
        raise ConfigError(f"NGINX config {config!r} cannot be parsed: {exc}") from None
    finally:
        _skipping.files = set()
        _skipping.pattern = None


def inspect(config: str, maps_path: str, gate_path: str, upstream: str | None = None) -> Inspection:
    """Inspect the live configuration for the allowlist files ``maps_path`` and ``gate_path``."""
    copies = location_gates(gate_path)
    # their live text is about to be replaced
    payload = parse(config, skip=(maps_path, gate_path), skip_pattern=copies)
    ours = {os.path.abspath(maps_path), os.path.abspath(gate_path)}
    for err in payload.get("errors", []):
        missing = re.search(r"No such file or directory: '([^']+)'", err.get("error", ""))
        if missing and (os.path.abspath(missing.group(1)) in ours or copies.fullmatch(os.path.abspath(missing.group(1)))):
            continue  # first run: the allowlist files do not exist yet
        raise ConfigError(f"NGINX config {err.get('file')}:{err.get('line')}: {err.get('error')}")
    prefix = os.path.dirname(os.path.abspath(config))
    files = [c["file"] for c in payload["config"]]
    result = Inspection(config=config, files=files, maps_path=maps_path, gate_path=gate_path, upstream=upstream)
    upstreams: dict[str, list[str]] = {}

    def walk(directives: list[dict[str, Any]], file: str, ctx: tuple[str, ...]) -> Iterator[tuple[dict, str, tuple]]:
        for d in directives:
            yield d, file, ctx
            if d["directive"] == "include":
                for idx in d.get("includes", []):
                    inc = payload["config"][idx]
                    yield from walk(inc["parsed"], inc["file"], ctx)
            elif "block" in d:
                yield from walk(d["block"], file, ctx + (d["directive"],))

    main = payload["config"][0]
    everything = list(walk(main["parsed"], main["file"], ()))
    for d, file, ctx in everything:
        if d["directive"] == "pcre_jit" and ctx == ():
            result.pcre_jit = d.get("args") == ["on"]
        if not result.http2 and ((d["directive"] == "listen" and {"http2", "quic"} & set(d.get("args", [])))
                                 or (d["directive"] in ("http2", "http3") and d.get("args") == ["on"])):
            result.http2 = f"{file}:{d['line']}"
        if d["directive"] == "merge_slashes" and d.get("args") == ["off"] and not result.merge_slashes_off:
            result.merge_slashes_off = f"{file}:{d['line']}"
        if d["directive"] == "satisfy" and d.get("args") == ["any"] and not result.satisfy_any:
            result.satisfy_any = f"{file}:{d['line']}"
        if d["directive"] == "upstream" and ctx == ("http",):
            upstreams[d["args"][0]] = [s["args"][0] for s in d.get("block", []) if s["directive"] == "server"]

    def includes(d: dict[str, Any], path: str) -> bool:
        pattern = _resolve(d["args"][0], prefix)
        return pattern == path or fnmatch.fnmatch(path, pattern)

    gates: dict[str, str] = {}  # an include's argument -> the gate file it names ("": none), read once each

    def gate_of(d: dict[str, Any]) -> str:
        """The gate file (the gate or a per-location copy) an include names, or ""."""
        if d["directive"] != "include" or not d["args"]:
            return ""
        arg = d["args"][0]
        if arg not in gates:
            path = _resolve(arg, prefix)
            if includes(d, gate_abs):
                gates[arg] = gate_abs
            elif not copies.fullmatch(path):
                gates[arg] = ""
            elif os.path.exists(path) and not is_generated(path):  # the state would overwrite a file of the user's
                raise ConfigError(f"{path} is included as a per-location copy of the gate {gate_path} (its name says "
                                  "so), but Phoenix did not write it: rename that file or remove it")
            else:
                gates[arg] = path
        if gates[arg] and gates[arg] != gate_abs and gates[arg] not in result.location_gates:
            result.location_gates.append(gates[arg])
        return gates[arg]

    maps_abs, gate_abs = os.path.abspath(maps_path), os.path.abspath(gate_path)
    for d, file, ctx in everything:
        if d["directive"] == "include" and ctx == ("http",) and d["args"]:
            included = [payload["config"][i]["file"] for i in d.get("includes", [])]
            result.http_includes.extend(included or [_resolve(d["args"][0], prefix)])
        if d["directive"] == "include" and includes(d, maps_abs):
            if ctx == ("http",):
                result.maps_included.append(f"{file}:{d['line']}")
            else:
                raise ConfigError(
                    f"{file}:{d['line']}: the allowlist maps file {maps_path} is included in "
                    f"{'/'.join(ctx) or 'main'} context; include it in the http context"
                )

    def matches_app(target: str) -> bool:
        if upstream is None:
            return True
        host = _target_host(target)
        return upstream in (host, target) or upstream in upstreams.get(host, [])

    def scan_server(server: dict[str, Any], file: str) -> None:
        names = []
        server_gated = False
        regex: list[str] = []
        regexes: list[tuple[str, str]] = []
        for d, f, ctx in walk(server.get("block", []), file, ()):
            if d["directive"] == "location" and d["args"] and d["args"][0] in ("~", "~*") and not in_gate(f):
                regex.append(f"location {' '.join(d['args'])} ({f}:{d['line']})")
                regexes.append((d["args"][0], unescape(d["args"][1]) if len(d["args"]) > 1 else ""))
            if not ctx and d["directive"] == "server_name":
                names.extend(d["args"])
            if not ctx and d["directive"] == "listen" and not names:
                names.append(d["args"][0])
            if not ctx and d["directive"] == "include" and includes(d, gate_abs):
                server_gated = True
        label = " ".join(names) or f"at {file}:{server['line']}"
        scan_locations(server.get("block", []), file, label, server_gated, regex, regexes)

    generated_files: dict[str, bool] = {}

    def in_gate(file: str) -> bool:
        """The gate, or another Phoenix-generated file (an allowlist gate under another name): not the user's."""
        path = os.path.abspath(file)
        if path == gate_abs or copies.fullmatch(path):
            return True
        if path not in generated_files:
            generated_files[path] = is_generated(path)
        return generated_files[path]

    def scan_locations(block: list[dict[str, Any]], file: str, server: str, server_gated: bool,
                       regex: list[str], regexes: list[tuple[str, str]]) -> None:
        for d, f, ctx in walk(block, file, ()):
            if d["directive"] != "location" or ctx or in_gate(f):
                continue
            # the block's own directives (and those in its ifs), includes expanded, the gate's contents left out
            own = [(x, xf, bool(xctx)) for x, xf, xctx in walk(d.get("block", []), f, ())
                   if (not xctx or xctx == ("if",)) and not in_gate(xf)]
            passes = [(x, xf) for x, xf, _ in own if x["directive"] in PASS_DIRECTIVES and x["args"]]
            result.targets.extend((x["directive"], x["args"][0], f"{xf}:{x['line']}") for x, xf in passes)
            targets = [x["args"][0] for x, _ in passes]
            gate_file = next((g for x, _, _ in own if (g := gate_of(x))), "")
            gate_here = bool(gate_file)
            gated = server_gated or gate_here
            if targets and any(matches_app(t) for t in targets):
                loc = Location(
                    file=f, line=d["line"], args=d["args"], server=server, targets=targets, gated=gated,
                    gate_here=gate_here, gate_file=gate_file,
                    own=[(x["directive"], x["args"], in_if) for x, _, in_if in own
                         if not (x["directive"] == "include" and gate_of(x))],
                    nested=[f"location {' '.join(x['args'])} ({xf}:{x['line']})" for x, xf, _ in own
                            if x["directive"] == "location"],
                    server_regex=regex, regexes=regexes,
                    nested_args=[x["args"] for x, _, _ in own if x["directive"] == "location"],
                    block=d.get("block", []),
                    gate_at=next((i for i, x in enumerate(d.get("block", [])) if gate_of(x)), 0),
                    limits=[(x["args"], x.get("block", [])) for x, _, in_if in own
                            if x["directive"] == "limit_except" and not in_if])
                result.locations.append(loc)
                if d["args"] and d["args"][0] in ("~", "~*"):
                    used = [x for x, _, _ in own if any(_NUMBERED_CAPTURE.search(a) for a in x.get("args", []))]
                    if used:
                        raise ConfigError(
                            f"{loc.where()} uses {used[0]['directive']} {' '.join(used[0]['args'])}: the "
                            "allowlist's regexes overwrite $1..$9; use a named capture (?<name>...) instead"
                        )
            scan_locations(d.get("block", []), f, server, server_gated, regex, regexes)

    for d, file, ctx in everything:
        if d["directive"] == "server" and ctx == ("http",):
            scan_server(d, file)
    return result
